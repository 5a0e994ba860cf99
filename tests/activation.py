"""Run a wabscan unit as systemd would, for the unit tests.

``systemd-socket-activate`` owns the listening socket and starts the unit on
the first connection, handing the socket over (``LISTEN_FDS``); a datagram
socket owned by the test stands in for systemd's notify socket, so the test
reads ``READY=1``, ``STATUS=``, ``WATCHDOG=1`` and ``STOPPING=1`` exactly as
systemd would receive them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(
    directory: Path, redis_url: str, **sections: dict[str, object]
) -> Path:
    """A configuration file for units run by a test."""
    lines = [
        f'state_dir = "{directory}"',
        f'redis_url = "{redis_url}"',
    ]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path = directory / "wabscan.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class ActivatedUnit:
    """One unit under ``systemd-socket-activate`` with a test-owned notify socket."""

    unit: str
    config: Path
    directory: Path
    watchdog_usec: int = 10_000_000
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.port = free_port()
        self.notify_path = self.directory / f"notify-{self.unit}.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with contextlib.suppress(FileNotFoundError):
            self.notify_path.unlink()
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(0.2)
        self.process: subprocess.Popen[bytes] | None = None
        self.messages: list[str] = []
        self.log_path = self.directory / f"{self.unit}.log"

    def start(self) -> None:
        activate = shutil.which("systemd-socket-activate")
        if activate is None:
            pytest.fail("systemd-socket-activate missing: run ./scripts/bootstrap")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/root"),
            "NOTIFY_SOCKET": str(self.notify_path),
            "WATCHDOG_USEC": str(self.watchdog_usec),
            "WABSCAN_CONFIG": str(self.config),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        passed = [arg for key in env for arg in ("-E", key)]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                activate,
                "-l",
                f"127.0.0.1:{self.port}",
                "--fdname=http",
                *passed,
                sys.executable,
                "-m",
                "wabscan",
                self.unit,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """An HTTP GET on the unit's socket (the first one starts the unit)."""
        url = f"http://127.0.0.1:{self.port}{path}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read()
            except (ConnectionError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def read_notify(self, wanted: str, timeout: float = 20.0) -> str:
        """Wait for a notify datagram containing ``wanted``; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if wanted in message:
                    return message
            try:
                data = self.notify.recv(4096).decode()
            except TimeoutError:
                if self.process is not None and self.process.poll() is not None:
                    break
                continue
            self.messages.append(data)
        pytest.fail(
            f"no {wanted!r} from {self.unit}; got {self.messages}\n{self.log()}"
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.notify.close()
