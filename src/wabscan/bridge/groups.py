"""Groups as the bridge sees them: whether to scan, and the admin commands.

The ``groups`` table is storage's; the bridge adds a row the first time it
sees a group (enabled when ``bridge.scan_on_join`` is set) and changes it
when an admin says so. Every change is written with its audit entry and a
``bridge_commands`` row in one ``BEGIN IMMEDIATE`` transaction, so that a
command WhatsApp delivers twice (or the local transport replays after a
crash) changes and audits nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlite_utils import Database

from wabscan.bridge.commands import Command, format_duration
from wabscan.storage import append_audit, format_time, parse_time, transaction

JOIN_NOTICE: Final = (
    "👋 Hello, I'm wabscan, this group's link checker. I check the links "
    "posted here and warn when one looks dangerous. I keep the links, the "
    "message ids and a scrambled (keyed-hash) id of who sent each link, never "
    "the text of messages or phone numbers."
)
JOIN_NOTICE_OFF: Final = (
    "Checking is off until a group admin sends: !wabscan enable\n"
    "Admins: !wabscan help lists the commands."
)
JOIN_NOTICE_ON: Final = (
    "Checking is on. Admins: !wabscan help lists the commands "
    "(mute, quiet hours, disable)."
)


@dataclass(frozen=True, slots=True)
class GroupSettings:
    jid: str
    name: str
    enabled: bool
    muted_until: datetime | None
    quiet_start: str | None
    quiet_end: str | None


def get_group(db: Database, jid: str) -> GroupSettings | None:
    row = db.execute(
        "SELECT jid, name, enabled, muted_until, quiet_start, quiet_end"
        " FROM groups WHERE jid = ?",
        (jid,),
    ).fetchone()
    if row is None:
        return None
    jid, name, enabled, muted, start, end = row
    return GroupSettings(
        jid, name or "", bool(enabled), parse_time(muted) if muted else None, start, end
    )


def ensure_group(
    db: Database, jid: str, name: str, enabled: bool, now: datetime
) -> GroupSettings:
    """The group's settings, adding its row (``enabled`` as given) if new,
    and its name if it had none."""
    db.execute(
        "INSERT INTO groups (jid, name, enabled, joined_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (jid) DO UPDATE SET name = excluded.name"
        " WHERE excluded.name != '' AND groups.name = ''",
        (jid, name, int(enabled), format_time(now)),
    )
    settings = get_group(db, jid)
    assert settings is not None
    return settings


def record_join(
    db: Database, jid: str, name: str, key: str, enabled: bool, now: datetime
) -> bool:
    """Record that the bot joined ``jid``; False if this join (``key``) was
    recorded before, in which case nothing changes."""
    with transaction(db):
        if not _first_time(db, jid, f"join:{key}", "join", now):
            return False
        ensure_group(db, jid, name, enabled, now)
        append_audit(db, "whatsapp", "group.join", jid, {"enabled": enabled}, now)
    return True


def apply_command(
    db: Database,
    group: str,
    message_id: str,
    command: Command,
    actor: str,
    default_enabled: bool,
    now: datetime,
) -> str | None:
    """Carry out a settings command; the reply, or None if this message's
    command was carried out before.

    Args:
        group: the group's JID.
        message_id: the command message's id (the key of its idempotence).
        command: ``enable``, ``disable``, ``mute``, ``unmute`` or ``quiet``.
        actor: the admin's keyed hash, for the audit log.
        default_enabled: ``bridge.scan_on_join``, for a group seen first here.
        now: the moment of the command.
    """
    with transaction(db):
        if not _first_time(db, group, message_id, command.name, now):
            return None
        before = ensure_group(db, group, "", default_enabled, now)
        changes, detail, reply = _effect(command, before, now)
        if changes:
            sets = ", ".join(f"{column} = ?" for column in changes)
            db.execute(
                f"UPDATE groups SET {sets} WHERE jid = ?", [*changes.values(), group]
            )
        append_audit(db, f"admin:{actor}", f"group.{command.name}", group, detail, now)
    return reply


def status_text(
    settings: GroupSettings | None,
    default_enabled: bool,
    links_today: int,
    session: str,
    now: datetime,
) -> str:
    """The reply to ``!wabscan status``."""
    enabled = settings.enabled if settings else default_enabled
    lines = [f"wabscan: checking is {'on' if enabled else 'off'} in this group."]
    if settings and settings.muted_until and settings.muted_until > now:
        left = format_duration(settings.muted_until - now)
        lines.append(f"Muted for another {left}.")
    if settings and settings.quiet_start and settings.quiet_end:
        lines.append(f"Quiet hours: {settings.quiet_start}-{settings.quiet_end}.")
    lines.append(f"Links checked here in the last 24 hours: {links_today}.")
    lines.append(f"WhatsApp session: {session}.")
    return "\n".join(lines)


def links_checked(db: Database, group: str, since: datetime) -> int:
    row = db.execute(
        "SELECT count(*) FROM sightings WHERE group_id = ? AND seen_at >= ?",
        (group, format_time(since)),
    ).fetchone()
    return int(row[0]) if row else 0


def prune_commands(db: Database, before: datetime) -> int:
    """Forget carried-out commands older than ``before``: WhatsApp re-delivers
    within hours, not weeks."""
    cursor = db.execute(
        "DELETE FROM bridge_commands WHERE done_at < ?", (format_time(before),)
    )
    return int(cursor.rowcount)


def _first_time(
    db: Database, group: str, message_id: str, command: str, now: datetime
) -> bool:
    cursor = db.execute(
        "INSERT INTO bridge_commands (group_id, message_id, command, done_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (group, message_id, command, format_time(now)),
    )
    return cursor.rowcount == 1


def _effect(
    command: Command, before: GroupSettings, now: datetime
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The column changes, the audit detail and the reply of a command."""
    if command.name == "enable":
        reply = (
            "Checking was already on here."
            if before.enabled
            else "✅ Checking is on: I'll check the links posted here."
        )
        return {"enabled": 1}, {"was": before.enabled}, reply
    if command.name == "disable":
        reply = (
            "Checking was already off here."
            if not before.enabled
            else "Checking is off. An admin can turn it on again: !wabscan enable"
        )
        return {"enabled": 0}, {"was": before.enabled}, reply
    if command.name == "mute":
        duration = command.duration or timedelta(hours=1)
        until = now + duration
        reply = (
            f"🔕 Muted for {format_duration(duration)}. Warnings about "
            "dangerous links wait until the mute ends; !wabscan unmute ends it."
        )
        detail = {"seconds": int(duration.total_seconds())}
        return {"muted_until": format_time(until)}, detail, reply
    if command.name == "unmute":
        return {"muted_until": None}, {}, "🔔 Unmuted."
    if command.name == "quiet":
        if command.quiet is None:
            off: dict[str, Any] = {"quiet_start": None, "quiet_end": None}
            return off, {"quiet": None}, "Quiet hours are off."
        start, end = command.quiet
        reply = f"🌙 Quiet hours: {start}-{end}. Warnings wait until they end."
        return {"quiet_start": start, "quiet_end": end}, {"quiet": [start, end]}, reply
    raise ValueError(f"not a settings command: {command.name}")
