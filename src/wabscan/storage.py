"""The durable state: one SQLite file shared by every unit and the CLI.

What must survive a restart lives here (verdicts, the messages that carried
each link, overrides, groups, feed snapshots, the audit log); what may be lost
lives in Redis. The functions below take and return plain values so that the
command line, the services and the tests go through one code path, and every
write is idempotent on its natural key, because a stream consumer that crashes
before its acknowledgement does the same write again.

The schema is upgraded by numbered migrations, each applied in its own
``BEGIN IMMEDIATE`` transaction and recorded in ``schema_migrations``.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import idna
from publicsuffixlist import PublicSuffixList
from sqlite_utils import Database

from wabscan.errors import InputError, WabscanError
from wabscan.verdict import Level, Signal, Verdict

log = logging.getLogger(__name__)


class StorageError(WabscanError):
    """The database cannot be opened or upgraded by this version of wabscan."""


# -- time ------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """Render a moment as the ISO-8601 UTC text stored in every time column.

    The width is fixed (milliseconds, ``Z``) so that text order is time order
    and ``WHERE at < ?`` works on the column without conversion.

    Args:
        moment: an aware datetime; a naive one is taken to be UTC.

    Returns:
        e.g. ``2024-05-01T12:00:00.000Z``.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    """Read a time column back as an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- opening and migrations ------------------------------------------------

Migration = tuple[int, str, Callable[[sqlite3.Connection], None]]


def _create_initial_schema(conn: sqlite3.Connection) -> None:
    # feed_entries repeats its source's category so that a lookup needs no
    # join; import_feed keeps the two in step. WITHOUT ROWID because the
    # primary key is the row: one B-tree instead of a table plus an index.
    statements = [
        """
        CREATE TABLE feed_sources (
            name TEXT PRIMARY KEY,
            category TEXT NOT NULL,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            entries INTEGER NOT NULL,
            skipped INTEGER NOT NULL DEFAULT 0,
            imported_at TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE feed_entries (
            source TEXT NOT NULL
                REFERENCES feed_sources(name) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('domain', 'url', 'ip')),
            value TEXT NOT NULL,
            host TEXT NOT NULL,
            category TEXT NOT NULL,
            added_at TEXT NOT NULL,
            PRIMARY KEY (source, kind, value)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX feed_entries_kind_value ON feed_entries(kind, value)",
        # Only URL entries need finding by host (a domain or an address is
        # its own host, found through kind_value). Partial, the index costs
        # 0.2 MB instead of 12 MB for a 141k-domain feed (36 MB -> 24.5 MB).
        "CREATE INDEX feed_entries_host ON feed_entries(host) WHERE kind = 'url'",
        """
        CREATE TABLE verdicts (
            canonical TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            level TEXT NOT NULL
                CHECK (level IN ('benign', 'suspicious', 'malicious')),
            score REAL NOT NULL,
            reasons TEXT NOT NULL,
            signals TEXT NOT NULL,
            model_version TEXT NOT NULL,
            scanned_at TEXT NOT NULL,
            first_seen_at TEXT NOT NULL,
            scan_count INTEGER NOT NULL DEFAULT 1
        )
        """,
        "CREATE INDEX verdicts_scanned_at ON verdicts(scanned_at)",
        """
        CREATE TABLE sightings (
            group_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            canonical TEXT NOT NULL,
            sender_hash TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            PRIMARY KEY (group_id, message_id, canonical)
        )
        """,
        "CREATE INDEX sightings_canonical ON sightings(canonical)",
        "CREATE INDEX sightings_seen_at ON sightings(seen_at)",
        """
        CREATE TABLE overrides (
            id INTEGER PRIMARY KEY,
            scope TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('url', 'host', 'domain')),
            value TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('allow', 'deny')),
            reason TEXT NOT NULL DEFAULT '',
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            UNIQUE (scope, kind, value)
        )
        """,
        """
        CREATE TABLE groups (
            jid TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            enabled INTEGER NOT NULL DEFAULT 0,
            announce_benign INTEGER NOT NULL DEFAULT 0,
            muted_until TEXT,
            quiet_start TEXT,
            quiet_end TEXT,
            joined_at TEXT NOT NULL,
            settings TEXT NOT NULL DEFAULT '{}'
        )
        """,
        """
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        )
        """,
        "CREATE INDEX audit_log_at ON audit_log(at)",
    ]
    for statement in statements:
        conn.execute(statement)


