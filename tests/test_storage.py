from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlite_utils import Database

from wabscan import storage
from wabscan.errors import InputError
from wabscan.storage import (
    MIGRATIONS,
    StorageError,
    active_overrides,
    add_override,
    append_audit,
    delete_override,
    format_time,
    get_verdict,
    list_audit,
    list_overrides,
    open_database,
    parse_time,
    purge,
    record_sighting,
    record_verdict,
    schema_version,
    update_override,
    verdict_record,
)
from wabscan.verdict import Level, Signal, Verdict

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NEXT = MIGRATIONS[-1][0] + 1  # a version no module uses yet


def make_verdict(
    canonical: str = "https://example.test/a", **changes: object
) -> Verdict:
    fields: dict[str, object] = {
        "url": canonical.upper(),
        "canonical": canonical,
        "level": Level.SUSPICIOUS,
        "score": 0.61,
        "reasons": ("Looks like a bank's login page.",),
        "signals": (
            Signal("lookalike.edit", "Close to a brand", {"brand": "Example", "d": 1}),
        ),
    }
    fields.update(changes)
    return Verdict(**fields)  # type: ignore[arg-type]


# -- opening and migrations ---------------------------------------------------


def test_open_creates_parent_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "wabscan.sqlite3"
    db = open_database(path)
    try:
        assert path.exists()
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        db.close()


def test_fresh_database_has_every_table(db: Database) -> None:
    assert set(db.table_names()) >= {
        "schema_migrations",
        "feed_sources",
        "feed_entries",
        "verdicts",
        "sightings",
        "overrides",
        "groups",
        "audit_log",
    }
    rows = db.execute("SELECT version, description FROM schema_migrations").fetchall()
    assert rows == [(v, d) for v, d, _ in MIGRATIONS]
    assert schema_version(db) == MIGRATIONS[-1][0]
    indexes = {
        r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")
    }
    assert {"feed_entries_kind_value", "feed_entries_host"} <= indexes


def test_reopening_applies_nothing_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite3"
    open_database(path).close()
    db = open_database(path)
    try:
        assert storage.migrate(db) == []
        assert db.execute("SELECT count(*) FROM schema_migrations").fetchone()[
            0
        ] == len(MIGRATIONS)
    finally:
        db.close()


def test_reopening_an_up_to_date_database_takes_no_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite3"
    open_database(path).close()
    db = Database(path)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    assert storage.migrate(db) == []
    db.close()
    assert not [s for s in statements if s.startswith("BEGIN")]


