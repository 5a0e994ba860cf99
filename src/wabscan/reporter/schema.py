"""The reporter's own tables, as a numbered migration for ``storage``.

- ``reporter_parts``: one row per judged link of a message, keyed by
  ``(group, message, batch, index)``, held until the message has all of its
  ``count`` links. ``batch`` is empty for the message itself and
  ``edit:<time>`` for an edit of it, so an edit gets its own reply.
- ``reporter_decisions``: one row per message once the reporter has decided
  about it (a reply, or why not). Its existence is what makes a replayed
  verdict a no-op.
- ``reporter_told``: what each group was last told about each link (level,
  and when it was last named in a reply), for the repeat window and for
  corrections. Silence about a benign link counts as "told benign".
- ``replies``: every reply the reporter decided to send, by its natural id,
  with its delivery state: ``queued`` (to be added to the outbox),
  ``deferred`` (held until ``send_after``), ``sent-to-outbox``, ``dropped``.
- ``scan_ids``: the API's stable scan id (a hash of the canonical URL) to the
  canonical URL, because the verdicts table is keyed by the URL itself.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from wabscan.storage import Migration

VERSION: Final = 2


def _create_reporter_tables(conn: sqlite3.Connection) -> None:
    statements = [
        """
        CREATE TABLE reporter_parts (
            group_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            batch TEXT NOT NULL,
            idx INTEGER NOT NULL,
            kind TEXT NOT NULL,
            count INTEGER NOT NULL,
            canonical TEXT NOT NULL,
            level TEXT,
            reasons TEXT NOT NULL,
            received_at TEXT NOT NULL,
            PRIMARY KEY (group_id, message_id, batch, idx)
        ) WITHOUT ROWID
        """,
        # Undecided parts are looked up by link when a later scan raises its
        # level, so that a reply still being collected says the higher one.
        "CREATE INDEX reporter_parts_canonical ON reporter_parts(canonical)",
        """
        CREATE TABLE reporter_decisions (
            group_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            batch TEXT NOT NULL,
            kind TEXT NOT NULL,
            outcome TEXT NOT NULL,
            reply_id TEXT,
            decided_at TEXT NOT NULL,
            PRIMARY KEY (group_id, message_id, batch)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX reporter_decisions_at ON reporter_decisions(decided_at)",
        """
        CREATE TABLE reporter_told (
            group_id TEXT NOT NULL,
            canonical TEXT NOT NULL,
            level TEXT NOT NULL
                CHECK (level IN ('benign', 'suspicious', 'malicious')),
            announced_at TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (group_id, canonical)
        ) WITHOUT ROWID
        """,
        # Corrections look up every group told about one link.
        "CREATE INDEX reporter_told_canonical ON reporter_told(canonical)",
        "CREATE INDEX reporter_told_updated_at ON reporter_told(updated_at)",
        """
        CREATE TABLE replies (
            id TEXT PRIMARY KEY,
            group_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            level TEXT,
            text TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('queued', 'deferred', 'sent-to-outbox', 'dropped')),
            reason TEXT NOT NULL DEFAULT '',
            send_after TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """,
        "CREATE INDEX replies_status ON replies(status, send_after)",
        # A group's last reply (for varied wording) is its highest rowid here.
        "CREATE INDEX replies_group ON replies(group_id)",
        """
        CREATE TABLE scan_ids (
            id TEXT PRIMARY KEY,
            canonical TEXT NOT NULL UNIQUE
        )
        """,
    ]
    for statement in statements:
        conn.execute(statement)


MIGRATIONS: Final[tuple[Migration, ...]] = (
    (
        VERSION,
        "reporter: message parts, decisions, what groups were told, replies",
        _create_reporter_tables,
    ),
)
