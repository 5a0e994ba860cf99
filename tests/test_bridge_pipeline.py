"""The inbound path with real parts: messages in, scan jobs and replies out.

A real redis-server receives the jobs; the groups table, the audit log and
the bridge's tables are a real SQLite file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import trio
from prometheus_client import CollectorRegistry

from wabscan import queue
from wabscan.bridge.events import GroupJoined, InboundMessage
from wabscan.bridge.inbound import Inbound, scan_jobs
from wabscan.bridge.metrics import BridgeMetrics
from wabscan.bridge.spool import Spool
from wabscan.config import BridgeSettings, Config
from wabscan.jobs import OutboxMessage, ScanJob
from wabscan.privacy import author_hash
from wabscan.serial import SerialDatabase

from .conftest import RedisServer

KEY = b"0123456789abcdef0123456789abcdef"
GROUP = "120363025246125486@g.us"
ADMIN = "15550001111@s.whatsapp.net"
MEMBER = "15550002222@s.whatsapp.net"
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def message(
    text: str,
    message_id: str = "M1",
    *,
    sender: str = MEMBER,
    admin: bool | None = False,
    edited: bool = False,
    edit_id: str = "",
    from_me: bool = False,
    group: str = GROUP,
) -> InboundMessage:
    return InboundMessage(
        group=group,
        message_id=message_id,
        sender_jid=sender,
        sender_pn=sender,
        sender_is_admin=admin,
        text=text,
        at=AT,
        edited=edited,
        edit_id=edit_id,
        from_me=from_me,
    )


@dataclass
class Bridge:
    """An inbound path over a real database and Redis."""

    inbound: Inbound
    shared: SerialDatabase
    client: redis.Redis
    admin_lookups: list[str] = field(default_factory=list)

    def run(self, *batches: list[InboundMessage]) -> None:
        async def go() -> None:
            for batch in batches:
                await self.inbound.accept(batch)

        trio.run(go)

    def jobs(self) -> list[ScanJob]:
        return [ScanJob.from_fields(f) for _, f in self.client.xrange(queue.SCAN)]

    def outbox(self) -> list[OutboxMessage]:
        return [
            OutboxMessage.from_fields(f) for _, f in self.client.xrange(queue.OUTBOX)
        ]

    def query(self, sql: str) -> list[tuple[object, ...]]:
        return list(self.shared.db.execute(sql).fetchall())


@pytest.fixture
def bridge(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> Iterator[Bridge]:
    yield from _bridge(tmp_path, redis_server, scan_on_join=False)


@pytest.fixture
def eager_bridge(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> Iterator[Bridge]:
    yield from _bridge(tmp_path, redis_server, scan_on_join=True)


def _bridge(
    tmp_path: Path, server: RedisServer, *, scan_on_join: bool
) -> Iterator[Bridge]:
    config = Config(
        state_dir=str(tmp_path),
        redis_url=server.url,
        bridge=BridgeSettings(scan_on_join=scan_on_join),
    )
    shared = SerialDatabase.open(config.database_path)
    metrics = BridgeMetrics(CollectorRegistry())
    spool = Spool(shared, queue.connect(server.url, consumer=True), metrics)
    lookups: list[str] = []

    async def is_admin(m: InboundMessage) -> bool:
        lookups.append(m.sender_jid)
        return m.sender_jid == ADMIN

    inbound = Inbound(
        config, shared, spool, KEY, metrics, is_admin, lambda: "connected"
    )
    client = redis.Redis.from_url(server.url, decode_responses=True)
    yield Bridge(inbound, shared, client, lookups)
    client.close()
    shared.close()


def test_a_new_group_is_not_scanned_until_an_admin_enables_it(bridge: Bridge) -> None:
    bridge.run([message("look at evil-shop.com/login")])

    assert bridge.jobs() == []
    assert bridge.query("SELECT jid, enabled FROM groups") == [(GROUP, 0)]


def test_enable_then_links_become_jobs(bridge: Bridge) -> None:
    bridge.run(
        [
            message("!wabscan enable", "CMD1", sender=ADMIN, admin=True),
            message("two: evil-shop.com/a and https://bank.example.co.uk/x", "M2"),
            message("no links here", "M3"),
        ]
    )

    jobs = bridge.jobs()
    assert [(j.job, j.kind, j.url, j.index, j.count) for j in jobs] == [
        (f"{GROUP}/M2/0", "message", "http://evil-shop.com/a", 0, 2),
        (f"{GROUP}/M2/1", "message", "https://bank.example.co.uk/x", 1, 2),
    ]
    assert {j.sender for j in jobs} == {author_hash(KEY, MEMBER)}
    assert all("1555" not in value for j in jobs for value in j.to_fields().values())

    [reply] = bridge.outbox()
    assert reply.reply == f"command/{GROUP}/CMD1"
    assert (reply.group, reply.quote, reply.kind) == (GROUP, "CMD1", "command")
    assert "on" in reply.text

    [audit] = bridge.query("SELECT actor, action, target FROM audit_log")
    assert audit == (f"admin:{author_hash(KEY, ADMIN)}", "group.enable", GROUP)


def test_commands_from_members_are_ignored(bridge: Bridge) -> None:
    bridge.run([message("!wabscan enable", "CMD1", admin=False)])

    assert bridge.outbox() == []
    assert bridge.query("SELECT enabled FROM groups") == []
    assert bridge.query("SELECT count(*) FROM audit_log") == [(0,)]


def test_admin_status_is_looked_up_when_the_transport_does_not_say(
    bridge: Bridge,
) -> None:
    bridge.run(
        [
            message("!wabscan enable", "C1", sender=MEMBER, admin=None),
            message("!wabscan enable", "C2", sender=ADMIN, admin=None),
        ]
    )
    assert bridge.admin_lookups == [MEMBER, ADMIN]
    assert [r.reply for r in bridge.outbox()] == [f"command/{GROUP}/C2"]


def test_a_command_delivered_twice_is_carried_out_once(bridge: Bridge) -> None:
    twice = message("!wabscan mute 2h", "CMD1", sender=ADMIN, admin=True)
    bridge.run([twice], [twice])

    assert len(bridge.outbox()) == 1
    assert bridge.query("SELECT count(*) FROM audit_log") == [(1,)]
    [(muted,)] = bridge.query("SELECT muted_until FROM groups")
    assert muted == "2024-05-01T14:00:00.000Z"


def test_settings_commands(bridge: Bridge) -> None:
    admin = {"sender": ADMIN, "admin": True}
    bridge.run(
        [
            message("!wabscan quiet 22-07", "C1", **admin),  # type: ignore[arg-type]
            message("!wabscan mute", "C2", **admin),  # type: ignore[arg-type]
            message("!wabscan unmute", "C3", **admin),  # type: ignore[arg-type]
            message("!wabscan disable", "C4", **admin),  # type: ignore[arg-type]
        ]
    )
    row = bridge.query(
        "SELECT enabled, muted_until, quiet_start, quiet_end FROM groups"
    )
    assert row == [(0, None, "22:00", "07:00")]
    actions = [a for (a,) in bridge.query("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["group.quiet", "group.mute", "group.unmute", "group.disable"]
    details = [
        json.loads(d)
        for (d,) in bridge.query("SELECT detail FROM audit_log ORDER BY id")
    ]
    assert details[0] == {"quiet": ["22:00", "07:00"]}
    assert details[1] == {"seconds": 3600}
    assert len(bridge.outbox()) == 4


def test_help_status_and_malformed_commands_are_answered(bridge: Bridge) -> None:
    admin = {"sender": ADMIN, "admin": True}
    bridge.run(
        [
            message("!wabscan help", "C1", **admin),  # type: ignore[arg-type]
            message("!wabscan status", "C2", **admin),  # type: ignore[arg-type]
            message("!wabscan mute forever", "C3", **admin),  # type: ignore[arg-type]
        ]
    )
    help_, status, error = (r.text for r in bridge.outbox())
    assert "!wabscan mute" in help_
    assert "checking is off" in status and "session: connected" in status
    assert "30m" in error


def test_check_is_a_scan_job_the_reporter_answers(bridge: Bridge) -> None:
    bridge.run(
        [message("!wabscan check hxxps://evil[.]com/x", "C1", sender=ADMIN, admin=True)]
    )
    [job] = bridge.jobs()
    assert (job.kind, job.url, job.message, job.job) == (
        "check",
        "https://evil.com/x",
        "C1",
        f"{GROUP}/C1/0",
    )
    assert bridge.outbox() == []  # the reporter replies, with the verdict


def test_edits_are_scanned_again_under_the_original_id(eager_bridge: Bridge) -> None:
    eager_bridge.run(
        [
            message("first evil-shop.com/a", "M1"),
            message("now evil-shop.com/b", "M1", edited=True, edit_id="E1"),
            message("!wabscan disable", "M1", sender=ADMIN, admin=True, edited=True),
        ]
    )
    first, edit = eager_bridge.jobs()
    assert (first.job, first.kind) == (f"{GROUP}/M1/0", "message")
    assert (edit.job, edit.kind, edit.message) == (
        f"{GROUP}/M1/edit-E1/0",
        "edit",
        "M1",
    )
    assert edit.url == "http://evil-shop.com/b"
    assert eager_bridge.outbox() == []  # an edited command is not run again


def test_own_messages_are_ignored(eager_bridge: Bridge) -> None:
    eager_bridge.run([message("⚠️ evil-shop.com/a", from_me=True)])
    assert eager_bridge.jobs() == []


def test_scan_on_join_scans_a_new_group_at_once(eager_bridge: Bridge) -> None:
    eager_bridge.run([message("evil-shop.com/a")])
    assert len(eager_bridge.jobs()) == 1


def test_joining_a_group_posts_a_notice_once(bridge: Bridge) -> None:
    joined = GroupJoined(GROUP, "Family", "KEY1", AT)

    async def go() -> None:
        await bridge.inbound.joined(joined)
        await bridge.inbound.joined(joined)

    trio.run(go)
    [notice] = bridge.outbox()
    assert notice.kind == "notice" and notice.quote == ""
    assert "never the text of messages" in notice.text
    assert "!wabscan enable" in notice.text
    assert bridge.query("SELECT jid, name, enabled FROM groups") == [
        (GROUP, "Family", 0)
    ]
    assert bridge.query("SELECT action FROM audit_log") == [("group.join",)]


def test_scan_jobs_respects_the_link_cap() -> None:
    text = " ".join(f"site{n}.com/x" for n in range(30))
    jobs = scan_jobs(message(text), KEY, max_links=20)
    assert len(jobs) == 20 and {j.count for j in jobs} == {20}


def test_status_counts_links_seen_today(bridge: Bridge) -> None:
    from wabscan.storage import record_sighting

    record_sighting(bridge.shared.db, GROUP, "M1", "http://a.com/", "h", AT)
    bridge.shared.db.execute(
        "UPDATE sightings SET seen_at = ?",
        ((datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),),
    )
    bridge.run([message("!wabscan status", "C1", sender=ADMIN, admin=True)])
    [status] = bridge.outbox()
    assert "last 24 hours: 1" in status.text