def test_units_starting_together_apply_each_migration_once(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite3"
    errors: list[BaseException] = []

    def start() -> None:
        try:
            open_database(path).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    db = open_database(path)
    try:
        rows = db.execute("SELECT version FROM schema_migrations").fetchall()
        assert rows == [(v,) for v, _, _ in MIGRATIONS]
    finally:
        db.close()


def test_every_unit_schema_is_registered_in_order() -> None:
    # All units share the file: a unit that knew only its own steps would
    # refuse a database another unit had migrated further.
    from wabscan.bridge.schema import MIGRATIONS as BRIDGE
    from wabscan.reporter.schema import MIGRATIONS as REPORTER

    versions = [v for v, _, _ in MIGRATIONS]
    assert versions == sorted(set(versions))
    assert {v for v, _, _ in (*REPORTER, *BRIDGE)} <= set(versions)


def test_database_newer_than_code_is_refused_with_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite3"
    db = open_database(path)
    db.execute(
        "INSERT INTO schema_migrations VALUES (?, 'from the future', ?)",
        (99, format_time(T0)),
    )
    db.close()

    with pytest.raises(StorageError) as caught:
        open_database(path)
    message = str(caught.value)
    assert str(path) in message
    assert "version 99" in message
    assert f"version {MIGRATIONS[-1][0]}" in message


def test_each_migration_runs_in_its_own_immediate_transaction(tmp_path: Path) -> None:
    statements: list[str] = []

    def second(conn: sqlite3.Connection) -> None:
        assert conn.in_transaction
        conn.execute("CREATE TABLE extra (x)")

    migrations = (*MIGRATIONS, (NEXT, "an extra table", second))
    db = Database(tmp_path / "w.sqlite3")
    db.conn.set_trace_callback(statements.append)
    assert storage.migrate(db, migrations) == [v for v, _, _ in migrations]
    db.close()

    begins = [s for s in statements if s.startswith("BEGIN")]
    commits = [s for s in statements if s == "COMMIT"]
    # One for schema_migrations itself, then one per migration.
    assert begins == ["BEGIN IMMEDIATE"] * (1 + len(migrations))
    assert len(commits) == 1 + len(migrations)


def test_failed_migration_is_rolled_back_and_named(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite3"
    open_database(path).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("boom")

    migrations = (*MIGRATIONS, (NEXT, "a broken step", broken))
    with pytest.raises(
        StorageError, match=rf"migration {NEXT} \(a broken step\) failed.*boom"
    ):
        open_database(path, migrations)

    db = open_database(path)
    try:
        assert "half_done" not in db.table_names()
        assert schema_version(db) == NEXT - 1
    finally:
        db.close()


def test_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="cannot open"):
        open_database(path)


def test_times_are_fixed_width_utc_text() -> None:
    naive = datetime(2024, 5, 1, 14, 0, 0, 123456)
    assert format_time(T0) == "2024-05-01T12:00:00.000Z"
    assert format_time(naive) == "2024-05-01T14:00:00.123Z"  # naive means UTC
    assert parse_time(format_time(T0)) == T0
    assert format_time(T0) < format_time(T0 + timedelta(milliseconds=1))


# -- verdicts and sightings ---------------------------------------------------


def test_verdict_round_trip(db: Database) -> None:
    verdict = make_verdict()
    record_verdict(db, verdict, "m1", scanned_at=T0)
    assert get_verdict(db, verdict.canonical) == verdict
    assert get_verdict(db, "https://other.test/") is None


def test_rescan_counts_and_keeps_first_seen(db: Database) -> None:
    first = make_verdict(level=Level.BENIGN, score=0.1)
    second = make_verdict(level=Level.MALICIOUS, score=0.97)
    record_verdict(db, first, "m1", scanned_at=T0)
    record_verdict(db, second, "m2", scanned_at=T0 + timedelta(hours=1))

    row = verdict_record(db, first.canonical)
    assert row is not None
    assert row["scan_count"] == 2
    assert row["first_seen_at"] == format_time(T0)
    assert row["scanned_at"] == format_time(T0 + timedelta(hours=1))
    assert row["model_version"] == "m2"
    assert get_verdict(db, first.canonical) == second


def test_replayed_or_older_scan_changes_nothing(db: Database) -> None:
    newer = make_verdict(level=Level.MALICIOUS)
    record_verdict(db, newer, "m1", scanned_at=T0 + timedelta(hours=1))
    before = db.conn.total_changes

    record_verdict(db, newer, "m1", scanned_at=T0 + timedelta(hours=1))  # replay
    record_verdict(db, make_verdict(level=Level.BENIGN), "m0", scanned_at=T0)  # late

    assert db.conn.total_changes == before
    row = verdict_record(db, newer.canonical)
    assert row is not None and row["scan_count"] == 1 and row["level"] == "malicious"


def test_sighting_is_idempotent(db: Database) -> None:
    args = ("120363@g.us", "MSG1", "https://example.test/a", "h:abc")
    assert record_sighting(db, *args, seen_at=T0) is True
    assert record_sighting(db, *args, seen_at=T0 + timedelta(minutes=5)) is False
    rows = db.execute("SELECT seen_at FROM sightings").fetchall()
    assert rows == [(format_time(T0),)]
    # The same link in another message is another sighting.
    assert record_sighting(db, "120363@g.us", "MSG2", args[2], "h:abc") is True


def test_sightings_have_no_column_for_message_text(db: Database) -> None:
    columns = {c.name for c in db["sightings"].columns}  # type: ignore[union-attr]
    assert columns == {"group_id", "message_id", "canonical", "sender_hash", "seen_at"}


# -- overrides ----------------------------------------------------------------


def test_override_crud(db: Database) -> None:
    added = add_override(
        db,
        scope="global",
        kind="domain",
        value=" Example.TEST. ",
        action="allow",
        created_by="cli:alice",
        reason="our own site",
        now=T0,
    )
    assert added.value == "example.test"
    assert added.created_at == format_time(T0) and added.expires_at is None

    changed = update_override(db, added.id, action="deny", reason="compromised")
    assert changed is not None
    assert (changed.id, changed.action, changed.reason) == (
        added.id,
        "deny",
        "compromised",
    )

    expiring = update_override(db, added.id, expires_at=T0 + timedelta(days=1))
    assert expiring is not None
    assert expiring.expires_at == format_time(T0 + timedelta(days=1))
    permanent = update_override(db, added.id, expires_at=None)
    assert permanent is not None and permanent.expires_at is None

    assert delete_override(db, added.id) is True
    assert delete_override(db, added.id) is False
    assert update_override(db, added.id, action="allow") is None
    assert list_overrides(db, include_expired=True) == []


def test_adding_the_same_override_again_keeps_its_id(db: Database) -> None:
    common = {"scope": "g1@g.us", "kind": "host", "value": "a.example.test"}
    first = add_override(db, **common, action="deny", created_by="x", now=T0)
    again = add_override(db, **common, action="allow", created_by="y", now=T0)
    assert again.id == first.id and again.action == "allow"
    assert len(list_overrides(db, include_expired=True)) == 1


def test_idn_override_value_is_stored_as_idna(db: Database) -> None:
    added = add_override(
        db,
        scope="global",
        kind="domain",
        value="bücher.example",
        action="deny",
        created_by="x",
    )
    assert added.value == "xn--bcher-kva.example"


def test_overrides_expire(db: Database) -> None:
    def add(value: str, expires: datetime | None, scope: str = "global") -> None:
        add_override(
            db,
            scope=scope,
            kind="host",
            value=value,
            action="deny",
            created_by="x",
            expires_at=expires,
            now=T0,
        )

    add("forever.test", None)
    add("past.test", T0 - timedelta(seconds=1))
    add("future.test", T0 + timedelta(hours=1))
    add("group.test", None, scope="g1@g.us")

    active = {o.value for o in active_overrides(db, T0)}
    assert active == {"forever.test", "future.test", "group.test"}
    later = {o.value for o in active_overrides(db, T0 + timedelta(hours=2))}
    assert later == {"forever.test", "group.test"}

    every = list_overrides(db, include_expired=True, now=T0)
    assert {o.value for o in every} == active | {"past.test"}
    assert [o.value for o in list_overrides(db, scope="g1@g.us", now=T0)] == [
        "group.test"
    ]
    assert all(o.active(T0) == (o.value != "past.test") for o in every)


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"kind": "path"}, "override kind"),
        ({"action": "block"}, "override action"),
        ({"value": "  "}, "override value"),
        ({"scope": ""}, "override scope"),
    ],
)
def test_invalid_override_is_an_input_error(
    db: Database, changes: dict[str, str], where: str
) -> None:
    arguments = {
        "scope": "global",
        "kind": "host",
        "value": "x.test",
        "action": "deny",
        "created_by": "x",
    }
    arguments.update(changes)
    with pytest.raises(InputError) as caught:
        add_override(db, **arguments)  # type: ignore[arg-type]
    assert caught.value.where == where


