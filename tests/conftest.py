"""Fixtures shared by the tests: a real redis-server, a real SQLite file, data.

Redis is never faked: the cache and the queues depend on its exact replies
(TTLs, OOM errors at maxmemory, SCAN), so the tests start the same
``redis-server`` the appliance runs, on a unix socket in a temporary folder.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from hypothesis import settings
from sqlite_utils import Database

from wabscan.storage import open_database

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# No per-example deadline: on a loaded two-core CI machine an example of a
# property can take longer than hypothesis' default 200 ms for reasons that
# say nothing about the code, and speed is the benchmarks' business.
settings.register_profile("wabscan", deadline=None)
settings.load_profile("wabscan")


@dataclass
class RedisServer:
    """A redis-server of our own; start() blocks until it answers PING."""

    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def start(self, timeout: float = 10.0) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail(
                "redis-server is not on PATH; the tests need a real one: "
                "run ./scripts/bootstrap",
                pytrace=False,
            )
        # The appliance's redis unit's settings, but no persistence: unix
        # socket only, volatile-lru (only the cache, which has TTLs, may go).
        self.process = subprocess.Popen(
            [
                executable,
                "--save",
                "",
                "--appendonly",
                "no",
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
                "--maxmemory",
                "64mb",
                "--maxmemory-policy",
                "volatile-lru",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.log_path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited at start:\n{self._log_tail()}")
            try:
                with redis.Redis(unix_socket_path=str(self.socket_path)) as probe:
                    if probe.ping():
                        return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not answer PING:\n{self._log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-20:])
        except OSError:
            return "(no log)"


def _short_tempdir(prefix: str) -> Path:
    # A unix socket path is limited to 107 bytes, which pytest's own tmp
    # folders can exceed; /tmp keeps it short.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session, on a unix socket."""
    server = RedisServer(_short_tempdir("wabscan-redis-"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's server, emptied before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server for one test, which it may stop (outage tests)."""
    server = RedisServer(_short_tempdir("wabscan-redis-"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated database on a real file (WAL needs one)."""
    database = open_database(tmp_path / "state" / "wabscan.sqlite3")
    try:
        yield database
    finally:
        database.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared tuning data (/work/shared/data), or skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
