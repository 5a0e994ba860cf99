"""The bridge's own tables, as a numbered migration for ``storage``.

- ``bridge_spool``: stream entries Redis refused (down, or out of memory
  at ``maxmemory``), kept in arrival order until they can be added.
  ``seq`` is AUTOINCREMENT so that a number is never reused after the rows
  before it were replayed and deleted: the replay marker kept in Redis
  (see ``spool``) compares sequence numbers.
- ``outbox_sent``: the ledger that makes the outbox at-most-once. A row is
  written as ``sending`` before a reply goes to WhatsApp and becomes
  ``sent`` after; ``abandoned`` marks a reply whose fate a crash left in
  doubt on a transport that cannot de-duplicate (docs/bridge.md). The
  column is ``group_id``, not ``group`` (an SQL keyword), as in
  ``sightings``. ``text_digest`` lets a restarted bridge know the group's
  previous reply without keeping its text.
- ``bridge_commands``: admin commands already carried out, so that a
  re-delivered command changes nothing and is audited once.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from wabscan.storage import Migration

VERSION: Final = 3


def _create_bridge_tables(conn: sqlite3.Connection) -> None:
    statements = [
        """
        CREATE TABLE bridge_spool (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            stream TEXT NOT NULL,
            fields TEXT NOT NULL,
            spooled_at TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE outbox_sent (
            reply TEXT PRIMARY KEY,
            group_id TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('sending', 'sent', 'abandoned')),
            wa_message_id TEXT NOT NULL DEFAULT '',
            text_digest TEXT NOT NULL DEFAULT '',
            claimed_at TEXT NOT NULL,
            sent_at TEXT
        )
        """,
        # The rate limiter is rebuilt from recent sends of each group at start.
        "CREATE INDEX outbox_sent_group_sent_at ON outbox_sent(group_id, sent_at)",
        """
        CREATE TABLE bridge_commands (
            group_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            command TEXT NOT NULL,
            done_at TEXT NOT NULL,
            PRIMARY KEY (group_id, message_id)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX bridge_commands_done_at ON bridge_commands(done_at)",
    ]
    for statement in statements:
        conn.execute(statement)


MIGRATIONS: Final[tuple[Migration, ...]] = (
    (
        VERSION,
        "bridge: inbound spool, outbox ledger, commands carried out",
        _create_bridge_tables,
    ),
)