def test_override_write_is_committed(db: Database, tmp_path: Path) -> None:
    # RETURNING statements must not leave a transaction open behind them.
    add_override(
        db, scope="global", kind="host", value="x.test", action="deny", created_by="x"
    )
    assert not db.conn.in_transaction
    other = open_database(tmp_path / "state" / "wabscan.sqlite3")
    try:
        assert len(list_overrides(other)) == 1
    finally:
        other.close()


# -- audit and purge ----------------------------------------------------------


def test_audit_log(db: Database) -> None:
    first = append_audit(
        db, "cli:alice", "override.add", "7", {"value": "x.test"}, at=T0
    )
    second = append_audit(db, "api", "feed.import", "phishing-db")
    assert second > first
    newest = list_audit(db)
    assert [e["action"] for e in newest] == ["feed.import", "override.add"]
    assert newest[1]["detail"] == {"value": "x.test"}
    assert newest[1]["at"] == format_time(T0)


def test_purge_by_retention(db: Database) -> None:
    now = T0 + timedelta(days=400)
    old, recent = now - timedelta(days=91), now - timedelta(days=1)
    record_verdict(db, make_verdict("https://old.test/"), "m", scanned_at=old)
    record_verdict(db, make_verdict("https://new.test/"), "m", scanned_at=recent)
    record_sighting(db, "g", "1", "https://old.test/", "h", seen_at=old)
    record_sighting(db, "g", "2", "https://new.test/", "h", seen_at=recent)
    append_audit(db, "x", "a", "t", at=now - timedelta(days=366))
    append_audit(db, "x", "a", "t", at=now - timedelta(days=100))
    add_override(
        db,
        scope="global",
        kind="host",
        value="gone.test",
        action="deny",
        created_by="x",
        expires_at=now - timedelta(days=366),
    )
    add_override(
        db,
        scope="global",
        kind="host",
        value="kept.test",
        action="deny",
        created_by="x",
        expires_at=now - timedelta(days=1),
    )

    counts = purge(db, older_than_days_scans=90, older_than_days_audit=365, now=now)

    assert counts == storage.PurgeCounts(
        verdicts=1, sightings=1, audit_log=1, overrides=1
    )
    assert get_verdict(db, "https://old.test/") is None
    assert get_verdict(db, "https://new.test/") is not None
    assert vars(purge(db, 90, 365, now=now)) == {
        "verdicts": 0,
        "sightings": 0,
        "audit_log": 0,
        "overrides": 0,
    }
