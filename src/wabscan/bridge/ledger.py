"""The outbox ledger: which replies went out, so that none goes out twice.

A reply is claimed (``sending``) in its own commit before the transport is
asked to send it, and marked ``sent`` after. After a crash, a reply found
``sending`` may or may not have reached WhatsApp:

- on a transport that honours the bridge's message ids (``custom_ids``),
  it is sent again with the same id, and the receiving side drops the copy;
- otherwise it is marked ``abandoned`` and not sent again: the outbox
  promises at most once, and a duplicate warning is the kind of repeated
  message that gets an account banned.

Plain functions over a sqlite-utils Database, called through
:class:`~wabscan.serial.SerialDatabase`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlite_utils import Database

from wabscan.storage import format_time, parse_time

SENDING: Final = "sending"
SENT: Final = "sent"
ABANDONED: Final = "abandoned"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    reply: str
    group: str
    state: str
    wa_message_id: str
    text_digest: str


def entry(db: Database, reply: str) -> LedgerEntry | None:
    row = db.execute(
        "SELECT reply, group_id, state, wa_message_id, text_digest"
        " FROM outbox_sent WHERE reply = ?",
        (reply,),
    ).fetchone()
    return LedgerEntry(*row) if row else None


def claim(
    db: Database,
    reply: str,
    group: str,
    wa_message_id: str,
    text_digest: str,
    now: datetime,
) -> None:
    """Record that ``reply`` is about to be sent (its own commit)."""
    db.execute(
        "INSERT INTO outbox_sent"
        " (reply, group_id, state, wa_message_id, text_digest, claimed_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (reply, group, SENDING, wa_message_id, text_digest, format_time(now)),
    )


def mark_sent(db: Database, reply: str, wa_message_id: str, now: datetime) -> None:
    db.execute(
        "UPDATE outbox_sent SET state = ?, wa_message_id = ?, sent_at = ?"
        " WHERE reply = ?",
        (SENT, wa_message_id, format_time(now), reply),
    )


def mark_abandoned(db: Database, reply: str, now: datetime) -> None:
    db.execute(
        "UPDATE outbox_sent SET state = ?, sent_at = ? WHERE reply = ?",
        (ABANDONED, format_time(now), reply),
    )


def release(db: Database, reply: str) -> None:
    """Forget a claim whose send failed for certain, so it can be retried."""
    db.execute(
        "DELETE FROM outbox_sent WHERE reply = ? AND state = ?", (reply, SENDING)
    )


def last_digest(db: Database, group: str) -> str:
    """The digest of the last reply claimed for ``group`` (empty if none)."""
    row = db.execute(
        "SELECT text_digest FROM outbox_sent WHERE group_id = ?"
        " ORDER BY rowid DESC LIMIT 1",
        (group,),
    ).fetchone()
    return str(row[0]) if row else ""


def sends_since(db: Database, since: datetime) -> list[tuple[str, float]]:
    """``(group, time)`` of every reply sent since ``since``, for the rate
    limiter."""
    rows = db.execute(
        "SELECT group_id, sent_at FROM outbox_sent"
        " WHERE state = ? AND sent_at >= ? ORDER BY sent_at",
        (SENT, format_time(since)),
    ).fetchall()
    return [(group, parse_time(at).timestamp()) for group, at in rows]
