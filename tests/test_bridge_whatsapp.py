"""The neonize transport, as far as it runs without WhatsApp's servers.

- Its event handlers are called from a thread of their own, as neonize
  calls them, with real ``MessageEv`` and session protobufs, and hand them
  to a real inbound path (Redis, SQLite).
- Without a session the bridge waits for pairing: READY=1 with a status
  that says to run ``wabscan login``, and /healthz 503, read from a notify
  socket and the unit's own socket.
- With a session but no network (WhatsApp is unreachable here), neonize's
  ``connect()`` fails at once: the bridge retries a bounded number of times,
  then exits non-zero.
- ``wabscan login`` fails with a clear message.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
from prometheus_client import CollectorRegistry

pytest.importorskip("neonize")

from neonize.events import (
    EVENT_TO_INT,
    INT_TO_EVENT,
    ConnectedEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
)
from neonize.proto.Neonize_pb2 import JID, MessageInfo, MessageSource
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

from wabscan import queue
from wabscan.bridge.inbound import Inbound
from wabscan.bridge.login import LoginError, login, normalise_phone
from wabscan.bridge.metrics import BridgeMetrics
from wabscan.bridge.session import Session, SessionState
from wabscan.bridge.spool import Spool
from wabscan.bridge.transport import SendFailed, SessionLost
from wabscan.bridge.whatsapp import WhatsAppTransport, is_paired
from wabscan.config import BridgeSettings, Config
from wabscan.errors import InputError
from wabscan.jobs import ScanJob
from wabscan.serial import SerialDatabase

from .conftest import RedisServer

GROUP = JID(User="120363025246125486", Server="g.us")
ALICE = JID(User="15550001111", Server="s.whatsapp.net")


def delivered(event: Any) -> Any:
    code = EVENT_TO_INT[type(event)]
    return INT_TO_EVENT[code].FromString(event.SerializePartialToString())


def text_event(text: str, message_id: str) -> Any:
    source = MessageSource(Chat=GROUP, Sender=ALICE, IsGroup=True)
    info = MessageInfo(MessageSource=source, ID=message_id, Timestamp=1_714_564_800_000)
    return delivered(MessageEv(Info=info, Message=Message(conversation=text)))


def fake_paired_session(path: Path) -> None:
    """A session store with a device row, as after pairing (keys are random).

    neonize creates the store at connect(); offline that fails at once
    (FIELD-NOTES), leaving an empty store to put the device in.
    """
    from neonize.client import NewClient

    path.parent.mkdir(parents=True, exist_ok=True)
    with pytest.raises(Exception, match="dial"):
        NewClient(str(path)).connect()
    conn = sqlite3.connect(path)
    r = os.urandom
    conn.execute(
        "INSERT INTO whatsmeow_device (jid, registration_id, noise_key,"
        " identity_key, signed_pre_key, signed_pre_key_id, signed_pre_key_sig,"
        " adv_key, adv_details, adv_account_sig, adv_account_sig_key,"
        " adv_device_sig) VALUES (?, 1, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
        (
            "15559990000.0:1@s.whatsapp.net",
            r(32),
            r(32),
            r(32),
            r(64),
            r(32),
            b"",
            r(64),
            r(32),
            r(64),
        ),
    )
    conn.commit()
    conn.close()


# -- handlers, called as neonize calls them -----------------------------------


@pytest.fixture
def config(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> Config:
    return Config(
        state_dir=str(tmp_path),
        redis_url=redis_server.url,
        bridge=BridgeSettings(scan_on_join=True, max_reconnects=1),
    )


def test_message_handler_returns_once_the_jobs_are_in_redis(config: Config) -> None:
    shared = SerialDatabase.open(config.database_path)
    metrics = BridgeMetrics(CollectorRegistry())
    spool = Spool(shared, queue.connect(config.redis_url, consumer=True), metrics)

    async def never_admin(_: Any) -> bool:
        return False

    inbound = Inbound(config, shared, spool, b"k" * 32, metrics, never_admin, str)
    transport = WhatsAppTransport(config)
    session = Session("whatsapp")
    streams = redis.Redis.from_url(config.redis_url, decode_responses=True)
    seen_in_redis: list[int] = []

    def neonize_thread() -> None:
        for n in range(5):
            transport._on_message(None, text_event(f"see site{n}.com/x", f"ID{n}"))
            # When the handler returns, the job is already durable.
            seen_in_redis.append(streams.xlen(queue.SCAN))
        transport._on_message(None, text_event("no link", "ID9"))

    async def scenario() -> None:
        transport._token = trio.lowlevel.current_trio_token()
        transport._sink = inbound
        transport._session = session
        await trio.to_thread.run_sync(neonize_thread)

    trio.run(scenario)
    assert seen_in_redis == [1, 2, 3, 4, 5]
    jobs = [ScanJob.from_fields(f) for _, f in streams.xrange(queue.SCAN)]
    assert [j.message for j in jobs] == [f"ID{n}" for n in range(5)]
    # Kept for quoting, in memory only.
    assert transport.recent.get("120363025246125486@g.us", "ID3") is not None
    streams.close()
    shared.close()


def test_the_quote_kept_in_memory_is_slim_and_quotable(config: Config) -> None:
    from neonize.client import NewClient
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ImageMessage

    from wabscan.bridge.whatsapp import _quotable

    source = MessageSource(Chat=GROUP, Sender=ALICE, IsGroup=True)
    photo = delivered(
        MessageEv(
            Info=MessageInfo(MessageSource=source, ID="PHOTO1"),
            Message=Message(
                imageMessage=ImageMessage(
                    caption="see evil-shop.com", JPEGThumbnail=b"\xff" * 20_000
                )
            ),
        )
    )
    kept = _quotable(photo)
    assert len(kept.SerializePartialToString()) < 200

    # neonize builds the quote from it without a connection.
    client = NewClient(str(Path(config.state_dir) / "unused.sqlite3"))
    built = client.build_reply_message("⚠️ hxxps://evil-shop[.]com", kept)
    context = built.extendedTextMessage.contextInfo
    assert context.stanzaID == "PHOTO1"
    assert context.participant == "15550001111@s.whatsapp.net"
    assert context.quotedMessage.conversation == "see evil-shop.com"


def test_session_handlers_move_the_state(config: Config) -> None:
    transport = WhatsAppTransport(config)
    session = Session("whatsapp")

    def neonize_thread() -> None:
        transport._on_session_event(None, delivered(ConnectedEv(status=True)))
        transport._on_session_event(
            None, delivered(KeepAliveTimeoutEv(ErrorCount=3, LastSuccess=1))
        )

    def logged_out() -> None:
        transport._on_session_event(None, delivered(LoggedOutEv(Reason=2)))

    async def scenario() -> list[str]:
        transport._token = trio.lowlevel.current_trio_token()
        transport._session = session
        await trio.to_thread.run_sync(neonize_thread)
        restart = (session.state.value, transport._cycle_outcome)
        transport._cycle_end = trio.Event()
        await trio.to_thread.run_sync(logged_out)
        return [*restart, session.state.value, transport._cycle_outcome]

    assert trio.run(scenario) == [
        "connecting",
        "lost",  # three keep-alives missed: a new client is started
        "logged-out-needs-pairing",
        "operator",
    ]


def test_sending_without_a_connection_fails_cleanly(config: Config) -> None:
    transport = WhatsAppTransport(config)

    async def scenario() -> None:
        with pytest.raises(SendFailed):
            await transport.send("g@g.us", "hi", quote="", message_id="")

    trio.run(scenario)


def test_connect_failures_are_bounded(config: Config, tmp_path: Path) -> None:
    fake_paired_session(tmp_path / "whatsapp-session.sqlite3")
    assert is_paired(tmp_path / "whatsapp-session.sqlite3")
    transport = WhatsAppTransport(config)
    session = Session("whatsapp")
    states: list[str] = []
    session.on_change = lambda s: states.append(s.detail)

    async def scenario() -> None:
        with pytest.raises(SessionLost):
            await transport.run(_NoSink(), session, trio.Event(), lambda: None)

    started = time.monotonic()
    trio.run(scenario)
    assert time.monotonic() - started < 15  # one back-off of 2 s
    assert states == ["attempt 1 of 2", "attempt 2 of 2"]


class _NoSink:
    async def accept(self, messages: Any) -> None:
        raise AssertionError("nothing can arrive offline")

    async def joined(self, event: Any) -> None:
        raise AssertionError("nothing can arrive offline")


# -- the unit as a process ------------------------------------------------------


class Notifications:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def wait_for(self, prefix: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if message.startswith(prefix):
                    return message
            with contextlib.suppress(TimeoutError):
                self.messages.append(self.sock.recv(4096).decode())
        raise AssertionError(f"no {prefix!r} in {self.messages}")


def http_get(path: Path, target: str) -> tuple[int, dict[str, Any]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(str(path))
        conn.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture
def unit_process(
    tmp_path: Path, private_redis: RedisServer
) -> Iterator[tuple[Path, dict[str, str]]]:
    config = tmp_path / "wabscan.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'redis_url = "{private_redis.url}"\n'
        "[listen]\n"
        f'bridge = "unix:{tmp_path / "bridge.sock"}"\n'
        "[bridge]\n"
        'transport = "whatsapp"\n'
        "max_reconnects = 1\n"
    )
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WABSCAN_DEBUG": "1",
    }
    yield config, env


def _start(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "wabscan", "--config", str(config), "bridge"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )


@pytest.mark.slow
def test_without_a_session_the_unit_waits_for_pairing(
    unit_process: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    config, env = unit_process
    notify = Notifications(tmp_path / "notify.sock")
    process = _start(config, env, tmp_path / "bridge.log")
    try:
        ready = notify.wait_for("READY=1")
        assert "wabscan login" in ready
        status, body = http_get(tmp_path / "bridge.sock", "/healthz")
        assert status == 503
        assert body["session"]["state"] == "logged-out-needs-pairing"
        assert "wabscan login" in body["problems"]["session"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    log = (tmp_path / "bridge.log").read_text()
    assert "session-missing" in log


@pytest.mark.slow
def test_an_unreachable_whatsapp_ends_the_unit_after_bounded_retries(
    unit_process: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    config, env = unit_process
    fake_paired_session(tmp_path / "state" / "whatsapp-session.sqlite3")
    notify = Notifications(tmp_path / "notify.sock")
    process = _start(config, env, tmp_path / "bridge.log")
    try:
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    log = (tmp_path / "bridge.log").read_text()
    assert code != 0, log
    assert "session-lost" in log
    notify.wait_for("STATUS=connecting to WhatsApp (attempt 2 of 2)")
    assert not any(m.startswith("READY=1") for m in notify.messages)


# -- login ------------------------------------------------------------------------


def test_login_offline_says_whatsapp_cannot_be_reached(tmp_path: Path) -> None:
    config = Config(state_dir=str(tmp_path))
    started = time.monotonic()
    with pytest.raises(LoginError, match="cannot reach WhatsApp"):
        login(config, timeout=20)
    assert time.monotonic() - started < 15


def test_login_refuses_to_replace_a_session(tmp_path: Path) -> None:
    fake_paired_session(tmp_path / "whatsapp-session.sqlite3")
    with pytest.raises(LoginError, match="already paired"):
        login(Config(state_dir=str(tmp_path)))


@pytest.mark.parametrize(
    ("given", "digits"),
    [("+49 170 1234567", "491701234567"), ("1 (555) 000-1111", "15550001111")],
)
def test_phone_numbers(given: str, digits: str) -> None:
    assert normalise_phone(given) == digits


@pytest.mark.parametrize("given", ["", "12345", "+49 abc", "1" * 16])
def test_bad_phone_numbers(given: str) -> None:
    with pytest.raises(InputError):
        normalise_phone(given)


def test_session_state_after_pairing_poll(config: Config) -> None:
    # No session store at all: the transport reports pairing without
    # connecting and polls until stopped.
    transport = WhatsAppTransport(config)
    session = Session("whatsapp")

    async def scenario() -> None:
        stopping = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                transport.run, _NoSink(), session, stopping, lambda: None
            )
            with trio.fail_after(5):
                while session.state is not SessionState.NEEDS_PAIRING:
                    await trio.sleep(0.01)
            stopping.set()

    trio.run(scenario)
