"""Group settings as the reporter reads and the control API changes them.

The ``groups`` table belongs to storage (the bridge adds a row when the bot
joins a group). Quiet hours are stored as ``HH:MM`` text in the group's time
zone, which is kept in the ``settings`` JSON as ``timezone`` (an IANA name);
without one the appliance's own zone applies.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, time, tzinfo
from functools import cache
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlite_utils import Database

from wabscan.reporter.policy import GroupState, QuietHours
from wabscan.storage import format_time, parse_time

_CLOCK: Final = re.compile(r"^([01]?\d|2[0-3])(?::([0-5]\d))?$")
_ZONE: Final = re.compile(r"^[A-Za-z0-9_+-]{1,32}(?:/[A-Za-z0-9_+-]{1,32}){0,2}$")
_COLUMNS: Final = (
    "jid, name, enabled, announce_benign, muted_until, quiet_start, quiet_end,"
    " joined_at, settings"
)


def parse_clock(text: str) -> time:
    """A time of day from ``HH:MM`` or ``HH`` (24-hour clock).

    Raises:
        ValueError: the text is not such a time.
    """
    match = _CLOCK.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a time of day like 23:00")
    return time(int(match.group(1)), int(match.group(2) or 0))


def zone_named(name: str) -> tzinfo:
    """The IANA time zone ``name``.

    Raises:
        ValueError: no such zone.
    """
    if not _ZONE.match(name):
        raise ValueError(f"{name!r} is not a time zone name like Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"{name!r} is not a known time zone") from exc


@cache
def local_zone() -> tzinfo:
    """The appliance's time zone: ``$TZ``, else /etc/localtime, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return zone_named(name)
        except ValueError:
            pass
    try:
        with open("/etc/localtime", "rb") as data:
            return ZoneInfo.from_file(data, key="localtime")
    except (OSError, ValueError):
        return UTC


def group_record(db: Database, jid: str) -> dict[str, Any] | None:
    """One group's settings as the API shows them, or None if unknown."""
    row = db.execute(f"SELECT {_COLUMNS} FROM groups WHERE jid = ?", (jid,)).fetchone()
    return _record(row) if row else None


def list_groups(db: Database) -> list[dict[str, Any]]:
    """Every group the bot is in, by JID."""
    rows = db.execute(f"SELECT {_COLUMNS} FROM groups ORDER BY jid").fetchall()
    return [_record(row) for row in rows]


def group_state(
    record: dict[str, Any] | None, announce_benign: bool, now: datetime
) -> GroupState:
    """The policy's view of a group.

    A group with no row is treated as enabled with default settings: the
    bridge scans only groups where scanning is on, so a verdict for a group
    it has not recorded (a test, the demo) is still answered.
    """
    if record is None:
        return GroupState(announce_benign=announce_benign)
    muted = record["muted_until"]
    muted_until = parse_time(muted) if muted else None
    quiet = None
    if record["quiet_start"] and record["quiet_end"]:
        zone = _zone_or_local(record["timezone"])
        try:
            quiet = QuietHours(
                parse_clock(record["quiet_start"]),
                parse_clock(record["quiet_end"]),
                zone,
            )
        except ValueError:
            quiet = None  # written by hand in a bad form: ignored, not fatal
    return GroupState(
        enabled=record["enabled"],
        announce_benign=announce_benign or record["announce_benign"],
        muted_until=muted_until if muted_until and muted_until > now else None,
        quiet=quiet,
    )


def set_muted_until(db: Database, jid: str, until: datetime | None) -> bool:
    """Mute a group until ``until`` (None unmutes); False if it is unknown."""
    cursor = db.execute(
        "UPDATE groups SET muted_until = ? WHERE jid = ?",
        (format_time(until) if until else None, jid),
    )
    return cursor.rowcount == 1


def update_group(db: Database, jid: str, changes: dict[str, Any]) -> bool:
    """Change some of ``enabled``, ``announce_benign``, ``quiet_start``,
    ``quiet_end`` (``HH:MM`` or None) and ``timezone`` (None: the appliance's).

    The caller validates the values. Returns False if the group is unknown.
    """
    row = db.execute("SELECT settings FROM groups WHERE jid = ?", (jid,)).fetchone()
    if row is None:
        return False
    sets: list[str] = []
    params: list[Any] = []
    for column in ("enabled", "announce_benign", "quiet_start", "quiet_end"):
        if column in changes:
            sets.append(f"{column} = ?")
            value = changes[column]
            params.append(int(value) if isinstance(value, bool) else value)
    if "timezone" in changes:
        settings = _settings(row[0])
        if changes["timezone"] is None:
            settings.pop("timezone", None)
        else:
            settings["timezone"] = changes["timezone"]
        sets.append("settings = ?")
        params.append(json.dumps(settings, sort_keys=True))
    if sets:
        db.execute(f"UPDATE groups SET {', '.join(sets)} WHERE jid = ?", [*params, jid])
    return True


def _record(row: tuple[Any, ...]) -> dict[str, Any]:
    jid, name, enabled, benign, muted, start, end, joined, settings = row
    return {
        "jid": jid,
        "name": name,
        "enabled": bool(enabled),
        "announce_benign": bool(benign),
        "muted_until": muted,
        "quiet_start": start,
        "quiet_end": end,
        "timezone": _settings(settings).get("timezone"),
        "joined_at": joined,
    }


def _settings(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _zone_or_local(name: Any) -> tzinfo:
    if isinstance(name, str) and name:
        try:
            return zone_named(name)
        except ValueError:
            pass
    return local_zone()
