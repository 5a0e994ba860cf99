"""The reporter's bookkeeping in SQLite: message parts, decisions, replies.

Every function here takes the database and plain values, runs in a worker
thread, and does its writes in one ``BEGIN IMMEDIATE`` transaction, so that a
crash leaves either all of a batch's effects or none. Each write is keyed by
its natural key and is a no-op when replayed: a part by ``(group, message,
batch, index)``, a decision by ``(group, message, batch)``, a reply by its
id. The decisions themselves are :mod:`wabscan.reporter.policy`'s.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from sqlite_utils import Database

from wabscan.config import Config
from wabscan.jobs import (
    KIND_CHECK,
    KIND_EDIT,
    KIND_MESSAGE,
    OutboxMessage,
    ScanJob,
    VerdictMessage,
)
from wabscan.reporter import policy
from wabscan.reporter.groups import group_record, group_state
from wabscan.reporter.policy import Delivery, Part, Told
from wabscan.reporter.wording import check_text, correction_text, warning_text
from wabscan.storage import format_time, parse_time, transaction
from wabscan.verdict import Level

# The outbox entry kinds (see jobs.OutboxMessage).
WARNING: Final = "warning"
CORRECTION: Final = "correction"
COMMAND: Final = "command"

QUEUED: Final = "queued"
DEFERRED: Final = "deferred"
SENT: Final = "sent-to-outbox"
DROPPED: Final = "dropped"

# Jobs of these kinds come from a group message and are answered there.
_ANSWERED: Final = (KIND_MESSAGE, KIND_EDIT, KIND_CHECK)


@dataclass(frozen=True, slots=True)
class Settings:
    """The reporter's configuration, as the ledger needs it.

    Attributes:
        announce_benign: name benign links in every group.
        window: the repeat window; also how far back a correction looks.
        incomplete_after: a message still missing verdicts after this long
            is decided with the ones that came (a job lost upstream must not
            silence a warning about the links that were judged).
    """

    announce_benign: bool = False
    window: timedelta = timedelta(hours=6)
    incomplete_after: timedelta = timedelta(minutes=10)

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        return cls(
            announce_benign=config.reporter.announce_benign,
            window=timedelta(seconds=config.reporter.repeat_window_seconds),
        )


@dataclass
class Report:
    """What one call did, for the metrics and the journal."""

    verdicts: Counter[str] = field(default_factory=Counter)
    deferred: int = 0
    released: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    replayed: int = 0


def batch_of(job: ScanJob) -> str:
    """Which reply a job's link belongs to: the message's own, or one edit's.

    An edit has the message's id; its time tells one edit from another.
    """
    return f"edit:{job.at}" if job.kind == KIND_EDIT else ""


def record_verdicts(
    db: Database,
    verdicts: Sequence[VerdictMessage],
    settings: Settings,
    now: datetime,
) -> Report:
    """Store a batch of verdicts and decide every message it completes.

    In order: store the parts; raise links still being collected to any
    higher level in the batch; decide the complete messages (which records
    what each group was told); then send corrections to groups that were
    told less than a verdict now says. Deciding before correcting means the
    group whose own message carried the link gets a reply, not a correction.
    """
    report = Report()
    with transaction(db):
        keys: dict[tuple[str, str, str], None] = {}
        worst: dict[str, VerdictMessage] = {}
        for verdict in verdicts:
            level = verdict.level
            report.verdicts[level.value if level else "invalid"] += 1
            if verdict.canonical:
                _index_scan(db, verdict.canonical)
                seen = worst.get(verdict.canonical)
                if level and (seen is None or level.rank > _rank(seen.level)):
                    worst[verdict.canonical] = verdict
            job = verdict.job
            if job.kind in _ANSWERED and job.group and job.message:
                key = (job.group, job.message, batch_of(job))
                if _store_part(db, key, verdict, now):
                    keys[key] = None
                else:
                    report.replayed += 1

        for verdict in worst.values():
            _raise_pending(db, verdict)
        for key in keys:
            _decide(db, key, settings, now, report, force=False)
        for verdict in worst.values():
            _correct(db, verdict, settings, now, report)
    return report


def decide_overdue(db: Database, settings: Settings, now: datetime) -> Report:
    """Decide messages that have waited longer than ``incomplete_after`` for
    their remaining verdicts, with the verdicts that came."""
    report = Report()
    cutoff = format_time(now - settings.incomplete_after)
    with transaction(db):
        rows = db.execute(
            "SELECT group_id, message_id, batch FROM reporter_parts"
            " GROUP BY group_id, message_id, batch HAVING min(received_at) < ?",
            (cutoff,),
        ).fetchall()
        for group_id, message_id, batch in rows:
            _decide(db, (group_id, message_id, batch), settings, now, report, True)
    return report


def release_deferred(db: Database, settings: Settings, now: datetime) -> Report:
    """Queue the deferred replies whose time has come.

    Each is judged again against the group's settings now: an early unmute
    releases it at once, a new mute or quiet period holds it further (or
    drops it, by the same rules as a new reply), a disabled group drops it.
    """
    report = Report()
    with transaction(db):
        rows = db.execute(
            "SELECT id, group_id, level, send_after FROM replies"
            " WHERE status = ? ORDER BY rowid",
            (DEFERRED,),
        ).fetchall()
        states: dict[str, policy.GroupState] = {}
        for reply, group_id, level, send_after in rows:
            if group_id not in states:
                record = group_record(db, group_id)
                states[group_id] = group_state(record, settings.announce_benign, now)
            when = policy.delivery(
                states[group_id], Level(level) if level else None, now
            )
            stamp = format_time(now)
            if when.dropped:
                db.execute(
                    "UPDATE replies SET status = ?, reason = ?, updated_at = ?"
                    " WHERE id = ?",
                    (DROPPED, when.dropped, stamp, reply),
                )
                report.suppressed[when.dropped] += 1
            elif when.after is None:
                db.execute(
                    "UPDATE replies SET status = ?, updated_at = ? WHERE id = ?",
                    (QUEUED, stamp, reply),
                )
                report.released += 1
            elif format_time(when.after) != send_after:
                db.execute(
                    "UPDATE replies SET send_after = ?, updated_at = ? WHERE id = ?",
                    (format_time(when.after), stamp, reply),
                )
    return report


def queued_replies(db: Database, limit: int = 500) -> list[OutboxMessage]:
    """Replies decided but not yet in the outbox, oldest first."""
    rows = db.execute(
        "SELECT id, group_id, message_id, text, kind FROM replies"
        " WHERE status = ? ORDER BY rowid LIMIT ?",
        (QUEUED, limit),
    ).fetchall()
    return [OutboxMessage(*row) for row in rows]


def mark_sent(db: Database, ids: Sequence[str], now: datetime) -> None:
    """Record that these replies are in the outbox stream."""
    with transaction(db):
        db.conn.executemany(
            "UPDATE replies SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
            [(SENT, format_time(now), reply, QUEUED) for reply in ids],
        )


def deferred_count(db: Database) -> int:
    row = db.execute(
        "SELECT count(*) FROM replies WHERE status = ?", (DEFERRED,)
    ).fetchone()
    return int(row[0])


def purge(db: Database, older_than_days: int, now: datetime) -> int:
    """Forget decisions, delivered replies and what groups were told longer
    ago than the retention for scans; returns the rows deleted."""
    cutoff = format_time(now - timedelta(days=older_than_days))
    with transaction(db):
        deleted = sum(
            db.execute(sql, (cutoff,)).rowcount
            for sql in (
                "DELETE FROM reporter_decisions WHERE decided_at < ?",
                "DELETE FROM reporter_told WHERE updated_at < ?",
                "DELETE FROM replies WHERE updated_at < ?"
                f" AND status IN ('{SENT}', '{DROPPED}')",
            )
        )
        # storage.purge removes old verdicts; their API ids go with them.
        deleted += db.execute(
            "DELETE FROM scan_ids"
            " WHERE canonical NOT IN (SELECT canonical FROM verdicts)"
        ).rowcount
    return deleted


def index_scans(db: Database) -> int:
    """Give every stored verdict its API id (verdicts written by the command
    line, or before the reporter ran, have none yet); returns how many."""
    rows = db.execute(
        "SELECT canonical FROM verdicts"
        " WHERE canonical NOT IN (SELECT canonical FROM scan_ids)"
    ).fetchall()
    with transaction(db):
        for (canonical,) in rows:
            _index_scan(db, canonical)
    return len(rows)


# -- steps of record_verdicts ------------------------------------------------


def _store_part(
    db: Database, key: tuple[str, str, str], verdict: VerdictMessage, now: datetime
) -> bool:
    """Store one link of a message; False if the message was already decided
    (a replay), so the part is not kept."""
    if _decided(db, key):
        return False
    job = verdict.job
    db.execute(
        "INSERT OR IGNORE INTO reporter_parts (group_id, message_id, batch, idx,"
        " kind, count, canonical, level, reasons, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            *key,
            job.index,
            job.kind,
            job.count,
            verdict.canonical,
            verdict.level.value if verdict.level else None,
            json.dumps(list(verdict.reasons), ensure_ascii=False),
            format_time(now),
        ),
    )
    return True


def _raise_pending(db: Database, verdict: VerdictMessage) -> None:
    """A link still being collected takes a higher level found since, so the
    reply, when it is written, says the worst that is known."""
    assert verdict.level is not None
    lower = [level.value for level in Level if level.rank < verdict.level.rank]
    if not lower:
        return
    db.execute(
        "UPDATE reporter_parts SET level = ?, reasons = ? WHERE canonical = ?"
        f" AND level IN ({', '.join('?' * len(lower))})",
        (
            verdict.level.value,
            json.dumps(list(verdict.reasons), ensure_ascii=False),
            verdict.canonical,
            *lower,
        ),
    )


def _decide(
    db: Database,
    key: tuple[str, str, str],
    settings: Settings,
    now: datetime,
    report: Report,
    force: bool,
) -> None:
    if _decided(db, key):
        return
    group_id, message_id, batch = key
    rows = db.execute(
        "SELECT idx, kind, count, canonical, level, reasons FROM reporter_parts"
        " WHERE group_id = ? AND message_id = ? AND batch = ? ORDER BY idx",
        key,
    ).fetchall()
    if not rows:
        return
    parts = [
        Part(idx, canonical, Level(level) if level else None, tuple(json.loads(why)))
        for idx, _kind, _count, canonical, level, why in rows
    ]
    kind = rows[0][1]
    if not force and not policy.is_complete(
        (p.index for p in parts), max(r[2] for r in rows)
    ):
        return

    group = group_state(group_record(db, group_id), settings.announce_benign, now)
    told = _told(db, group_id, {p.canonical for p in parts if p.canonical})
    decision = policy.decide_message(kind, parts, group, told, now, settings.window)
    reply: str | None = None
    outcome = decision.reason
    if decision.reply and not decision.delivery.dropped:
        avoid = _last_text(db, group_id)
        if decision.check:
            reply = policy.check_id(group_id, message_id)
            text = check_text(reply, decision.announce, avoid)
        else:
            reply = policy.reply_id(group_id, message_id, batch)
            text = warning_text(reply, decision.announce, avoid)
        outcome = DEFERRED if decision.delivery.deferred else QUEUED
        _add_reply(
            db,
            reply,
            (group_id, message_id),
            COMMAND if decision.check else WARNING,
            decision.level,
            text,
            decision.delivery,
            now,
            report,
        )
    else:
        report.suppressed[outcome] += 1

    db.execute(
        "INSERT INTO reporter_decisions (group_id, message_id, batch, kind, outcome,"
        " reply_id, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (*key, kind, outcome, reply, format_time(now)),
    )
    _write_told(db, group_id, policy.told_after(decision, told, now), now)
    # The parts have served: what a replay stores is refused by _store_part.
    db.execute(
        "DELETE FROM reporter_parts WHERE group_id = ? AND message_id = ?"
        " AND batch = ?",
        key,
    )


def _correct(
    db: Database,
    verdict: VerdictMessage,
    settings: Settings,
    now: datetime,
    report: Report,
) -> None:
    """Tell the groups that saw the link within the window, and were told
    less than ``verdict`` says, that it is worse than they heard."""
    level = verdict.level
    assert level is not None
    if level.rank < Level.SUSPICIOUS.rank:
        return
    lower = [other.value for other in Level if other.rank < level.rank]
    # The latest sighting in each group is the message the correction quotes.
    rows = db.execute(
        "SELECT t.group_id, t.level, t.announced_at,"
        "  (SELECT s.message_id FROM sightings s WHERE s.group_id = t.group_id"
        "   AND s.canonical = t.canonical ORDER BY s.seen_at DESC LIMIT 1)"
        " FROM reporter_told t"
        f" WHERE t.canonical = ? AND t.level IN ({', '.join('?' * len(lower))})"
        "  AND EXISTS (SELECT 1 FROM sightings s WHERE s.group_id = t.group_id"
        "   AND s.canonical = t.canonical AND s.seen_at >= ?)"
        " ORDER BY t.group_id",
        (verdict.canonical, *lower, format_time(now - settings.window)),
    ).fetchall()
    link = Part(0, verdict.canonical, level, verdict.reasons)
    for group_id, told_level, announced_at, quote in rows:
        told = Told(
            Level(told_level), parse_time(announced_at) if announced_at else None
        )
        if not policy.needs_correction(told, level):
            continue
        group = group_state(group_record(db, group_id), settings.announce_benign, now)
        when = policy.delivery(group, level, now)
        if when.dropped:
            report.suppressed[when.dropped] += 1
            _write_told(
                db, group_id, {verdict.canonical: Told(level, told.announced_at)}, now
            )
            continue
        reply = policy.correction_id(group_id, verdict.canonical, level)
        text = correction_text(reply, link, _last_text(db, group_id))
        _add_reply(
            db,
            reply,
            (group_id, quote or ""),
            CORRECTION,
            level,
            text,
            when,
            now,
            report,
        )
        _write_told(db, group_id, {verdict.canonical: Told(level, now)}, now)


# -- small queries -------------------------------------------------------------


def _add_reply(
    db: Database,
    reply: str,
    where: tuple[str, str],
    kind: str,
    level: Level | None,
    text: str,
    when: Delivery,
    now: datetime,
    report: Report,
) -> None:
    stamp = format_time(now)
    cursor = db.execute(
        "INSERT OR IGNORE INTO replies (id, group_id, message_id, kind, level, text,"
        " status, send_after, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            reply,
            *where,
            kind,
            level.value if level else None,
            text,
            DEFERRED if when.deferred else QUEUED,
            format_time(when.after) if when.after else None,
            stamp,
            stamp,
        ),
    )
    if cursor.rowcount == 1 and when.deferred:
        report.deferred += 1


def _decided(db: Database, key: tuple[str, str, str]) -> bool:
    row = db.execute(
        "SELECT 1 FROM reporter_decisions WHERE group_id = ? AND message_id = ?"
        " AND batch = ?",
        key,
    ).fetchone()
    return row is not None


def _told(db: Database, group_id: str, canonicals: Iterable[str]) -> dict[str, Told]:
    wanted = sorted(canonicals)
    if not wanted:
        return {}
    rows = db.execute(
        "SELECT canonical, level, announced_at FROM reporter_told"
        f" WHERE group_id = ? AND canonical IN ({', '.join('?' * len(wanted))})",
        (group_id, *wanted),
    ).fetchall()
    return {
        canonical: Told(Level(level), parse_time(at) if at else None)
        for canonical, level, at in rows
    }


def _write_told(
    db: Database, group_id: str, changed: Mapping[str, Told], now: datetime
) -> None:
    for canonical, told in changed.items():
        db.execute(
            "INSERT INTO reporter_told (group_id, canonical, level, announced_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (group_id, canonical) DO UPDATE SET level = excluded.level,"
            " announced_at = excluded.announced_at, updated_at = excluded.updated_at",
            (
                group_id,
                canonical,
                told.level.value,
                format_time(told.announced_at) if told.announced_at else None,
                format_time(now),
            ),
        )


def _last_text(db: Database, group_id: str) -> str:
    row = db.execute(
        "SELECT text FROM replies WHERE group_id = ? ORDER BY rowid DESC LIMIT 1",
        (group_id,),
    ).fetchone()
    return str(row[0]) if row else ""


def _index_scan(db: Database, canonical: str) -> None:
    db.execute(
        "INSERT OR IGNORE INTO scan_ids (id, canonical) VALUES (?, ?)",
        (policy.link_hash(canonical), canonical),
    )


def _rank(level: Level | None) -> int:
    return -1 if level is None else level.rank
