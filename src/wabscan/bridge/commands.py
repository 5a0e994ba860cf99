"""Admin commands typed in a group: ``!wabscan <command> [argument]``.

:func:`parse_command` is pure and total: any text gives a :class:`Command`,
a :class:`CommandError` (whose message is the reply that explains the right
usage), or None when the text is not addressed to wabscan at all. It never
raises, because it runs on every message of every group.

A reply never repeats what the user typed: an argument could be a link, and
WhatsApp would make it clickable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from wabscan.links import extract_links

PREFIX: Final = "!wabscan"
NAMES: Final = (
    "help",
    "status",
    "check",
    "mute",
    "unmute",
    "quiet",
    "enable",
    "disable",
)
# Commands that change a group's settings: for group admins only.
SETTINGS: Final = frozenset({"mute", "unmute", "quiet", "enable", "disable"})

DEFAULT_MUTE: Final = timedelta(hours=1)
MAX_MUTE: Final = timedelta(days=30)
MIN_MUTE: Final = timedelta(minutes=1)
_MAX_ARGUMENT: Final = 2048  # a check's URL, as links.max_url_length

_DURATION_UNITS: Final = {
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_SIMPLE_DURATION = re.compile(r"([0-9]{1,5})\s?([a-z]{1,7})", re.ASCII)
_COMPOUND_DURATION = re.compile(
    r"(?:([0-9]{1,3})d)?(?:([0-9]{1,4})h)?(?:([0-9]{1,5})m)?", re.ASCII
)
_HOURS = re.compile(
    r"([0-9]{1,2})(?::([0-9]{2}))?\s?-\s?([0-9]{1,2})(?::([0-9]{2}))?", re.ASCII
)

HELP_TEXT: Final = (
    "wabscan checks the links posted here and warns about dangerous ones.\n"
    "Commands (settings: group admins only):\n"
    "• !wabscan status\n"
    "• !wabscan check <link>\n"
    "• !wabscan mute [30m | 2h | 1d] (default 1h)\n"
    "• !wabscan unmute\n"
    "• !wabscan quiet 22-07 (or: quiet off)\n"
    "• !wabscan enable / disable"
)


@dataclass(frozen=True, slots=True)
class Command:
    """A well-formed command.

    Attributes:
        name: one of :data:`NAMES`.
        url: for ``check``: the link to check, as ``extract_links`` read it.
        duration: for ``mute``: how long.
        quiet: for ``quiet``: ``(start, end)`` as ``HH:MM``, or None to turn
            quiet hours off.
    """

    name: str
    url: str = ""
    duration: timedelta | None = None
    quiet: tuple[str, str] | None = None

    @property
    def changes_settings(self) -> bool:
        return self.name in SETTINGS


@dataclass(frozen=True, slots=True)
class CommandError:
    """A command wabscan cannot carry out; ``message`` is the reply."""

    message: str


def parse_command(text: str) -> Command | CommandError | None:
    """Read an admin command.

    Args:
        text: a message's whole text.

    Returns:
        None when the text does not start with ``!wabscan``; otherwise the
        command or the error to reply with.

    Example:
        >>> parse_command("!wabscan mute 2h").duration
        datetime.timedelta(seconds=7200)
    """
    words = text.strip().split(maxsplit=2)
    if not words or words[0].casefold() != PREFIX:
        return None
    if len(words) == 1:
        return Command("help")

    name = words[1].casefold()
    argument = words[2].strip() if len(words) > 2 else ""
    if name not in NAMES:
        return CommandError(f"I don't know that command.\n{HELP_TEXT}")
    if name == "help":
        return Command("help")
    if name == "check":
        return _check(argument)
    if name == "mute":
        return _mute(argument)
    if name == "quiet":
        return _quiet(argument)
    if argument:
        return CommandError(f"`!wabscan {name}` takes nothing after it.")
    return Command(name)


def parse_duration(text: str) -> timedelta | None:
    """``30m``, ``2h``, ``1d``, ``90 minutes``, ``1h30m``; None if unreadable."""
    text = text.strip().casefold()
    if not text:
        return None
    simple = _SIMPLE_DURATION.fullmatch(text)
    if simple is not None:
        unit = _DURATION_UNITS.get(simple.group(2))
        if unit is None:
            return None
        return timedelta(seconds=int(simple.group(1)) * unit)
    compound = _COMPOUND_DURATION.fullmatch(text)
    if compound is None or not any(compound.groups()):
        return None
    days, hours, minutes = (int(part or 0) for part in compound.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def format_duration(duration: timedelta) -> str:
    """``1d 2h``, ``45m``: how a reply says a duration."""
    minutes = int(duration.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"))]
    return " ".join(part for part in parts if not part.startswith("0")) or "0m"


def _check(argument: str) -> Command | CommandError:
    usage = "Send the link after the command: !wabscan check example[.]com/page"
    if not argument or len(argument) > _MAX_ARGUMENT:
        return CommandError(usage)
    found = extract_links(argument, max_links=1, max_url_length=_MAX_ARGUMENT)
    if not found.links:
        return CommandError(usage)
    return Command("check", url=found.links[0].url)


def _mute(argument: str) -> Command | CommandError:
    if not argument:
        return Command("mute", duration=DEFAULT_MUTE)
    duration = parse_duration(argument)
    if duration is None or not MIN_MUTE <= duration <= MAX_MUTE:
        return CommandError(
            "Mute for how long? For example: !wabscan mute 30m, 2h or 1d "
            "(at most 30 days)."
        )
    return Command("mute", duration=duration)


def _quiet(argument: str) -> Command | CommandError:
    if argument.casefold() in ("off", "none", "no"):
        return Command("quiet", quiet=None)
    usage = (
        "Quiet hours are two times of day, for example: "
        "!wabscan quiet 22-07 or 22:30-06:45 (or !wabscan quiet off)."
    )
    match = _HOURS.fullmatch(argument)
    if match is None:
        return CommandError(usage)
    start_h, start_m, end_h, end_m = match.groups()
    start = _clock(start_h, start_m)
    end = _clock(end_h, end_m)
    if start is None or end is None or start == end:
        return CommandError(usage)
    return Command("quiet", quiet=(start, end))


def _clock(hours: str, minutes: str | None) -> str | None:
    h = int(hours)
    m = int(minutes or 0)
    if h == 24 and m == 0:
        h = 0
    if not (0 <= h <= 23 and 0 <= m <= 59):
        return None
    return f"{h:02d}:{m:02d}"