# The shared tables. Each unit's own tables are further numbered steps kept
# in its package (reporter/schema.py: 2, bridge/schema.py: 3).
CORE_MIGRATIONS: Final[tuple[Migration, ...]] = (
    (
        1,
        "feeds, verdicts, sightings, overrides, groups, audit log",
        _create_initial_schema,
    ),
)

# Every step of every unit, in version order: all units share one file, so
# each must know the whole schema, or the first unit to start after another
# has migrated further would refuse the database as "newer than the code".
# Built on first use (see __getattr__ below) because the units' schema
# modules import Migration from this one.
MIGRATIONS: tuple[Migration, ...]


def _all_migrations() -> tuple[Migration, ...]:
    # Imported here, not at the top: they import this module. They must stay
    # light (sqlite3 only): every unit and the CLI load them.
    from wabscan.bridge.schema import MIGRATIONS as bridge
    from wabscan.reporter.schema import MIGRATIONS as reporter

    steps = sorted((*CORE_MIGRATIONS, *reporter, *bridge), key=lambda s: s[0])
    versions = [step[0] for step in steps]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two schema migrations share a version: {versions}")
    return tuple(steps)


def __getattr__(name: str) -> tuple[Migration, ...]:
    # PEP 562: computes MIGRATIONS the first time it is read.
    if name == "MIGRATIONS":
        steps = _all_migrations()
        globals()["MIGRATIONS"] = steps
        return steps
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _default_migrations() -> tuple[Migration, ...]:
    try:
        return MIGRATIONS
    except NameError:  # a module's own globals do not go through __getattr__
        return __getattr__("MIGRATIONS")


