"""One SQLite connection shared by a unit's trio tasks, one thread at a time.

Every SQLite call of a unit runs in a worker thread, so that a busy database
(another unit's write, a checkpoint) never stalls the event loop and with it
the watchdog. A connection is one transaction at a time, so the tasks that
share it (a consumer loop, a release loop, the control API) take turns.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import trio
from sqlite_utils import Database

from wabscan import storage

P = ParamSpec("P")
T = TypeVar("T")


class SerialDatabase:
    """A database whose calls run in worker threads, one at a time.

    A call is never abandoned on cancellation: the lock is released only once
    the thread is done with the connection.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = trio.Lock()

    @classmethod
    def open(cls, path: str | Path) -> SerialDatabase:
        """Open (and migrate) the shared database for use from any thread."""
        return cls(storage.open_database(path, any_thread=True))

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
