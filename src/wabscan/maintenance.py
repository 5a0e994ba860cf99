"""The daily maintenance job (``wabscan-maintenance.timer``): retention,
feed refresh, SQLite optimisation and an online backup.

Each step is independent: one failing is logged and the others still run;
the job exits non-zero if any failed, so the unit shows as failed.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database

from wabscan.config import Config
from wabscan.errors import WabscanError
from wabscan.feeds import import_feed, list_sources
from wabscan.storage import open_database, purge

log = logging.getLogger(__name__)

BACKUPS_KEPT = 7


@dataclass
class Report:
    failed: list[str]
    done: list[str]


def run_maintenance(config: Config, backup_dir: Path | None = None) -> Report:
    """Run every step; the report names those that failed."""
    db = open_database(config.database_path)
    backups = backup_dir or config.state_path / "backups"
    steps: list[tuple[str, Callable[[], str]]] = [
        ("retention", lambda: _retention(db, config)),
        ("feeds", lambda: _refresh_feeds(db)),
        ("optimize", lambda: _optimize(db)),
        ("backup", lambda: _backup(config.database_path, backups)),
    ]
    report = Report([], [])
    for name, step in steps:
        try:
            summary = step()
        except (WabscanError, sqlite3.Error, OSError) as exc:
            log.error("maintenance-failed step=%s error=%r", name, str(exc))
            report.failed.append(name)
        else:
            log.info("maintenance-done step=%s %s", name, summary)
            report.done.append(name)
    db.close()
    return report


def _retention(db: Database, config: Config) -> str:
    counts = purge(db, config.retention.scans_days, config.retention.audit_days)
    return " ".join(f"{k}={v}" for k, v in vars(counts).items())


def _refresh_feeds(db: Database) -> str:
    # Re-import each feed from the file it came from; unchanged files are
    # recognised by their hash and cost one read.
    refreshed = []
    for source in list_sources(db):
        path = Path(source["path"])
        if not path.exists():
            log.warning("feed-missing source=%s path=%s", source["name"], path)
            continue
        result = import_feed(db, path, source["name"], source["category"])
        if result.added or result.removed:
            refreshed.append(f"{source['name']}:+{result.added}/-{result.removed}")
    return f"changed={','.join(refreshed) or 'none'}"


def _optimize(db: Database) -> str:
    db.execute("PRAGMA optimize")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return "ok"


def _backup(database: Path, backups: Path) -> str:
    """An online backup (SQLite's backup API: consistent while units write)."""
    backups.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = backups / f"wabscan-{stamp}.sqlite3"
    source = sqlite3.connect(database)
    out = sqlite3.connect(target)
    try:
        source.backup(out)
    finally:
        out.close()
        source.close()
    old = sorted(backups.glob("wabscan-*.sqlite3"))[:-BACKUPS_KEPT]
    for path in old:
        path.unlink()
    return f"file={target} removed_old={len(old)}"
