"""The local transport, alone and carrying a whole bridge.

The bridge runs for real: in-process for the conversation test, and as a
``wabscan bridge`` subprocess that is killed with SIGKILL for the crash
tests. Redis and every SQLite file are real; the local transport is the only
stand-in, for WhatsApp itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import trio
from prometheus_client import CollectorRegistry

from wabscan import queue
from wabscan.bridge.local import (
    LocalChat,
    LocalTransport,
    local_send,
    local_sent,
    transport_file,
)
from wabscan.bridge.service import main
from wabscan.bridge.transport import message_id_for
from wabscan.config import BridgeSettings, Config, load_config
from wabscan.http import Router
from wabscan.jobs import OutboxMessage, ScanJob
from wabscan.service import Unit
from wabscan.systemd import Notifier

from .conftest import RedisServer

GROUP = "family@g.us"
ADMIN = "15550001111"
MEMBER = "15550002222"


# -- the transport alone ------------------------------------------------------


def test_a_resend_with_the_same_id_is_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "lt" / "local-transport.sqlite3"
    chat = LocalChat(path)
    question = chat.post("family", MEMBER, "is this ok? evil-shop.com")

    async def go() -> None:
        transport = LocalTransport(path)
        transport.recent.put(GROUP, question, True)
        for _ in range(3):
            await transport.send(GROUP, "reply", quote=question, message_id="3EB0AA")
        await transport.send(GROUP, "other", quote="unknown", message_id="3EB0BB")
        transport.close()

    trio.run(go)
    first, second = chat.sent()
    assert (first.wa_message_id, first.quote, first.attempts) == ("3EB0AA", question, 3)
    assert (second.quote, second.attempts) == ("", 1)  # an unknown quote is dropped
    chat.close()


def test_cli_functions(tmp_path: Path) -> None:
    config = Config(
        state_dir=str(tmp_path),
        bridge=BridgeSettings(transport="local", local_transport_dir=str(tmp_path)),
    )
    message_id = local_send(config, "family", "+15550001111", "hello", admin=True)
    chat = LocalChat(transport_file(config))
    [row] = chat.db.execute(
        "SELECT message_id, group_jid, sender, is_admin FROM inbound"
    )
    assert row == (message_id, GROUP, "15550001111@s.whatsapp.net", 1)
    chat.db.execute(
        "INSERT INTO sent (wa_message_id, group_jid, quote, text, at) VALUES"
        " ('3EB0CC', 'family@g.us', '', 'hi there', '2024-05-01T12:00:00.000Z')"
    )
    chat.close()

    assert "hi there" in local_sent(config)
    [line] = local_sent(config, as_json=True).splitlines()
    assert json.loads(line)["wa_message_id"] == "3EB0CC"


# -- a whole bridge, in-process -------------------------------------------------


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.02)


def test_a_conversation_through_the_bridge(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    config = Config(
        state_dir=str(tmp_path),
        redis_url=redis_server.url,
        bridge=BridgeSettings(
            transport="local",
            local_transport_dir=str(tmp_path / "lt"),
            reply_jitter_seconds=0.0,
            # Three replies to one group within a second: the default (two
            # at once, then one every 15 s) would hold the third back.
            group_rate_per_minute=600.0,
        ),
    )
    unit = Unit("bridge", config, Notifier(), CollectorRegistry(), Router())
    chat = LocalChat(transport_file(config))
    streams = redis.Redis.from_url(redis_server.url, decode_responses=True)

    def jobs() -> list[ScanJob]:
        return [ScanJob.from_fields(f) for _, f in streams.xrange(queue.SCAN)]

    async def scenario() -> str:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(main, unit)
            chat.add_bot("family", "Family")
            await until(lambda: len(chat.sent()) == 1)
            assert "!wabscan enable" in chat.sent()[0].text
            assert unit.health.ok
            assert unit.health.details["session"]["state"] == "connected"

            enable = chat.post("family", ADMIN, "!wabscan enable", admin=True)
            await until(lambda: len(chat.sent()) == 2)
            assert chat.sent()[1].quote == enable

            link = chat.post("family", MEMBER, "free gift: https://evil-shop.com/claim")
            await until(lambda: len(jobs()) == 1)
            assert jobs()[0].message == link

            # The reporter's reply, with a live link it should not have left.
            streams.xadd(
                queue.OUTBOX,
                OutboxMessage(
                    f"reply/{GROUP}/{link}",
                    GROUP,
                    link,
                    "⚠️ Dangerous: https://evil-shop.com/claim",
                    "warning",
                ).to_fields(),
            )
            await until(lambda: len(chat.sent()) == 3)
            unit.stopping.set()
        return link

    link = trio.run(scenario)
    warning = chat.sent()[2]
    assert warning.quote == link
    assert warning.wa_message_id == message_id_for(f"reply/{GROUP}/{link}")
    assert "hxxps://evil-shop[.]com/claim" in warning.text
    assert "https://evil-shop.com" not in warning.text
    # Everything sent was acknowledged: nothing pending for the bridge.
    assert queue.depth_sync(streams, queue.OUTBOX, "bridge")["pending"] == 0
    chat.close()
    streams.close()


# -- crash tests: the bridge as a process, killed with SIGKILL ----------------


class BridgeProcess:
    """``wabscan bridge`` with the local transport, started and killed."""

    def __init__(self, tmp_path: Path, redis_url: str, **bridge: object) -> None:
        self.dir = tmp_path
        self.config_file = tmp_path / "wabscan.toml"
        settings = {
            "transport": "local",
            "local_transport_dir": str(tmp_path / "lt"),
            "reply_jitter_seconds": 0.0,
            "group_rate_per_minute": 60000.0,
            "global_rate_per_minute": 600000.0,
            **bridge,
        }
        lines = [
            f'state_dir = "{tmp_path / "state"}"',
            f'redis_url = "{redis_url}"',
            "[listen]",
            f'bridge = "unix:{tmp_path / "bridge.sock"}"',
            "[bridge]",
            *(f"{key} = {json.dumps(value)}" for key, value in settings.items()),
        ]
        self.config_file.write_text("\n".join(lines) + "\n")
        self.config = load_config(self.config_file)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.dir / f"bridge-{self.starts}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wabscan",
                "--config",
                str(self.config_file),
                "bridge",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "WABSCAN_DEBUG": "1"},
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.dir.glob("*.log"))
        )


@pytest.fixture
def bridge_process(
    tmp_path: Path, private_redis: RedisServer
) -> Iterator[BridgeProcess]:
    process = BridgeProcess(tmp_path, private_redis.url)
    yield process
    if process.process is not None and process.process.poll() is None:
        process.kill()


def _wait(
    check: Callable[[], bool], timeout: float, what: str, proc: BridgeProcess
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{proc.logs()[-4000:]}")
        assert proc.process is not None
        if proc.process.poll() is not None:
            pytest.fail(
                f"bridge exited ({proc.process.returncode})\n{proc.logs()[-4000:]}"
            )
        time.sleep(0.005)


@pytest.mark.slow
def test_kill_9_while_sending_sends_every_reply_exactly_once(
    bridge_process: BridgeProcess, private_redis: RedisServer
) -> None:
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    replies = [
        OutboxMessage(
            f"reply/g{n % 7}@g.us/M{n}", f"g{n % 7}@g.us", "", f"warning {n}", "warning"
        )
        for n in range(150)
    ]
    for reply in replies:
        client.xadd(queue.OUTBOX, reply.to_fields())
    chat = LocalChat(transport_file(bridge_process.config))

    # Kill it three times in the middle of sending, then let it finish.
    for threshold in (20, 60, 100):
        bridge_process.start()
        _wait(lambda n=threshold: len(chat.sent()) >= n, 30, "replies", bridge_process)
        bridge_process.kill()
    bridge_process.start()
    _wait(lambda: len(chat.sent()) >= len(replies), 30, "all replies", bridge_process)
    _wait(
        lambda: queue.depth_sync(client, queue.OUTBOX, "bridge")["pending"] == 0,
        30,
        "acknowledgements",
        bridge_process,
    )
    assert bridge_process.stop() == 0

    sent = chat.sent()
    expected = {message_id_for(r.reply): r for r in replies}
    assert sorted(m.wa_message_id for m in sent) == sorted(expected)  # each once
    for message in sent:
        assert message.text.startswith(expected[message.wa_message_id].text)
    # A resend (a kill between sending and recording) is recorded once.
    resent = sum(m.attempts - 1 for m in sent)
    print(f"replies resent after a kill and dropped as duplicates: {resent}")
    states = bridge_process.config.database_path
    import sqlite3

    conn = sqlite3.connect(states)
    assert conn.execute(
        "SELECT state, count(*) FROM outbox_sent GROUP BY state"
    ).fetchall() == [("sent", len(replies))]
    conn.close()
    chat.close()
    client.close()


@pytest.mark.slow
def test_kill_9_while_receiving_loses_no_link(
    bridge_process: BridgeProcess, private_redis: RedisServer
) -> None:
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    chat = LocalChat(transport_file(bridge_process.config))
    chat.post("family", ADMIN, "!wabscan enable", admin=True)
    posted = [
        chat.post("family", MEMBER, f"look: site{n}.com/a and site{n}.org/b")
        for n in range(300)
    ]

    def jobs() -> list[str]:
        return [f["job"] for _, f in client.xrange(queue.SCAN)]

    for threshold in (40, 120, 200):
        bridge_process.start()
        _wait(lambda n=threshold: chat.delivered() >= n, 30, "messages", bridge_process)
        bridge_process.kill()
    # Redis goes away too: what arrives meanwhile waits in the spool.
    private_redis.stop()
    for n in range(300, 320):
        posted.append(chat.post("family", MEMBER, f"late: site{n}.com/a"))
    bridge_process.start()
    _wait(
        lambda: chat.delivered() >= len(posted) + 1, 30, "all messages", bridge_process
    )
    private_redis.start()
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    # The restarted Redis lost the stream (no persistence in tests); what the
    # spool held must arrive, in order.
    late = [f"{GROUP}/{m}/0" for m in posted[300:]]
    _wait(lambda: [j for j in jobs() if j in late] == late, 30, "spool", bridge_process)
    assert bridge_process.stop() == 0
    client.close()
    chat.close()


@pytest.mark.slow
def test_kill_9_before_redis_restart_keeps_every_link(
    bridge_process: BridgeProcess, private_redis: RedisServer
) -> None:
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    chat = LocalChat(transport_file(bridge_process.config))
    chat.post("family", ADMIN, "!wabscan enable", admin=True)
    bridge_process.start()
    _wait(lambda: chat.delivered() >= 1, 30, "the enable command", bridge_process)

    posted = [chat.post("family", MEMBER, f"see site{n}.com/x") for n in range(300)]
    _wait(lambda: chat.delivered() >= 60, 30, "messages", bridge_process)
    bridge_process.kill()
    bridge_process.start()
    _wait(lambda: chat.delivered() >= 301, 30, "all messages", bridge_process)
    expected = {f"{GROUP}/{m}/0" for m in posted}
    _wait(
        lambda: expected <= {f["job"] for _, f in client.xrange(queue.SCAN)},
        30,
        "every job",
        bridge_process,
    )
    jobs = [f["job"] for _, f in client.xrange(queue.SCAN)]
    doubled = len(jobs) - len(set(jobs))
    print(f"jobs added twice (redelivered after the kill, idempotent): {doubled}")
    assert bridge_process.stop() == 0
    client.close()
    chat.close()
