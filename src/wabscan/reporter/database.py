"""The reporter's SQLite connection, used from trio worker threads.

sqlite-utils opens connections with Python's default ``check_same_thread``,
so a connection opened on the trio thread raises ``ProgrammingError`` when
used from a worker thread (where every SQLite call must run, to keep the
event loop free). The reporter therefore opens its own connection with
``check_same_thread=False`` and lets one call use it at a time: a connection
is one transaction, and the consumer, the release loop and the control API
must not interleave theirs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import trio
from sqlite_utils import Database

from wabscan import storage

P = ParamSpec("P")
T = TypeVar("T")


def open_reporter_database(path: str | Path) -> Database:
    """Open the shared database, upgraded (the reporter's tables are
    migration 2 of ``storage.MIGRATIONS``), on a connection that any one
    thread at a time may use."""
    # open_database creates the file, switches it to WAL (a property of the
    # file) and runs the migrations; the pragmas below are per connection and
    # repeat its choices (see storage.open_database for the measurements).
    storage.open_database(path).close()
    conn = sqlite3.connect(str(path), check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return Database(conn)


class SerialDatabase:
    """A database whose calls run in worker threads, one at a time.

    A call is not abandoned on cancellation: the lock is released only once
    the thread is done with the connection.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = trio.Lock()

    async def run(
        self,
        fn: Callable[Concatenate[Database, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(db, *args, **kwargs)`` in a worker thread."""
        async with self._lock:
            return await trio.to_thread.run_sync(partial(fn, self.db, *args, **kwargs))

    def close(self) -> None:
        self.db.close()