def open_database(
    path: str | Path,
    migrations: tuple[Migration, ...] | None = None,
    *,
    any_thread: bool = False,
) -> Database:
    """Open (creating if needed) the database file and bring its schema up to date.

    Args:
        path: the SQLite file; its parent directory is created.
        migrations: the upgrade steps; by default :data:`MIGRATIONS`, every
            unit's. Tests pass their own.

    Returns:
        A sqlite-utils Database in WAL mode, ``synchronous=NORMAL``,
        ``busy_timeout`` 5000 ms and foreign keys on.

    Raises:
        StorageError: the file is not a database, or its schema is newer than
            this code knows, or a migration failed (it was rolled back).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # any_thread: the units run every SQLite call in a trio worker thread, so
    # the connection must not be bound to the thread that opened it; they
    # serialise its use themselves (wabscan.serial.SerialDatabase).
    try:
        conn = sqlite3.connect(str(path), check_same_thread=not any_thread)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open the database: {exc}") from None
    db = Database(conn)
    try:
        # WAL lets the three units read while one writes; with the 5 s busy
        # timeout two writer processes measured 0 errors at about 1,000
        # commits/s (FIELD-NOTES). synchronous=NORMAL makes single-row commits
        # 6-8x faster and only risks the last commit before a power cut.
        db.execute("PRAGMA busy_timeout = 5000")
        db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        migrate(db, migrations, where=str(path))
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StorageError(f"{path}: cannot open the database: {exc}") from None
    except BaseException:
        db.close()
        raise
    return db


def schema_version(db: Database) -> int:
    """The highest migration applied, 0 for a new database."""
    if "schema_migrations" not in db.table_names():
        return 0
    row = db.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(
    db: Database, migrations: tuple[Migration, ...] | None = None, where: str = ""
) -> list[int]:
    """Apply the migrations the database has not seen yet, one transaction each.

    Each step re-reads the version inside its ``BEGIN IMMEDIATE`` transaction,
    so two units starting at once against a new file cannot both apply it.

    Args:
        db: an open database.
        migrations: ``(version, description, function)`` in ascending order;
            by default :data:`MIGRATIONS`.
        where: the file name used in error messages.

    Returns:
        The versions applied by this call (empty when already up to date).

    Raises:
        StorageError: the database is newer than the newest migration, or a
            migration raised (its changes were rolled back).
    """
    if migrations is None:
        migrations = _default_migrations()
    where = where or _filename(db)
    latest = migrations[-1][0] if migrations else 0
    current = schema_version(db)
    _refuse_newer(current, latest, where)
    if current == latest:
        return []  # the usual case: no write lock taken at all
    with _immediate(db):
        db.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY,"
            " description TEXT NOT NULL,"
            " applied_at TEXT NOT NULL)"
        )
    applied: list[int] = []
    for version, description, upgrade in migrations:
        with _immediate(db):
            # Read again under the write lock: another unit may have applied
            # this step since the loop started.
            if schema_version(db) >= version:
                continue
            log.info("migrate db=%s version=%d step=%r", where, version, description)
            try:
                upgrade(db.conn)
            except Exception as exc:
                raise StorageError(
                    f"{where}: migration {version} ({description}) failed and was "
                    f"rolled back: {exc}"
                ) from exc
            db.conn.execute(
                "INSERT INTO schema_migrations (version, description, applied_at)"
                " VALUES (?, ?, ?)",
                (version, description, format_time(utc_now())),
            )
            applied.append(version)
    _refuse_newer(schema_version(db), latest, where)
    return applied


def _refuse_newer(current: int, latest: int, where: str) -> None:
    if current > latest:
        raise StorageError(
            f"{where}: database schema is version {current} but this wabscan "
            f"knows only up to version {latest}; upgrade wabscan or restore a "
            "backup made with this version"
        )


def _filename(db: Database) -> str:
    row = db.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row and row[2] else "<memory>"


@contextmanager
def _immediate(db: Database) -> Iterator[Database]:
    # A read-then-write transaction opened with plain BEGIN fails at once with
    # "database is locked" when another process committed in between, whatever
    # the busy timeout (FIELD-NOTES); BEGIN IMMEDIATE takes the write lock
    # first and waits for it. Inside, sqlite-utils' execute() does not commit.
    if db.conn.in_transaction:
        # Nested use joins the caller's transaction.
        yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    else:
        db.conn.execute("COMMIT")


# Public name for callers that need one read-modify-write transaction across
# several of the functions below.
transaction = _immediate


# -- verdicts and sightings -------------------------------------------------


def record_verdict(
    db: Database,
    verdict: Verdict,
    model_version: str,
    scanned_at: datetime | None = None,
) -> None:
    """Store the latest verdict for a canonical URL.

    Idempotent on ``(canonical, scanned_at)``: replaying the same scan (a job
    claimed again after a crash) changes nothing, and an older scan arriving
    after a newer one does not overwrite it. A new scan replaces the verdict,
    adds one to ``scan_count`` and keeps ``first_seen_at``.

    Args:
        db: an open database.
        verdict: the scanner's verdict.
        model_version: the version of the scoring that produced it.
        scanned_at: when the scan ran; pass the job's time so that a replay
            is recognised. Defaults to now.
    """
    at = format_time(scanned_at or utc_now())
    db.execute(
        """
        INSERT INTO verdicts (canonical, url, level, score, reasons, signals,
            model_version, scanned_at, first_seen_at, scan_count)
        VALUES (:canonical, :url, :level, :score, :reasons, :signals,
            :model_version, :at, :at, 1)
        ON CONFLICT (canonical) DO UPDATE SET
            url = excluded.url,
            level = excluded.level,
            score = excluded.score,
            reasons = excluded.reasons,
            signals = excluded.signals,
            model_version = excluded.model_version,
            scanned_at = excluded.scanned_at,
            scan_count = verdicts.scan_count + 1
        WHERE excluded.scanned_at > verdicts.scanned_at
        """,
        {
            "canonical": verdict.canonical,
            "url": verdict.url,
            "level": verdict.level.value,
            "score": verdict.score,
            "reasons": json.dumps(list(verdict.reasons), ensure_ascii=False),
            "signals": json.dumps(
                [
                    {"code": s.code, "reason": s.reason, "detail": s.detail}
                    for s in verdict.signals
                ],
                ensure_ascii=False,
                sort_keys=True,
            ),
            "model_version": model_version,
            "at": at,
        },
    )


def get_verdict(db: Database, canonical: str) -> Verdict | None:
    """The stored verdict for a canonical URL, or None if it was never scanned."""
    row = db.execute(
        "SELECT url, canonical, level, score, reasons, signals FROM verdicts"
        " WHERE canonical = ?",
        (canonical,),
    ).fetchone()
    if row is None:
        return None
    url, canonical, level, score, reasons, signals = row
    return Verdict(
        url=url,
        canonical=canonical,
        level=Level(level),
        score=float(score),
        reasons=tuple(json.loads(reasons)),
        signals=tuple(
            Signal(s["code"], s["reason"], dict(s.get("detail") or {}))
            for s in json.loads(signals)
        ),
    )


def verdict_record(db: Database, canonical: str) -> dict[str, Any] | None:
    """The verdict row as stored, with its bookkeeping columns, for the CLI."""
    rows = list(db.query("SELECT * FROM verdicts WHERE canonical = ?", (canonical,)))
    return rows[0] if rows else None


def record_sighting(
    db: Database,
    group_id: str,
    message_id: str,
    canonical: str,
    sender_hash: str,
    seen_at: datetime | None = None,
) -> bool:
    """Remember that a message in a group carried a link (never the text).

    Args:
        group_id: the group's JID.
        message_id: WhatsApp's id of the message.
        canonical: the canonical URL of the link.
        sender_hash: the keyed hash of the sender id, never the id itself.
        seen_at: when the message was sent; defaults to now.

    Returns:
        True if this sighting is new, False if it was already recorded.
    """
    cursor = db.execute(
        "INSERT OR IGNORE INTO sightings"
        " (group_id, message_id, canonical, sender_hash, seen_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            group_id,
            message_id,
            canonical,
            sender_hash,
            format_time(seen_at or utc_now()),
        ),
    )
    return cursor.rowcount == 1


# -- overrides --------------------------------------------------------------

OVERRIDE_KINDS: Final = ("url", "host", "domain")
OVERRIDE_ACTIONS: Final = ("allow", "deny")
GLOBAL_SCOPE: Final = "global"


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's decision that beats every other signal.

    Attributes:
        scope: ``global`` or the JID of the one group it applies to.
        kind: ``url`` (one canonical URL), ``host`` (exactly that host) or
            ``domain`` (that host and every subdomain).
        value: the canonical URL, or the lower-case ASCII (IDNA) host.
        action: ``allow`` or ``deny``.
        created_at: ISO-8601 UTC text, as stored (see :func:`format_time`).
        expires_at: the same, or None for an override that never expires.
    """

    id: int
    scope: str
    kind: str
    value: str
    action: str
    reason: str
    created_by: str
    created_at: str
    expires_at: str | None

    def active(self, now: datetime) -> bool:
        """Whether the override is in force at ``now``."""
        return self.expires_at is None or self.expires_at > format_time(now)


