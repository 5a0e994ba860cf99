"""Run the appliance on one machine without systemd: ``wabscan run``.

A small stand-in for what the units do under systemd, for development, the
demo, the soak test and the crash tests:

- a private ``redis-server`` on a unix socket, tuned as the Redis unit is;
- one listening socket per service, bound here and passed to the service as
  systemd would (``LISTEN_FDS=1``, ``LISTEN_FDNAMES``, fd 3), so a restarted
  service gets the same socket and no connection is refused meanwhile;
- the three services as child processes, restarted when they die, their log
  lines interleaved and labelled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis

from wabscan.errors import WabscanError
from wabscan.systemd import SD_LISTEN_FDS_START, bind_address

UNITS = ("scanner", "reporter", "bridge")
REDIS_MAXMEMORY = "24mb"  # as the Redis unit: well below its cgroup limit


class SupervisorError(WabscanError):
    pass


@dataclass
class Child:
    unit: str
    sock: socket.socket
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0


@dataclass
class LocalAppliance:
    """The three units and Redis, started under ``state_dir``.

    Args:
        state_dir: where the database, Redis' files and the sockets live.
        config_file: the configuration every unit reads (``WABSCAN_CONFIG``).
        log: where labelled log lines go (None: discard).
        restart: restart a unit that exits, as ``Restart=on-failure`` would.
    """

    state_dir: Path
    config_file: Path
    log: IO[str] | None = None
    restart: bool = True
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.redis_socket = self.state_dir / "redis.sock"
        self.children: dict[str, Child] = {}
        self._redis: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._lock = threading.Lock()

    @property
    def redis_url(self) -> str:
        return f"unix://{self.redis_socket}"

    # -- Redis --------------------------------------------------------------

    def redis_running(self) -> bool:
        """Whether a Redis already answers on this state directory's socket
        (another ``wabscan run``); starting a second would take its socket."""
        if not self.redis_socket.exists():
            return False
        try:
            with redis.Redis(unix_socket_path=str(self.redis_socket)) as probe:
                return bool(probe.ping())
        except redis.RedisError:
            return False

    def start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SupervisorError(
                "redis-server", "not installed; run ./scripts/bootstrap"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.redis_socket.unlink()
        self._redis = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--unixsocket",
                str(self.redis_socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.state_dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--maxmemory",
                REDIS_MAXMEMORY,
                "--maxmemory-policy",
                "volatile-lru",
                "--logfile",
                "",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._pump("redis", self._redis.stdout)
        client = redis.Redis(unix_socket_path=str(self.redis_socket))
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self._redis.poll() is not None or time.monotonic() > deadline:
                    raise SupervisorError("redis-server", "did not start") from None
                time.sleep(0.05)

    # -- services -------------------------------------------------------------

    def start(
        self, units: Sequence[str] = UNITS, addresses: dict[str, str] | None = None
    ) -> None:
        """Start Redis (if not running) and the given units."""
        if self._redis is None:
            self.start_redis()
        for unit in units:
            address = (addresses or {}).get(unit, "127.0.0.1:0")
            child = Child(unit, bind_address(address))
            self.children[unit] = child
            self._spawn(child)
        threading.Thread(target=self._watch, daemon=True, name="supervise").start()

    def address(self, unit: str) -> tuple[str, int]:
        host, port = self.children[unit].sock.getsockname()[:2]
        return host, port

    def _spawn(self, child: Child) -> None:
        env = {
            **os.environ,
            **self.env,
            "WABSCAN_CONFIG": str(self.config_file),
            "PYTHONUNBUFFERED": "1",
        }
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
            env.pop(key, None)
        fd = child.sock.fileno()
        command = [
            sys.executable,
            "-m",
            "wabscan.supervise",
            "--activate",
            "http",
            sys.executable,
            "-m",
            "wabscan",
            child.unit,
        ]
        child.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # close_fds would run after preexec_fn and close fd 3 again. Python
            # opens every fd non-inheritable (PEP 446), so without it the
            # child still inherits only the socket made fd 3 on purpose.
            close_fds=False,
            preexec_fn=lambda: _to_fd3(fd),
        )
        self._pump(child.unit, child.process.stdout)

    def _watch(self) -> None:
        while not self._stopping:
            for child in list(self.children.values()):
                process = child.process
                if process is None or process.poll() is None:
                    continue
                code = process.returncode
                self._say("supervise", f"exited unit={child.unit} code={code}")
                if self.restart and not self._stopping:
                    child.restarts += 1
                    time.sleep(0.2)
                    with self._lock:
                        if not self._stopping:
                            self._spawn(child)
            time.sleep(0.1)

    def kill(self, unit: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one unit (the crash tests' kill -9)."""
        process = self.children[unit].process
        if process is not None and process.poll() is None:
            process.send_signal(sig)

    def pid(self, unit: str) -> int | None:
        """The unit's process id (``"redis"`` for Redis), or None."""
        process = self._redis if unit == "redis" else self.children[unit].process
        return process.pid if process is not None else None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every unit, then Redis; SIGKILL what outlives ``timeout``."""
        with self._lock:
            self._stopping = True
        processes = [c.process for c in self.children.values() if c.process]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for child in self.children.values():
            child.sock.close()
        if self._redis is not None and self._redis.poll() is None:
            self._redis.terminate()
            try:
                self._redis.wait(5)
            except subprocess.TimeoutExpired:
                self._redis.kill()

    def __enter__(self) -> LocalAppliance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- logs -----------------------------------------------------------------

    def _pump(self, label: str, stream: IO[bytes] | None) -> None:
        if stream is None:
            return

        def pump() -> None:
            for raw in stream:
                self._say(label, raw.decode("utf-8", "replace").rstrip("\n"))

        threading.Thread(target=pump, daemon=True, name=f"log-{label}").start()

    def _say(self, label: str, line: str) -> None:
        if self.log is not None:
            with contextlib.suppress(ValueError, OSError):
                self.log.write(f"{label:>8} | {line}\n")
                self.log.flush()


def _to_fd3(fd: int) -> None:
    # In the child, before exec: the socket becomes fd 3, as systemd passes it.
    if fd != SD_LISTEN_FDS_START:
        os.dup2(fd, SD_LISTEN_FDS_START)
    os.set_inheritable(SD_LISTEN_FDS_START, True)


def activate_and_exec(name: str, argv: list[str]) -> None:
    """Set ``LISTEN_*`` for this very process and exec ``argv``: the pid stays
    the same across exec, so the service sees itself as the socket's owner."""
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_FDNAMES"] = name
    os.execv(argv[0], argv)


@contextlib.contextmanager
def running(
    state_dir: Path, config_file: Path, log: IO[str] | None = None
) -> Iterator[LocalAppliance]:
    appliance = LocalAppliance(state_dir, config_file, log=log)
    try:
        appliance.start()
        yield appliance
    finally:
        appliance.stop()


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--activate":
        activate_and_exec(sys.argv[2], sys.argv[3:])
    sys.exit("usage: python -m wabscan.supervise --activate NAME COMMAND...")
