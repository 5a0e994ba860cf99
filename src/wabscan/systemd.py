"""What a wabscan service needs from systemd, and a stand-in without it.

- Sockets: systemd binds them and passes them as ``LISTEN_FDS`` (fd 3 on),
  named by ``LISTEN_FDNAMES``; restarts drop no connection. Without systemd a
  service binds its own from the configuration.
- Notify: ``READY=1`` once a service can work, ``STATUS=`` for ``systemctl
  status``, ``WATCHDOG=1`` only while every registered loop makes progress,
  ``STOPPING=1`` on shutdown. Without ``$NOTIFY_SOCKET`` these are no-ops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field

import sdnotify
import trio

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3


def listen_sockets(unset_environment: bool = True) -> dict[str, list[socket.socket]]:
    """The sockets systemd passed to this process, by name.

    Unnamed sockets are listed under ``"unknown"`` (systemd's own default
    name). The environment is cleared afterwards so that child processes do
    not take the sockets for theirs.
    """
    try:
        pid = int(os.environ.get("LISTEN_PID", "0"))
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return {}
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    if unset_environment:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(key, None)
    if pid != os.getpid() or count <= 0:
        return {}

    sockets: dict[str, list[socket.socket]] = {}
    for i in range(count):
        fd = SD_LISTEN_FDS_START + i
        name = names[i] if i < len(names) and names[i] else "unknown"
        os.set_inheritable(fd, False)
        sockets.setdefault(name, []).append(socket.socket(fileno=fd))
    return sockets


def bind_address(address: str) -> socket.socket:
    """A listening socket for ``host:port`` or ``unix:/path``, as systemd's
    ``ListenStream=`` would make it."""
    if address.startswith("unix:"):
        path = address[len("unix:") :]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
    else:
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    sock.listen(128)
    return sock


@dataclass
class Notifier:
    """sd_notify for one service, with a progress-gated watchdog.

    Each main loop registers a name and calls :meth:`beat` every time it goes
    round; :meth:`watchdog_loop` pings systemd only while every loop has beaten
    within the watchdog period, so a loop that hangs gets the unit restarted.
    """

    loops: dict[str, float] = field(default_factory=dict)
    status_text: str = ""

    def __post_init__(self) -> None:
        self._socket_path = os.environ.get("NOTIFY_SOCKET")
        self._notifier = None
        if self._socket_path:
            # debug=True: sdnotify otherwise swallows every error (FIELD-NOTES),
            # and a unit whose READY=1 is lost is killed at its start timeout.
            try:
                self._notifier = sdnotify.SystemdNotifier(debug=True)
                # Never block the event loop on the manager: a full queue
                # drops one STATUS line, it must not freeze the unit (and so
                # its watchdog).
                self._notifier.socket.setblocking(False)
            except OSError as exc:
                log.warning(
                    "notify-unavailable socket=%s error=%s", self._socket_path, exc
                )

    @property
    def watchdog_seconds(self) -> float | None:
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 1_000_000
        except ValueError:
            return None

    def send(self, message: str) -> None:
        if self._notifier is None:
            return
        try:
            self._notifier.notify(message)
        except BlockingIOError:
            log.debug("notify-dropped message=%s", message.split("=")[0])
        except OSError as exc:
            log.warning("notify-failed message=%s error=%s", message.split("=")[0], exc)

    def ready(self, status: str) -> None:
        self.status_text = status
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        if status != self.status_text:
            self.status_text = status
            self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def register(self, loop: str) -> None:
        self.loops[loop] = time.monotonic()

    def beat(self, loop: str) -> None:
        self.loops[loop] = time.monotonic()

    def stalled(self, period: float) -> list[str]:
        now = time.monotonic()
        return [name for name, at in self.loops.items() if now - at > period]

    async def watchdog_loop(self) -> None:
        """Ping the watchdog at half its period while no loop is stalled."""
        period = self.watchdog_seconds
        if period is None:
            return
        while True:
            stalled = self.stalled(period)
            if stalled:
                log.error("watchdog-withheld stalled=%s", ",".join(stalled))
            else:
                self.send("WATCHDOG=1")
            await trio.sleep(period / 2)