_OVERRIDE_COLUMNS = (
    "id, scope, kind, value, action, reason, created_by, created_at, expires_at"
)


def _override(row: tuple[Any, ...]) -> Override:
    return Override(
        id=row[0],
        scope=row[1],
        kind=row[2],
        value=row[3],
        action=row[4],
        reason=row[5],
        created_by=row[6],
        created_at=row[7],
        expires_at=row[8],
    )


def normalise_override_value(kind: str, value: str) -> str:
    """Bring an override's value to the form the scanner compares with.

    Hosts and domains become lower-case IDNA without a trailing dot; URLs
    are kept as given and must already be canonical.

    Raises:
        InputError: the kind is unknown or the value is empty or not a host.
    """
    if kind not in OVERRIDE_KINDS:
        raise InputError("override kind", f"{kind!r} is not one of url, host, domain")
    value = value.strip()
    if kind != "url":
        value = value.rstrip(".").lower()
        try:
            value = idna.encode(value, uts46=True).decode("ascii") if value else ""
        except idna.IDNAError as exc:
            raise InputError(
                "override value", f"{value!r} is not a host: {exc}"
            ) from None
    if not value:
        raise InputError("override value", "must not be empty")
    if kind != "url" and _public_suffixes().is_public(value):
        # "com" or "github.io" belongs to everyone: an override there would
        # silence (or flag) every site under it.
        raise InputError(
            "override value", f"{value!r} is a public suffix, not a site's domain"
        )
    return value


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def add_override(
    db: Database,
    *,
    scope: str,
    kind: str,
    value: str,
    action: str,
    created_by: str,
    reason: str = "",
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> Override:
    """Create the override for ``(scope, kind, value)``, or replace its decision.

    Idempotent on ``(scope, kind, value)``: adding the same override again
    keeps its id and takes the new action, reason, author and expiry.

    Args:
        scope: ``global`` or a group JID.
        kind: ``url``, ``host`` or ``domain``.
        value: see :func:`normalise_override_value`.
        action: ``allow`` or ``deny``.
        created_by: who asked for it (an admin's hashed id or ``cli:<user>``).
        reason: shown in replies and in ``wabscan overrides list``.
        expires_at: None for never.
        now: the creation time; defaults to now.

    Returns:
        The override as stored.

    Raises:
        InputError: an unknown kind or action, or an empty scope or value.
    """
    if action not in OVERRIDE_ACTIONS:
        raise InputError("override action", f"{action!r} is not one of allow, deny")
    if not scope.strip():
        raise InputError("override scope", "must be 'global' or a group id")
    value = normalise_override_value(kind, value)
    rows = _write_returning(
        db,
        f"""
        INSERT INTO overrides
            (scope, kind, value, action, reason, created_by, created_at, expires_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (scope, kind, value) DO UPDATE SET
            action = excluded.action,
            reason = excluded.reason,
            created_by = excluded.created_by,
            created_at = excluded.created_at,
            expires_at = excluded.expires_at
        RETURNING {_OVERRIDE_COLUMNS}
        """,
        (
            scope.strip(),
            kind,
            value,
            action,
            reason,
            created_by,
            format_time(now or utc_now()),
            format_time(expires_at) if expires_at else None,
        ),
    )
    return _override(rows[0])


def _write_returning(
    db: Database, sql: str, params: tuple[Any, ...] | list[Any]
) -> list[tuple[Any, ...]]:
    # sqlite-utils' execute() commits a write only when it returns no rows, so
    # a RETURNING statement would leave its implicit transaction open: run it
    # in an explicit one and read every row before the commit.
    with _immediate(db):
        return db.conn.execute(sql, params).fetchall()


def get_override(db: Database, override_id: int) -> Override | None:
    row = db.execute(
        f"SELECT {_OVERRIDE_COLUMNS} FROM overrides WHERE id = ?", (override_id,)
    ).fetchone()
    return _override(row) if row else None


def list_overrides(
    db: Database,
    include_expired: bool = False,
    scope: str | None = None,
    now: datetime | None = None,
) -> list[Override]:
    """Overrides ordered by id, optionally with expired ones and for one scope.

    Args:
        include_expired: also return overrides whose expiry has passed.
        scope: only this scope (``global`` or a group JID); None for all.
        now: the moment expiry is judged at; defaults to now.
    """
    clauses: list[str] = []
    params: list[Any] = []
    if not include_expired:
        clauses.append("(expires_at IS NULL OR expires_at > ?)")
        params.append(format_time(now or utc_now()))
    if scope is not None:
        clauses.append("scope = ?")
        params.append(scope)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = db.execute(
        f"SELECT {_OVERRIDE_COLUMNS} FROM overrides{where} ORDER BY id", params
    ).fetchall()
    return [_override(row) for row in rows]


def active_overrides(db: Database, now: datetime) -> list[Override]:
    """Every override in force at ``now``, all scopes, for the scanner."""
    return list_overrides(db, include_expired=False, scope=None, now=now)


class _Unset:
    pass


_UNSET: Final = _Unset()


def update_override(
    db: Database,
    override_id: int,
    *,
    action: str | None = None,
    reason: str | None = None,
    expires_at: datetime | _Unset | None = _UNSET,
) -> Override | None:
    """Change the decision, reason or expiry of an override.

    Args:
        override_id: the override's id.
        action: new action, or None to keep it.
        reason: new reason, or None to keep it.
        expires_at: new expiry; None makes it permanent; leave out to keep it.

    Returns:
        The override after the change, or None if there is no such id.

    Raises:
        InputError: an unknown action.
    """
    sets: list[str] = []
    params: list[Any] = []
    if action is not None:
        if action not in OVERRIDE_ACTIONS:
            raise InputError("override action", f"{action!r} is not one of allow, deny")
        sets.append("action = ?")
        params.append(action)
    if reason is not None:
        sets.append("reason = ?")
        params.append(reason)
    if not isinstance(expires_at, _Unset):
        sets.append("expires_at = ?")
        params.append(format_time(expires_at) if expires_at else None)
    if not sets:
        return get_override(db, override_id)
    rows = _write_returning(
        db,
        f"UPDATE overrides SET {', '.join(sets)} WHERE id = ?"
        f" RETURNING {_OVERRIDE_COLUMNS}",
        [*params, override_id],
    )
    return _override(rows[0]) if rows else None


def delete_override(db: Database, override_id: int) -> bool:
    """Delete an override; True if it existed (deleting twice is harmless)."""
    return (
        db.execute("DELETE FROM overrides WHERE id = ?", (override_id,)).rowcount == 1
    )


# -- audit log and retention -----------------------------------------------


def append_audit(
    db: Database,
    actor: str,
    action: str,
    target: str,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> int:
    """Record an admin action; returns the entry's id.

    The audit log is a journal of events, so it has no natural key: the
    caller appends in the same transaction as the change it records (see
    :data:`transaction`) so that a replay cannot log an action twice.

    Args:
        actor: who did it (``cli:<user>``, ``api``, or a hashed admin id).
        action: a stable verb, e.g. ``override.add``, ``feed.import``.
        target: what it was done to (an override id, a feed name, a JID).
        detail: JSON-serialisable facts; never message text or phone numbers.
        at: when; defaults to now.
    """
    cursor = db.execute(
        "INSERT INTO audit_log (at, actor, action, target, detail)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            format_time(at or utc_now()),
            actor,
            action,
            target,
            json.dumps(dict(detail or {}), ensure_ascii=False, sort_keys=True),
        ),
    )
    return int(cursor.lastrowid or 0)


def list_audit(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    """The newest audit entries first, with ``detail`` decoded."""
    rows = list(db.query("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", (limit,)))
    for row in rows:
        row["detail"] = json.loads(row["detail"])
    return rows


@dataclass(frozen=True)  # no slots: vars() gives the counts by table
class PurgeCounts:
    """Rows deleted by :func:`purge`, by table."""

    verdicts: int
    sightings: int
    audit_log: int
    overrides: int


def purge(
    db: Database,
    older_than_days_scans: int,
    older_than_days_audit: int,
    now: datetime | None = None,
) -> PurgeCounts:
    """Delete what the retention settings no longer allow to keep.

    Verdicts not rescanned and sightings not seen within the scan window go;
    audit entries older than the audit window go, and so do overrides that
    expired before it (the audit log still records who made them).

    Args:
        older_than_days_scans: ``retention.scans_days``.
        older_than_days_audit: ``retention.audit_days``.
        now: the reference moment; defaults to now.

    Returns:
        The number of rows deleted from each table.
    """
    now = now or utc_now()
    scans_cutoff = format_time(now - timedelta(days=older_than_days_scans))
    audit_cutoff = format_time(now - timedelta(days=older_than_days_audit))
    with _immediate(db):
        verdicts = db.execute(
            "DELETE FROM verdicts WHERE scanned_at < ?", (scans_cutoff,)
        ).rowcount
        sightings = db.execute(
            "DELETE FROM sightings WHERE seen_at < ?", (scans_cutoff,)
        ).rowcount
        audit = db.execute(
            "DELETE FROM audit_log WHERE at < ?", (audit_cutoff,)
        ).rowcount
        overrides = db.execute(
            "DELETE FROM overrides WHERE expires_at IS NOT NULL AND expires_at < ?",
            (audit_cutoff,),
        ).rowcount
    return PurgeCounts(verdicts, sightings, audit, overrides)
