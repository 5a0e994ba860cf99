"""The reply policy: whether, when and about which links to tell a group.

Pure functions over plain values (no clock, no database, no Redis), so that
the rules below are stated once and tested with hypothesis; the ledger feeds
them what it stored and writes back what they decide. docs/reply-policy.md
explains the rules for operators.

- Only suspicious and malicious links are announced, unless benign ones are
  turned on (for all groups in the configuration, or per group).
- One reply per message, naming every link of it that is worth naming.
- No repeat: a link named in a group within the repeat window is not named
  there again unless its level went up.
- A ``check`` (an admin's ``!wabscan check URL``) is always answered, benign
  included, at once: an admin asked, and is waiting.
- Quiet hours: the group asked not to be disturbed at night, not to be left
  uninformed, so warnings and corrections are deferred to the end of the
  quiet period; a benign note is dropped (it is stale by morning).
- Mute: the group asked for silence. Suspicious warnings and benign notes are
  dropped. A malicious warning is deferred to the end of the mute: the group
  still learns, once the silence it asked for is over, that a dangerous link
  was posted, and nothing is said while it lasts.
- Corrections: when a later scan raises a link above what a group was told
  (silence about a benign link counts as "told benign"), the group is told
  again, under the same quiet-hours and mute rules; a lowered level is not
  announced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Final

from wabscan.jobs import KIND_CHECK
from wabscan.verdict import Level

# Why a message got no reply; the labels of the suppressed-replies metric.
DISABLED: Final = "disabled"  # scanning is off in the group
REPEAT: Final = "repeat"  # every link was named there within the window
BENIGN: Final = "benign"  # nothing but benign links, and benign is silent
UNJUDGED: Final = "unjudged"  # no link could be judged (not a URL)
MUTED: Final = "muted"
QUIET: Final = "quiet"


@dataclass(frozen=True, slots=True)
class Part:
    """One judged link of a message, as the reporter stored it.

    ``level`` is None when the scanner could not parse the URL.
    """

    index: int
    canonical: str
    level: Level | None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily period, in the group's time zone, when it is not to be woken.

    ``start`` after ``end`` means the period spans midnight (23:00-07:00);
    ``start == end`` means no quiet period at all.
    """

    start: time
    end: time
    zone: tzinfo

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (aware) falls inside the quiet period."""
        local = moment.astimezone(self.zone).time().replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def ends_after(self, moment: datetime) -> datetime:
        """The first end of a quiet period after ``moment``, as an aware time."""
        local = moment.astimezone(self.zone)
        end = datetime.combine(local.date(), self.end, tzinfo=self.zone)
        if end <= local:
            end = datetime.combine(
                local.date() + timedelta(days=1), self.end, tzinfo=self.zone
            )
        return end.astimezone(moment.tzinfo)


@dataclass(frozen=True, slots=True)
class GroupState:
    """The settings of one group that the policy reads.

    Attributes:
        enabled: scanning and replies are on.
        announce_benign: benign links are named too (configuration or group).
        muted_until: aware time until which the group asked for silence.
        quiet: the group's quiet hours, if any.
    """

    enabled: bool = True
    announce_benign: bool = False
    muted_until: datetime | None = None
    quiet: QuietHours | None = None


@dataclass(frozen=True, slots=True)
class Told:
    """What a group was last told about a link.

    Attributes:
        level: the level named in the last reply about it, or benign when the
            reporter stayed silent about it.
        announced_at: when it was last named in a reply (None: never), the
            start of the repeat window.
    """

    level: Level
    announced_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """When a reply may go out: now, at ``after``, or never (``dropped`` says
    why)."""

    after: datetime | None = None
    dropped: str = ""

    @property
    def deferred(self) -> bool:
        return self.after is not None and not self.dropped


@dataclass(frozen=True, slots=True)
class MessageDecision:
    """What to do about one complete message.

    Attributes:
        announce: the links to name, in the order they were posted.
        silent: benign links not named (the group is then "told benign").
        reason: why there is no reply (one of the constants above), or empty.
        delivery: when the reply goes out.
        check: the message was an admin's check, answered even with no link.
    """

    announce: tuple[Part, ...]
    silent: tuple[Part, ...] = ()
    reason: str = ""
    delivery: Delivery = Delivery()
    check: bool = False

    @property
    def reply(self) -> bool:
        """Whether a reply is written (it may still be deferred or dropped)."""
        return bool(self.announce) or (self.check and not self.reason)

    @property
    def level(self) -> Level | None:
        return highest(p.level for p in self.announce)


def highest(levels: Iterable[Level | None]) -> Level | None:
    """The worst of some levels, None if there is none."""
    known = [level for level in levels if level is not None]
    return max(known, key=lambda level: level.rank) if known else None


def is_complete(indexes: Iterable[int], count: int) -> bool:
    """Whether every link of a message with ``count`` links has a verdict.

    Duplicates and indexes outside ``0..count-1`` (a malformed job) do not
    count, so replayed verdicts can never complete a message early.
    """
    return len({i for i in indexes if 0 <= i < count}) >= max(count, 1)


def links_of(parts: Iterable[Part]) -> tuple[Part, ...]:
    """The distinct links of a message in posting order; a link posted twice
    is named once, at its worst level."""
    by_link: dict[str, Part] = {}
    for part in sorted(parts, key=lambda p: p.index):
        key = part.canonical or f"#{part.index}"  # unparsed links stay apart
        seen = by_link.get(key)
        if seen is None or _rank(part.level) > _rank(seen.level):
            by_link[key] = part if seen is None else _at(part, seen.index)
    return tuple(sorted(by_link.values(), key=lambda p: p.index))


def is_repeat(
    told: Told | None, level: Level, now: datetime, window: timedelta
) -> bool:
    """Whether naming the link at ``level`` would repeat what the group was
    told within the window (a higher level is news, not a repeat)."""
    return (
        told is not None
        and told.announced_at is not None
        and now - told.announced_at < window
        and told.level.rank >= level.rank
    )


def delivery(group: GroupState, level: Level | None, now: datetime) -> Delivery:
    """When a warning or correction at ``level`` may be sent to the group.

    Checks do not go through here: they are always answered at once.
    """
    if not group.enabled:
        return Delivery(dropped=DISABLED)
    at = now
    if group.muted_until is not None and group.muted_until > now:
        if level is not Level.MALICIOUS:
            return Delivery(dropped=MUTED)
        at = group.muted_until
    if group.quiet is not None and group.quiet.contains(at):
        if level is None or level is Level.BENIGN:
            return Delivery(dropped=QUIET)
        at = group.quiet.ends_after(at)
    return Delivery(after=at if at > now else None)


def decide_message(
    kind: str,
    parts: Sequence[Part],
    group: GroupState,
    told: Mapping[str, Told],
    now: datetime,
    window: timedelta,
) -> MessageDecision:
    """Decide about a message whose every link has a verdict.

    Args:
        kind: the jobs' kind (``message``, ``edit``, ``check``).
        parts: the message's judged links, in any order, possibly repeated.
        group: the group's settings now.
        told: what the group was told about each of the message's links.
        now: the moment of the decision.
        window: the repeat window.
    """
    links = links_of(parts)
    if kind == KIND_CHECK:
        judged = tuple(p for p in links if p.level is not None)
        return MessageDecision(judged, check=True)
    if not group.enabled:
        return MessageDecision((), reason=DISABLED)

    announce: list[Part] = []
    silent: list[Part] = []
    reasons: set[str] = set()
    for part in links:
        if part.level is None:
            reasons.add(UNJUDGED)
        elif part.level is Level.BENIGN and not group.announce_benign:
            silent.append(part)
            reasons.add(BENIGN)
        elif is_repeat(told.get(part.canonical), part.level, now, window):
            reasons.add(REPEAT)
        else:
            announce.append(part)
    if not announce:
        reason = next(r for r in (REPEAT, BENIGN, UNJUDGED) if r in reasons)
        return MessageDecision((), tuple(silent), reason)

    when = delivery(group, highest(p.level for p in announce), now)
    return MessageDecision(tuple(announce), tuple(silent), when.dropped, when)


def told_after(
    decision: MessageDecision, told: Mapping[str, Told], now: datetime
) -> dict[str, Told]:
    """What the group has been told about each link once ``decision`` is
    carried out; only the links whose record changes.

    A named link records its level; its repeat window starts now unless the
    reply was dropped (the group chose not to hear it, so it is not news when
    it is later raised to the same level, but it may be named again). A silent
    benign link is recorded as told benign if the group had heard nothing.
    """
    changed: dict[str, Told] = {}
    for part in decision.announce:
        assert part.level is not None
        before = told.get(part.canonical)
        if decision.delivery.dropped:
            announced_at = before.announced_at if before else None
        else:
            announced_at = now
        changed[part.canonical] = Told(part.level, announced_at)
    for part in decision.silent:
        if part.canonical not in told:
            changed[part.canonical] = Told(Level.BENIGN)
    return changed


def needs_correction(told: Told, level: Level | None) -> bool:
    """Whether a group told ``told`` must hear that a link is now ``level``."""
    return (
        level is not None
        and level.rank >= Level.SUSPICIOUS.rank
        and level.rank > told.level.rank
    )


def link_hash(canonical: str) -> str:
    """A short stable id for a canonical URL (replies' ids, the API's scan ids)."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def reply_id(group: str, message: str, batch: str = "") -> str:
    """The id of the reply to a message (or to one edit of it)."""
    return f"reply/{group}/{message}" + (f"/{batch}" if batch else "")


def check_id(group: str, message: str) -> str:
    """The id of the answer to an admin's ``check``."""
    return f"check/{group}/{message}"


def correction_id(group: str, canonical: str, level: Level) -> str:
    """The id of a correction: at most one per group, link and new level."""
    return f"correction/{group}/{link_hash(canonical)}/{level.value}"


def _rank(level: Level | None) -> int:
    return -1 if level is None else level.rank


def _at(part: Part, index: int) -> Part:
    return Part(index, part.canonical, part.level, part.reasons)
