"""The reporter's bookkeeping on a real SQLite file: collection, decisions,
repeat window, quiet hours, mutes, corrections, deferred release."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_utils import Database

from wabscan.jobs import (
    KIND_CHECK,
    KIND_EDIT,
    KIND_MESSAGE,
    KIND_RESCAN,
    ScanJob,
    VerdictMessage,
)
from wabscan.reporter import ledger, policy
from wabscan.reporter.ledger import Settings
from wabscan.storage import format_time, open_database, record_sighting
from wabscan.verdict import Level

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
GROUP = "120363000000000001@g.us"
OTHER = "120363000000000002@g.us"
SETTINGS = Settings(window=timedelta(hours=6))


def open_db(path: Path) -> Database:
    return open_database(path)


@pytest.fixture
def rdb(tmp_path: Path) -> Iterator[Database]:
    db = open_db(tmp_path / "wabscan.sqlite3")
    try:
        yield db
    finally:
        db.close()


def verdict(
    message: str,
    index: int,
    count: int,
    level: Level | None,
    *,
    group: str = GROUP,
    kind: str = KIND_MESSAGE,
    url: str = "",
    at: str = "2025-03-14T11:59:00.000Z",
) -> VerdictMessage:
    url = url or f"https://{message.lower()}-{index}.example/login"
    fields = ScanJob(
        job=ScanJob.make_id(group, message, index),
        kind=kind,
        group=group,
        message=message,
        sender="0123456789abcdef",
        url=url,
        index=index,
        count=count,
        at=at,
    ).to_fields()
    fields["canonical"] = url
    if level is None:
        fields["error"] = "invalid-url"
        fields["canonical"] = ""
    else:
        fields.update(
            verdict=level.value, score="50.0", reasons=json.dumps([f"{level} reason"])
        )
    return VerdictMessage.from_fields(fields)


def replies(db: Database) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM replies ORDER BY rowid"))


def record(
    db: Database, verdicts: Sequence[VerdictMessage], now: datetime = NOW
) -> ledger.Report:
    return ledger.record_verdicts(db, verdicts, SETTINGS, now)


def add_group(db: Database, jid: str = GROUP, **columns: object) -> None:
    db.execute(
        "INSERT INTO groups (jid, name, enabled, joined_at) VALUES (?, 'g', 1, ?)",
        (jid, format_time(NOW - timedelta(days=30))),
    )
    for column, value in columns.items():
        db.execute(f"UPDATE groups SET {column} = ? WHERE jid = ?", (value, jid))


# -- one reply per message, whatever the arrival order ---------------------------

MESSAGE_LEVELS = st.lists(
    st.none() | st.sampled_from(list(Level)), min_size=1, max_size=4
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(MESSAGE_LEVELS, min_size=1, max_size=6),
    st.randoms(use_true_random=False),
    st.integers(1, 7),
)
def test_one_reply_per_message_whatever_the_order_and_duplicates(
    messages: list[list[Level | None]], rng: object, batch: int
) -> None:
    arrivals = [
        verdict(f"M{m}", i, len(levels), level)
        for m, levels in enumerate(messages)
        for i, level in enumerate(levels)
    ]
    # Every verdict at least once, some several times (a replay after a
    # crash, a claim of an idle entry), in any order, in batches of any size.
    arrivals += rng.choices(arrivals, k=len(arrivals))  # type: ignore[attr-defined]
    rng.shuffle(arrivals)  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as folder:
        db = open_db(Path(folder) / "db.sqlite3")
        try:
            for start in range(0, len(arrivals), batch):
                record(db, arrivals[start : start + batch])
            ids = [row["id"] for row in replies(db)]
            expected = {
                f"reply/{GROUP}/M{m}"
                for m, levels in enumerate(messages)
                if {Level.SUSPICIOUS, Level.MALICIOUS} & set(levels)
            }
            assert sorted(ids) == sorted(expected)
            decided = db.execute("SELECT count(*) FROM reporter_decisions").fetchone()
            assert decided[0] == len(messages)
            assert db.execute("SELECT count(*) FROM reporter_parts").fetchone()[0] == 0
        finally:
            db.close()


def test_a_message_waits_for_all_its_links(rdb: Database) -> None:
    record(rdb, [verdict("M", 0, 3, Level.MALICIOUS)])
    record(rdb, [verdict("M", 2, 3, Level.BENIGN)])
    assert replies(rdb) == []
    record(rdb, [verdict("M", 1, 3, Level.SUSPICIOUS)])
    [reply] = replies(rdb)
    assert reply["id"] == f"reply/{GROUP}/M"
    assert reply["level"] == "malicious" and reply["status"] == "queued"
    assert "m-0[.]example" in str(reply["text"]) and "m-1[.]example" in str(
        reply["text"]
    )
    assert "m-2[.]example" not in str(reply["text"])  # benign: not named
    assert [m.reply for m in ledger.queued_replies(rdb)] == [reply["id"]]


def test_benign_is_silent_unless_the_group_asks(rdb: Database) -> None:
    report = record(rdb, [verdict("M1", 0, 1, Level.BENIGN)])
    assert replies(rdb) == [] and report.suppressed == {"benign": 1}
    add_group(rdb, announce_benign=1)
    record(rdb, [verdict("M2", 0, 1, Level.BENIGN)])
    assert [r["id"] for r in replies(rdb)] == [f"reply/{GROUP}/M2"]


def test_a_message_with_no_judged_link_is_silent(rdb: Database) -> None:
    report = record(rdb, [verdict("M", 0, 1, None)])
    assert replies(rdb) == [] and report.suppressed == {"unjudged": 1}


def test_an_edit_gets_its_own_reply(rdb: Database) -> None:
    record(rdb, [verdict("M", 0, 1, Level.SUSPICIOUS)])
    edited = verdict(
        "M",
        0,
        1,
        Level.MALICIOUS,
        kind=KIND_EDIT,
        url="https://other.example/",
        at="2025-03-14T12:00:00.000Z",
    )
    record(rdb, [edited])
    assert [r["id"] for r in replies(rdb)] == [
        f"reply/{GROUP}/M",
        f"reply/{GROUP}/M/edit:2025-03-14T12:00:00.000Z",
    ]


def test_the_same_link_is_not_repeated_within_the_window(rdb: Database) -> None:
    url = "https://evil.example/x"
    record(rdb, [verdict("M1", 0, 1, Level.SUSPICIOUS, url=url)])
    report = record(
        rdb, [verdict("M2", 0, 1, Level.SUSPICIOUS, url=url)], NOW + timedelta(hours=1)
    )
    assert report.suppressed == {"repeat": 1}
    # Another group is told; so is this one once the window has passed.
    record(rdb, [verdict("M3", 0, 1, Level.SUSPICIOUS, url=url, group=OTHER)])
    record(
        rdb, [verdict("M4", 0, 1, Level.SUSPICIOUS, url=url)], NOW + timedelta(hours=7)
    )
    assert [r["id"] for r in replies(rdb)] == [
        f"reply/{GROUP}/M1",
        f"reply/{OTHER}/M3",
        f"reply/{GROUP}/M4",
    ]
    texts = [r["text"] for r in replies(rdb) if r["group_id"] == GROUP]
    assert texts[0] != texts[1]  # never the same text twice in a row


def test_checks_are_answered_even_when_muted_and_benign(rdb: Database) -> None:
    add_group(rdb, muted_until=format_time(NOW + timedelta(hours=2)), enabled=0)
    record(rdb, [verdict("C", 0, 1, Level.BENIGN, kind=KIND_CHECK)])
    [reply] = replies(rdb)
    assert reply["id"] == f"check/{GROUP}/C"
    assert reply["kind"] == "command" and reply["status"] == "queued"


def test_quiet_hours_defer_until_their_end(rdb: Database) -> None:
    add_group(
        rdb, quiet_start="11:00", quiet_end="13:30", settings='{"timezone": "UTC"}'
    )
    report = record(rdb, [verdict("M", 0, 1, Level.SUSPICIOUS)])
    [reply] = replies(rdb)
    assert reply["status"] == "deferred" and report.deferred == 1
    assert reply["send_after"] == "2025-03-14T13:30:00.000Z"
    assert ledger.queued_replies(rdb) == []

    ledger.release_deferred(rdb, SETTINGS, NOW + timedelta(hours=1))
    assert replies(rdb)[0]["status"] == "deferred"
    released = ledger.release_deferred(rdb, SETTINGS, NOW + timedelta(hours=1.5))
    assert released.released == 1
    assert [m.reply for m in ledger.queued_replies(rdb)] == [reply["id"]]


def test_a_mute_drops_suspicious_and_defers_malicious(rdb: Database) -> None:
    add_group(rdb, muted_until=format_time(NOW + timedelta(hours=2)))
    report = record(
        rdb,
        [verdict("M1", 0, 1, Level.SUSPICIOUS), verdict("M2", 0, 1, Level.MALICIOUS)],
    )
    assert report.suppressed == {"muted": 1}
    [reply] = replies(rdb)
    assert reply["id"] == f"reply/{GROUP}/M2" and reply["status"] == "deferred"
    # An early unmute releases it at the next pass.
    rdb.execute("UPDATE groups SET muted_until = NULL WHERE jid = ?", (GROUP,))
    assert (
        ledger.release_deferred(rdb, SETTINGS, NOW + timedelta(minutes=5)).released == 1
    )


def test_a_deferred_reply_is_dropped_if_the_group_is_disabled(rdb: Database) -> None:
    add_group(rdb, muted_until=format_time(NOW + timedelta(hours=2)))
    record(rdb, [verdict("M", 0, 1, Level.MALICIOUS)])
    rdb.execute("UPDATE groups SET enabled = 0 WHERE jid = ?", (GROUP,))
    report = ledger.release_deferred(rdb, SETTINGS, NOW + timedelta(hours=3))
    assert report.suppressed == {"disabled": 1}
    assert replies(rdb)[0]["status"] == "dropped"


def test_a_rescan_that_raises_the_level_corrects_groups_that_saw_it(
    rdb: Database,
) -> None:
    url = "https://rising.example/"
    for group, message, level in (
        (GROUP, "M1", Level.BENIGN),
        (OTHER, "M2", Level.SUSPICIOUS),
    ):
        record_sighting(rdb, group, message, url, "0123456789abcdef", seen_at=NOW)
        record(rdb, [verdict(message, 0, 1, level, url=url, group=group)])
    # A group that saw it long ago is not corrected.
    old = "120363000000000003@g.us"
    earlier = NOW - timedelta(days=2)
    record_sighting(rdb, old, "M0", url, "0123456789abcdef", seen_at=earlier)
    record(rdb, [verdict("M0", 0, 1, Level.BENIGN, url=url, group=old)], earlier)
    # The link was benign when GROUP saw it and suspicious when OTHER did: the
    # later verdict raised it, so GROUP (told nothing) is corrected.
    assert [(r["id"], r["message_id"]) for r in replies(rdb)] == [
        (f"reply/{OTHER}/M2", "M2"),
        (policy.correction_id(GROUP, url, Level.SUSPICIOUS), "M1"),
    ]

    rescan = verdict("", 0, 1, Level.MALICIOUS, url=url, kind=KIND_RESCAN, group="")
    later = NOW + timedelta(hours=1)
    record(rdb, [rescan], later)
    record(rdb, [rescan], later + timedelta(minutes=1))  # a replay: no new ids
    corrections = [
        r
        for r in replies(rdb)
        if r["kind"] == "correction" and r["level"] == "malicious"
    ]
    assert {(r["id"], r["message_id"]) for r in corrections} == {
        (policy.correction_id(GROUP, url, Level.MALICIOUS), "M1"),
        (policy.correction_id(OTHER, url, Level.MALICIOUS), "M2"),
    }

    # The same level again, or a lower one, corrects nothing.
    count = len(replies(rdb))
    lower = verdict("", 0, 1, Level.SUSPICIOUS, url=url, kind=KIND_RESCAN, group="")
    record(rdb, [rescan, lower], later + timedelta(minutes=2))
    assert len(replies(rdb)) == count


def test_a_raised_level_reaches_a_message_still_being_collected(
    rdb: Database,
) -> None:
    url = "https://pending.example/"
    record(rdb, [verdict("M", 0, 2, Level.BENIGN, url=url)])
    rescan = verdict("", 0, 1, Level.MALICIOUS, url=url, kind=KIND_RESCAN, group="")
    record(rdb, [rescan])
    record(rdb, [verdict("M", 1, 2, Level.BENIGN)])
    [reply] = replies(rdb)
    assert reply["id"] == f"reply/{GROUP}/M" and reply["level"] == "malicious"


def test_a_message_missing_verdicts_is_decided_after_a_while(rdb: Database) -> None:
    record(rdb, [verdict("M", 0, 2, Level.MALICIOUS)])
    ledger.decide_overdue(rdb, SETTINGS, NOW + timedelta(minutes=5))
    assert replies(rdb) == []
    ledger.decide_overdue(rdb, SETTINGS, NOW + timedelta(minutes=11))
    assert [r["id"] for r in replies(rdb)] == [f"reply/{GROUP}/M"]
    # Its late verdict is a replay now, not a second reply.
    assert record(rdb, [verdict("M", 1, 2, Level.MALICIOUS)]).replayed == 1
    assert len(replies(rdb)) == 1


def test_sent_replies_are_marked_and_old_rows_purged(rdb: Database) -> None:
    record(rdb, [verdict("M", 0, 1, Level.MALICIOUS)])
    [queued] = ledger.queued_replies(rdb)
    ledger.mark_sent(rdb, [queued.reply], NOW)
    assert replies(rdb)[0]["status"] == "sent-to-outbox"
    assert ledger.queued_replies(rdb) == []
    assert ledger.purge(rdb, 90, NOW + timedelta(days=91)) >= 3
    assert replies(rdb) == []
