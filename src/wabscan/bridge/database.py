"""The bridge's connection to the shared SQLite database.

The bridge writes from trio worker threads (a busy database must not stall
the event loop, or the watchdog would restart a healthy unit), and
``open_database`` returns a connection bound to the thread that opened it.
So the bridge migrates through ``open_database`` and then opens its own
connection with ``check_same_thread=False``; a capacity limiter of one lets
a single thread use it at a time, which also keeps one ``BEGIN IMMEDIATE``
transaction from interleaving with another's statements.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio
from sqlite_utils import Database

from wabscan import storage
from wabscan.bridge.schema import with_bridge

T = TypeVar("T")


def open_bridge_database(path: str | Path) -> Database:
    """Open (migrating first) the shared database for use from any thread.

    Raises:
        StorageError: as :func:`wabscan.storage.open_database`.
    """
    storage.open_database(path, with_bridge(storage.MIGRATIONS)).close()
    conn = sqlite3.connect(str(path), check_same_thread=False)
    db = Database(conn)
    # The same settings open_database applies (WAL is a property of the
    # file and stays on); these three are per connection.
    db.execute("PRAGMA busy_timeout = 5000")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")
    return db


class SharedDatabase:
    """A database connection that trio tasks use one worker thread at a time.

    Args:
        db: a connection opened with ``check_same_thread=False``.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._limiter = trio.CapacityLimiter(1)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` in a worker thread, alone on the connection."""
        return await trio.to_thread.run_sync(
            partial(fn, self.db, *args), limiter=self._limiter
        )

    def close(self) -> None:
        self.db.close()
