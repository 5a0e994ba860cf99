"""``wabscan soak``: the appliance under seeded group traffic, for minutes or days.

A generator plays the people of a dozen WhatsApp groups through the local
transport, from one seed (:class:`random.Random` only): members chatting at a
steady rate with bursts, links (most benign, some malicious, some of those
forwarded again), edits, and admins' commands (``enable`` at the start, then
``status``, ``check`` and ``mute``/``unmute`` now and then). Same seed and
options, same traffic, byte for byte. With chaos, a unit is ``kill -9``-ed
at seeded times, each in turn.

It drives the whole appliance (Redis and the three units, as ``wabscan run``
starts them), each process in a memory cgroup with its unit's ``MemoryMax``
where the host allows it, and records once a second the RSS of each process
and the depth of each queue. At the end it compares what the traffic should
have produced, worked out from the traffic alone and the reply policy
(docs/reply-policy.md), with what the units did: links queued, verdicts
published, replies sent, none lost and none doubled. It writes a JSON report
and a PNG chart; docs/soak.md explains both.

The verdict of every generated link is known in advance: malicious links are
on invented domains that the run imports as a phishing feed, benign ones on
domains it imports as an allowlist. Links that the scanner would judge on
heuristics alone are left out: what they should produce cannot be said
without running the scanner.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import redis

from wabscan import queue
from wabscan.bridge.local import LocalChat, SentMessage, group_jid, transport_file
from wabscan.bridge.transport import message_id_for
from wabscan.config import load_config
from wabscan.demo import demo_settings, write_config
from wabscan.errors import InputError, WabscanError
from wabscan.feeds import import_feed
from wabscan.storage import format_time, open_database, parse_time
from wabscan.supervise import REDIS_MAXMEMORY, Child, LocalAppliance

REPORT_FORMAT: Final = 1
UNITS: Final = ("bridge", "scanner", "reporter")
PROCESSES: Final = (*UNITS, "redis")
# The goals of issue 3, resident memory in MB.
GOALS_MB: Final = {"bridge": 100, "scanner": 60, "reporter": 45, "redis": 32}
APPLIANCE_GOAL_MB: Final = 200
# MemoryMax of each unit and of wabscan.slice, MB. units/ is the source: the
# files are read when this runs from a checkout, these are their values when
# this was written, for when it does not.
UNIT_FILES: Final = {p: f"wabscan-{p}.service" for p in PROCESSES}
MEMORY_MAX_MB: Final = {"bridge": 150, "scanner": 90, "reporter": 70, "redis": 48}
SLICE_MAX_MB: Final = 256

STREAMS: Final = ((queue.SCAN, "scanner"), (queue.VERDICT, "reporter"))
QUEUES: Final = (*STREAMS, (queue.OUTBOX, "bridge"))
SETUP_SECONDS: Final = 1.0  # joins and "enable" first; members talk after
SETTLE_SECONDS: Final = 3.0  # quiet after the last reply, so late doubles show


class SoakError(WabscanError):
    pass


# -- options ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrafficShape:
    """How the generated groups behave (docs/soak.md says why these values).

    Attributes:
        rate: messages per second across all groups, outside bursts.
        groups: how many groups the bot is in; with four or more, checking
            stays off in the last one.
        link_share: share of messages with links.
        malicious_share: share of links that are malicious.
        repost_share: share of lone malicious links that are a link posted
            before (forwarded again, in the same group or another).
        edit_share: share of messages edited 2-20 s later.
        burst_every: mean seconds between bursts (exponential gaps).
        burst_factor: a burst's extra rate, times ``rate``, all in one group,
            for 2-8 s.
        status_every, check_every, mute_every: mean seconds between those
            admin commands (a mute is lifted 15-60 s later).
        chaos_every: mean seconds between kills, at least 10 s apart
            (0: no chaos).
        repeat_window: the reporter's repeat window, seconds.
    """

    rate: float = 20.0
    groups: int = 12
    link_share: float = 0.2
    malicious_share: float = 0.15
    repost_share: float = 0.35
    edit_share: float = 0.03
    burst_every: float = 60.0
    burst_factor: float = 3.0
    status_every: float = 120.0
    check_every: float = 45.0
    mute_every: float = 150.0
    chaos_every: float = 0.0
    repeat_window: float = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class SoakOptions:
    """One soak run.

    Attributes:
        seed: the traffic's seed.
        duration: seconds of traffic (the drain comes after).
        out: where ``soak.json``, ``soak.png`` and ``appliance.log`` go.
        shape: the traffic.
        limits: put each process in a memory cgroup with its unit's
            ``MemoryMax`` (root and cgroup v1 only; skipped with a note).
        drain_timeout: how long to wait for the last replies after the
            traffic.
        keep_state: keep the database, Redis' files and the local transport
            in ``out/state`` (otherwise a temporary folder, removed).
        progress_every: seconds between progress lines.
    """

    seed: int = 1
    duration: float = 600.0
    out: Path = Path("soak-report")
    shape: TrafficShape = TrafficShape()
    limits: bool = True
    drain_timeout: float = 180.0
    keep_state: bool = False
    progress_every: float = 10.0


_DURATION: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)", re.ASCII)
_UNIT_SECONDS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str = "--duration") -> float:
    """``90``, ``90s``, ``10m``, ``6h`` or ``3d``, in seconds.

    Raises:
        InputError: anything else, or zero.
    """
    match = _DURATION.fullmatch(text.strip().casefold())
    if match is None:
        raise InputError(option, f"{text!r}: write it as 90s, 10m, 6h or 3d")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise InputError(option, "must be more than zero")
    return seconds


# Messages a second outside bursts. The harness posts from one thread; 150
# (bursts of 450) is the fastest measured (docs/soak.md), and it kept to its
# schedule within 0.16 s.
MAX_RATE: Final = 1000


def options_from(
    *,
    seed: int = 1,
    duration: str = "10m",
    rate: float = 20.0,
    groups: int = 12,
    chaos: bool = False,
    chaos_every: str = "60s",
    out: Path = Path("soak-report"),
    limits: bool = True,
    keep_state: bool = False,
    drain_timeout: str = "3m",
) -> SoakOptions:
    """Options from what a person types (the CLI and ``python -m`` share it).

    Raises:
        InputError: a value out of range.
    """
    if not math.isfinite(rate) or not 0 < rate <= MAX_RATE:
        raise InputError(
            "--rate", f"{rate}: must be a number above 0, at most {MAX_RATE}"
        )
    if groups < 1:
        raise InputError("--groups", "must be at least 1")
    seconds = parse_duration(duration)
    return SoakOptions(
        seed=seed,
        duration=seconds,
        out=out,
        shape=TrafficShape(
            rate=rate,
            groups=groups,
            chaos_every=parse_duration(chaos_every, "--chaos-every") if chaos else 0,
        ),
        limits=limits,
        keep_state=keep_state,
        drain_timeout=parse_duration(drain_timeout, "--drain-timeout"),
        # A line every 10 s for a short run, every minute for hours.
        progress_every=10.0 if seconds <= 1800 else 60.0,
    )


# -- the groups and their traffic (pure, seeded) -----------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    phone: str
    name: str


@dataclass(frozen=True, slots=True)
class SoakGroup:
    """A generated group; ``key`` is its name in the local transport."""

    key: str
    name: str
    members: tuple[Person, ...]
    admins: tuple[Person, ...]
    enabled: bool
    weight: float
    activity: tuple[float, ...]  # cumulative: a few members write most


@dataclass(frozen=True, slots=True)
class World:
    """The groups, and the invented domains imported as feeds."""

    groups: tuple[SoakGroup, ...]
    phishing: tuple[str, ...]
    allowed: tuple[str, ...]

    def group(self, key: str) -> SoakGroup:
        return next(g for g in self.groups if g.key == key)


@dataclass(frozen=True, slots=True)
class Link:
    url: str
    malicious: bool


# Event kinds.
JOIN: Final = "join"
MESSAGE: Final = "message"
EDIT: Final = "edit"
COMMAND: Final = "command"
KILL: Final = "kill"


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happens in the traffic.

    Attributes:
        seq: position in the traffic, from 0.
        at: seconds after the start.
        kind: ``join``, ``message``, ``edit``, ``command`` or ``kill``.
        group: the group's key (empty for a kill).
        sender, name, admin: who writes.
        text: what is written (for an edit, the whole new text).
        links: the links in ``text`` in order, and which are malicious.
        edit_of: for an edit, the ``seq`` of the message edited.
        edited: a later event edits this message.
        command: ``enable``, ``status``, ``check``, ``mute`` or ``unmute``.
        unit: for a kill, the unit.
        burst: posted during a burst.
    """

    seq: int
    at: float
    kind: str
    group: str = ""
    sender: str = ""
    name: str = ""
    admin: bool = False
    text: str = ""
    links: tuple[Link, ...] = ()
    edit_of: int = -1
    edited: bool = False
    command: str = ""
    unit: str = ""
    burst: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


_NAMES: Final = _words(
    "Ada Bea Cal Dov Eli Fay Gus Hal Ida Jon Kai Lea Max Noa Ola Pia Quin Ray "
    "Sol Tea Uma Val Wes Xia Yan Zoe Abe Bo Cy Di Ed Flo Gil Hu Ivo Jo Kit Lu"
)
_GROUP_NAMES: Final = _words(
    "Family|Book club|Football parents|Street|Choir|Class of 2009|Allotment|"
    "Climbing|School run|Flat share|Cousins|Work lunch|Chess|Holiday|Cycling|"
    "Garden swap",
    "|",
)
_BRANDS: Final = _words(
    "parcel bank post tax wallet pay delivery customs prize energy phone "
    "account refund toll pension lottery"
)
_LURES: Final = _words(
    "redelivery verify secure update confirm claim fee unlock support billing "
    "gift reward alert check login"
)
_TOPICS: Final = _words(
    "family photos recipes garden choir match school bakery library hiking "
    "weather cinema market news travel music chess football pottery"
)
# A few popular sites, also in the demo's allowlist; sometimes written bare
# (no scheme), as people do; invented ones need a scheme to be seen as links.
_POPULAR: Final = ("youtube.com", "wikipedia.org", "bbc.co.uk")
_CHATTER: Final = _words(
    "good morning everyone|who is coming on saturday|ha ha|thanks!|did anyone "
    "see the match|I'll bring the cake|running late, sorry|happy birthday!!|"
    "where are we meeting|ok|see you there|can someone send the photos|the "
    "school is closed tomorrow|great news|call me when you can|who has the "
    "key|the bus is late again|lovely, thank you|I agree|not sure, let me "
    "check",
    "|",
)
_BENIGN_LINES: Final = _words(
    "look at this {}|the video from yesterday {}|{}|recipe: {}|photos are "
    "here {}|{} this is the place I meant",
    "|",
)
_MALICIOUS_LINES: Final = _words(
    "Your parcel could not be delivered, pay the fee here: {}|URGENT your "
    "account is suspended, verify now {}|I got a free gift card from here {}|"
    "forwarded many times: win a free phone {}|{} the bank says to confirm "
    "your details today|tax refund waiting for you {}",
    "|",
)

Spec = dict[str, Any]  # an event drawn but not yet filled in


def make_world(seed: int, groups: int) -> World:
    """The people, groups and invented domains of a seed."""
    rng = random.Random(f"{seed}/world")
    people = [
        Person(f"1555{2000000 + n:07d}", f"{rng.choice(_NAMES)} {n}")
        for n in range(max(40, groups * 30))
    ]
    made = []
    for index in range(groups):
        size = min(len(people), max(4, int(rng.lognormvariate(3.0, 0.6))))
        members = tuple(rng.sample(people, size))
        made.append(
            SoakGroup(
                key=f"soak-{index:02d}",
                name=_GROUP_NAMES[index % len(_GROUP_NAMES)],
                members=members,
                admins=members[: 1 + (rng.random() < 0.4)],
                enabled=groups < 4 or index != groups - 1,
                weight=rng.lognormvariate(0.0, 0.8),
                activity=_cumulative(rng.paretovariate(1.5) for _ in members),
            )
        )
    phishing: set[str] = set()
    while len(phishing) < 120:
        brand, lure = rng.choice(_BRANDS), rng.choice(_LURES)
        phishing.add(f"{brand}-{lure}-{rng.randrange(100, 1000)}.example")
    allowed = set(_POPULAR)
    while len(allowed) < 40:
        allowed.add(f"{rng.choice(_TOPICS)}-{rng.choice(_TOPICS)}.test")
    return World(tuple(made), tuple(sorted(phishing)), tuple(sorted(allowed)))


class Traffic:
    """The events of a run in time order, generated as they are read (a run
    of days is never held in memory).

    Example::

        world = make_world(7, 12)
        for event in Traffic(world, 7, 60.0, TrafficShape()):
            print(event.to_json())
    """

    def __init__(
        self, world: World, seed: int, duration: float, shape: TrafficShape
    ) -> None:
        self.world = world
        self.duration = duration
        self.shape = shape
        # Chaos draws from its own stream: with or without kills, the
        # traffic is the same, so the two runs compare.
        self.rng = random.Random(f"{seed}/traffic")
        self.chaos = random.Random(f"{seed}/chaos")
        self._seq = 0
        self._fresh = 0
        self._weights = _cumulative(g.weight for g in world.groups)
        self._enabled = [g for g in world.groups if g.enabled]
        self._forwardable: list[tuple[str, float]] = []  # (url, first posted)
        self._later: list[tuple[float, int, Spec]] = []  # a heap
        self._pushed = 0
        self._muted: set[str] = set()
        self._bursts: list[tuple[float, float, SoakGroup]] = []
        self._every = {
            "burst": shape.burst_every,
            "status": shape.status_every,
            "check": shape.check_every,
            "mute": shape.mute_every,
        }
        self._victims = list(UNITS)
        self._kills = 0

    def __iter__(self) -> Iterator[Event]:
        for group in self.world.groups:
            yield self._event(0.0, JOIN, group=group.key)
        for group in self._enabled:
            yield self._command(0.1, group, group.admins[0], "enable")
        for kind, every in self._every.items():
            self._again(kind, SETUP_SECONDS, every)
        if self.shape.chaos_every > 0:
            self.chaos.shuffle(self._victims)
            gap = self.chaos.expovariate(1 / self.shape.chaos_every)
            self._push(SETUP_SECONDS + 5 + gap, {"kind": KILL})
        second = SETUP_SECONDS
        while second < self.duration:
            # A second's events are drawn first, then filled in in time
            # order: what a message says depends on those before it.
            drawn = self._draw(second, min(second + 1, self.duration))
            for at, _, spec in sorted(drawn, key=lambda d: (d[0], d[1])):
                event = self._fill(at, spec)
                if event is not None:
                    yield event
            second += 1

    def _draw(self, second: float, end: float) -> list[tuple[float, int, Spec]]:
        rng, shape = self.rng, self.shape
        drawn: list[tuple[float, int, Spec]] = []
        while self._later and self._later[0][0] < end:
            at, _, spec = heapq.heappop(self._later)
            recurring = spec.get("command", spec["kind"])
            if recurring in self._every:
                self._again(recurring, at, self._every[recurring])
            if spec["kind"] == "burst":
                stop = at + rng.uniform(2.0, 8.0)
                self._bursts.append((at, stop, self._pick_group()))
                continue
            if spec["kind"] == KILL:
                victim = self._victims[self._kills % len(self._victims)]
                spec = {"kind": KILL, "unit": victim}
                self._kills += 1
                gap = 10 + self.chaos.expovariate(1 / shape.chaos_every)
                self._push(at + gap, {"kind": KILL})
            drawn.append((at, len(drawn), spec))
        for _ in range(_poisson(rng, shape.rate * (end - second))):
            drawn.append((rng.uniform(second, end), len(drawn), {"kind": MESSAGE}))
        for start, stop, group in self._bursts:
            low, high = max(start, second), min(stop, end)
            extra = shape.rate * shape.burst_factor * max(0.0, high - low)
            for _ in range(_poisson(rng, extra)):
                spec = {"kind": MESSAGE, "group": group, "burst": True}
                drawn.append((rng.uniform(low, high), len(drawn), spec))
        self._bursts = [b for b in self._bursts if b[1] > end]
        return drawn

    def _fill(self, at: float, spec: Spec) -> Event | None:
        kind = spec["kind"]
        if kind == KILL:
            return self._event(at, KILL, unit=spec["unit"])
        if kind == EDIT:
            return self._event(at, EDIT, **spec["event"])
        if kind == COMMAND:
            return self._admin(at, spec["command"], spec.get("group", ""))
        group = spec.get("group") or self._pick_group()
        return self._message(at, group, bool(spec.get("burst")))

    def _message(self, at: float, group: SoakGroup, burst: bool) -> Event:
        rng, shape = self.rng, self.shape
        person = group.members[_weighted(rng, group.activity)]
        links: list[Link] = []
        if rng.random() < shape.link_share:
            count = 1 if rng.random() < 0.8 else (2 if rng.random() < 0.75 else 3)
            bad = [rng.random() < shape.malicious_share for _ in range(count)]
            lone = sum(bad) == 1
            again = (
                self._forwarded(at)
                if lone and rng.random() < shape.repost_share
                else ""
            )
            for is_bad in bad:
                url = (again or self._bad_url()) if is_bad else self._good_url()
                links.append(Link(url, is_bad))
            if lone and not again:
                # Only a lone malicious link is posted again: one reply
                # answers a message with several, and which of two messages
                # gets it must never depend on timing.
                self._forwardable.append(
                    (next(x.url for x in links if x.malicious), at)
                )
        event = self._event(
            at,
            MESSAGE,
            group=group.key,
            sender=person.phone,
            name=person.name,
            admin=person in group.admins,
            text=self._text(links),
            links=tuple(links),
            burst=burst,
        )
        if sum(x.malicious for x in links) <= 1 and rng.random() < shape.edit_share:
            event = self._edit_later(event, links)
        return event

    def _edit_later(self, event: Event, links: list[Link]) -> Event:
        """Schedule an edit of ``event``: a typo fixed, a malicious link
        added to a message that had none, or the malicious link removed."""
        rng = self.rng
        at = event.at + rng.uniform(2.0, 20.0)
        bad = [x for x in links if x.malicious]
        changed = list(links)
        if not bad and rng.random() < 0.5:
            changed.append(Link(self._bad_url(), True))
            note = "forgot this one"
        elif bad and rng.random() < 0.3:
            changed = [x for x in links if not x.malicious]
            note = "removed a link"
        else:
            note = "typo"
        if at >= self.duration:
            return event
        if not bad and len(changed) > len(links):
            self._forwardable.append((changed[-1].url, at))
        fields = {
            "group": event.group,
            "sender": event.sender,
            "name": event.name,
            "admin": event.admin,
            "text": f"{self._text(changed)} (edit: {note})",
            "links": tuple(changed),
            "edit_of": event.seq,
        }
        self._push(at, {"kind": EDIT, "event": fields})
        return dataclasses.replace(event, edited=True)

    def _admin(self, at: float, name: str, key: str) -> Event | None:
        rng = self.rng
        if name == "unmute":
            self._muted.discard(key)
            group = self.world.group(key)
            return self._command(at, group, group.admins[0], name)
        if name == "mute":
            choices = [g for g in self._enabled if g.key not in self._muted]
            group = rng.choice(choices) if choices else self._enabled[0]
            until = at + rng.uniform(15.0, 60.0)
            length = rng.choice(("30m", "1h", "2h"))
            # Lifted before the traffic ends, or the malicious warnings it
            # holds back would wait past the end of the run.
            if not choices or until >= self.duration - 1:
                return None
            self._muted.add(group.key)
            self._push(
                until, {"kind": COMMAND, "command": "unmute", "group": group.key}
            )
            return self._command(at, group, rng.choice(group.admins), name, length)
        group = rng.choice(self.world.groups)  # disabled too: commands work there
        admin = rng.choice(group.admins)
        if name == "check":
            bad = rng.random() < 0.6
            link = Link(self._bad_url() if bad else self._good_url(scheme=True), bad)
            return self._command(at, group, admin, name, link.url, (link,))
        return self._command(at, group, admin, name)

    def _command(
        self,
        at: float,
        group: SoakGroup,
        admin: Person,
        name: str,
        argument: str = "",
        links: tuple[Link, ...] = (),
    ) -> Event:
        return self._event(
            at,
            COMMAND,
            group=group.key,
            sender=admin.phone,
            name=admin.name,
            admin=True,
            text=f"!wabscan {name} {argument}".rstrip(),
            links=links,
            command=name,
        )

    def _event(self, at: float, kind: str, **values: Any) -> Event:
        event = Event(seq=self._seq, at=round(at, 4), kind=kind, **values)
        self._seq += 1
        return event

    def _again(self, kind: str, after: float, every: float) -> None:
        spec = {"kind": kind} if kind == "burst" else {"kind": COMMAND, "command": kind}
        self._push(after + self.rng.expovariate(1 / every), spec)

    def _push(self, at: float, spec: Spec) -> None:
        heapq.heappush(self._later, (at, self._pushed, spec))
        self._pushed += 1

    def _pick_group(self) -> SoakGroup:
        return self.world.groups[_weighted(self.rng, self._weights)]

    def _forwarded(self, at: float) -> str:
        """A lone malicious link posted within half the repeat window: a
        second posting is then surely a repeat, whatever the delays."""
        horizon = at - self.shape.repeat_window / 2
        self._forwardable = [f for f in self._forwardable if f[1] > horizon]
        return self.rng.choice(self._forwardable)[0] if self._forwardable else ""

    def _bad_url(self) -> str:
        rng = self.rng
        self._fresh += 1  # in every URL: a fresh link is never a repeat
        host = rng.choice(("", "", "secure.", "m.", "login."))
        host += rng.choice(self.world.phishing)
        token = f"{self._fresh:x}{rng.getrandbits(20):05x}"
        return f"https://{host}/{rng.choice(_LURES)}/{token}"

    def _good_url(self, scheme: bool = False) -> str:
        rng = self.rng
        self._fresh += 1
        domain = rng.choice(self.world.allowed)
        path = f"{rng.choice(_TOPICS)}/{self._fresh:x}"
        if domain in _POPULAR and not scheme and rng.random() < 0.5:
            return f"{domain}/{path}"
        return f"https://{domain}/{path}"

    def _text(self, links: Sequence[Link]) -> str:
        if not links:
            return self.rng.choice(_CHATTER)
        return " and also ".join(
            self.rng.choice(_MALICIOUS_LINES if x.malicious else _BENIGN_LINES).format(
                x.url
            )
            for x in links
        )


def generate(
    seed: int, duration: float, shape: TrafficShape
) -> tuple[World, list[Event]]:
    """A whole traffic at once (for tests; a run streams it)."""
    world = make_world(seed, shape.groups)
    return world, list(Traffic(world, seed, duration, shape))


def _cumulative(weights: Iterable[float]) -> tuple[float, ...]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return tuple(out)


def _weighted(rng: random.Random, cumulative: Sequence[float]) -> int:
    # One rng.random() a draw and a plain bisection: the same sequence on
    # every platform and Python version.
    target = rng.random() * cumulative[-1]
    low, high = 0, len(cumulative) - 1
    while low < high:
        middle = (low + high) // 2
        if cumulative[middle] <= target:
            low = middle + 1
        else:
            high = middle
    return low


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw: Knuth's method, in pieces so that exp() never
    underflows at high rates."""
    count = 0
    while mean > 0:
        piece = min(mean, 30.0)
        mean -= piece
        limit, product = math.exp(-piece), rng.random()
        while product > limit:
            count += 1
            product *= rng.random()
    return count


# -- what the traffic calls for (pure) -------------------------------------------

# Kinds of reply, as the accounting counts them.
NOTICE: Final = "notice"  # the bot was added to a group
ANSWER: Final = "command"  # an admin's command, answered by the bridge
CHECK: Final = "check"  # "!wabscan check URL", answered by the reporter
WARNING: Final = "warning"  # malicious links in a message or an edit
SETUP: Final = "setup"  # latency only: the notices and answers of the start


@dataclass(slots=True)
class Slot:
    """A reply the traffic calls for: exactly one of ``candidates`` (events'
    ``seq``) gets it.

    A warning has several candidates when a malicious link is posted again
    in a group within the repeat window: the group is told once, normally
    about the first posting; after a crash, the reporter may decide a later
    one first, and that one is answered instead.
    """

    kind: str
    group: str
    candidates: list[int]


class TrafficOutsideModel(SoakError):
    """The traffic repeats a link in a way whose outcome depends on timing."""


def expected_replies(events: Iterable[Event], window: float) -> list[Slot]:
    """The replies a traffic calls for, by docs/reply-policy.md:

    - each group the bot is added to gets one notice;
    - each admin command gets one answer (``check`` from the reporter,
      whatever the verdict, even where checking is off);
    - where checking is on, a message or edit with malicious links gets one
      warning unless each of them was named there within the repeat window.
      A mute defers a malicious warning, it does not drop it; benign links
      are not announced by default.

    Raises:
        TrafficOutsideModel: see :class:`Traffic` for what it never does.
    """
    slots: list[Slot] = []
    enabled: set[str] = set()
    chains: dict[tuple[str, str], tuple[float, Slot]] = {}
    several: set[tuple[str, str]] = set()
    for event in events:
        if event.kind == JOIN:
            slots.append(Slot(NOTICE, event.group, [event.seq]))
        elif event.kind == COMMAND:
            kind = CHECK if event.command == "check" else ANSWER
            slots.append(Slot(kind, event.group, [event.seq]))
            if event.command == "enable":
                enabled.add(event.group)
        elif event.kind in (MESSAGE, EDIT) and event.group in enabled:
            keys = [(event.group, x.url) for x in event.links if x.malicious]
            if len(keys) > 1 or any(k in several for k in keys):
                if any(k in chains or k in several for k in keys):
                    raise TrafficOutsideModel(f"event {event.seq} reposts a link")
                several.update(keys)
                slots.append(Slot(WARNING, event.group, [event.seq]))
            elif keys:
                chain = chains.get(keys[0])
                age = event.at - chain[0] if chain else math.inf
                if chain is not None and age < window / 2:
                    chain[1].candidates.append(event.seq)
                elif age < window * 1.5:
                    raise TrafficOutsideModel(
                        f"event {event.seq} reposts a link near the window's end"
                    )
                else:
                    slot = Slot(WARNING, event.group, [event.seq])
                    chains[keys[0]] = (event.at, slot)
                    slots.append(slot)
    return slots


def mute_periods(events: Iterable[Event]) -> dict[str, list[tuple[float, float]]]:
    """When each group was muted (seconds after the start; the end is inf
    while it still is): warnings then wait for the unmute, so their delay
    is not the pipeline's."""
    periods: dict[str, list[tuple[float, float]]] = {}
    since: dict[str, float] = {}
    for event in events:
        if event.kind == COMMAND and event.command == "mute":
            since.setdefault(event.group, event.at)
        elif (
            event.kind == COMMAND and event.command == "unmute" and event.group in since
        ):
            periods.setdefault(event.group, []).append(
                (since.pop(event.group), event.at)
            )
    for group, start in since.items():
        periods.setdefault(group, []).append((start, math.inf))
    return periods


def reply_id(kind: str, event: Event, posted: Mapping[int, Posted]) -> str:
    """The id the units give the reply to ``event`` (docs/reply-policy.md,
    and the bridge's ``command/`` and ``notice/`` ids)."""
    jid, mine = group_jid(event.group), posted[event.seq]
    if kind == NOTICE:
        return f"notice/{jid}/join/{mine.message_id}"
    if kind in (ANSWER, CHECK):
        return f"{kind}/{jid}/{mine.message_id}"
    if event.kind == EDIT:
        return f"reply/{jid}/{posted[event.edit_of].message_id}/edit:{mine.at}"
    return f"reply/{jid}/{mine.message_id}"


def job_ids(event: Event, posted: Mapping[int, Posted]) -> list[str]:
    """The scan jobs the bridge makes of ``event`` (``ScanJob.make_id``)."""
    jid, mine = group_jid(event.group), posted[event.seq].message_id
    if event.kind == COMMAND:
        return [f"{jid}/{mine}/0"] if event.command == "check" else []
    if event.kind == EDIT:
        mine = f"{posted[event.edit_of].message_id}/edit-{mine}"
    return [f"{jid}/{mine}/{index}" for index in range(len(event.links))]


# -- memory limits -------------------------------------------------------------------


class LimitsUnavailable(SoakError):
    pass


def unit_memory_max(units_dir: Path | None = None) -> tuple[dict[str, int], int]:
    """Each process's ``MemoryMax`` and the slice's, MB, from units/ when it
    is at hand."""
    units_dir = units_dir or Path(__file__).resolve().parents[2] / "units"
    limits = {
        p: _memory_max(units_dir / name) or MEMORY_MAX_MB[p]
        for p, name in UNIT_FILES.items()
    }
    return limits, _memory_max(units_dir / "wabscan.slice") or SLICE_MAX_MB


def _memory_max(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^MemoryMax=([0-9]+)([KMG])\s*$", text, re.MULTILINE)
    if match is None:
        return None
    return (
        int(match.group(1))
        * {"K": 1, "M": 1024, "G": 1024 * 1024}[match.group(2)]
        // 1024
    )


class MemoryLimits:
    """A memory cgroup per process, under one for the whole appliance, as
    wabscan.slice and the units' ``MemoryMax`` hold them under systemd.

    cgroup v1 (the development machines, FIELD-NOTES "cgroups here"). The
    groups are made inside this process's own cgroup, never beside it, so
    that whatever holds the harness holds the units too. v1 has no
    ``MemoryHigh``: the hard limit alone applies, and a process over it is
    OOM-killed (counted per process) and restarted.
    """

    def __init__(self, base: Path, limits_mb: Mapping[str, int]) -> None:
        self.base = base
        self.limits_mb = dict(limits_mb)

    @classmethod
    def create(
        cls, name: str, limits_mb: Mapping[str, int], total_mb: int
    ) -> MemoryLimits:
        """Make the groups.

        Raises:
            LimitsUnavailable: not root, no writable v1 memory controller;
                the message says which.
        """
        if os.geteuid() != 0:
            raise LimitsUnavailable("skipped: not root")
        own = ""
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                _, controllers, path = line.split(":", 2)
                if "memory" in controllers.split(","):
                    own = path
        root = Path("/sys/fs/cgroup/memory")
        if not own or not (root / "memory.limit_in_bytes").exists():
            raise LimitsUnavailable("skipped: no cgroup v1 memory controller")
        limits = cls(root / own.lstrip("/") / name, limits_mb)
        try:
            limits.base.mkdir()
            _write(limits.base / "memory.limit_in_bytes", f"{total_mb}M")
            for process, limit in limits_mb.items():
                (limits.base / process).mkdir()
                # Move what the process was charged before it was placed
                # (the first milliseconds of exec), where the kernel still
                # can: 6.x kernels refuse, and leave it with the parent.
                with contextlib.suppress(OSError):
                    _write(
                        limits.base / process / "memory.move_charge_at_immigrate", "3"
                    )
                _write(limits.base / process / "memory.limit_in_bytes", f"{limit}M")
        except OSError as exc:
            limits.remove()
            raise LimitsUnavailable(f"skipped: {exc}") from None
        return limits

    def place(self, process: str, pid: int) -> None:
        # A process killed meanwhile has nothing left to place.
        with contextlib.suppress(OSError):
            _write(self.base / process / "cgroup.procs", str(pid))

    def oom_kills(self, process: str) -> int:
        try:
            text = (self.base / process / "memory.oom_control").read_text()
        except OSError:
            return 0
        match = re.search(r"^oom_kill (\d+)", text, re.MULTILINE)
        return int(match.group(1)) if match else 0

    def remove(self) -> str:
        """Remove the groups once their processes are gone; a note naming
        any that could not be."""
        left = []
        for path in [*(self.base / p for p in self.limits_mb), self.base]:
            for _ in range(30):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)  # the last exit is still being accounted
            else:
                left.append(str(path))
        return f"could not remove {', '.join(left)}" if left else ""


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


class _LimitedAppliance(LocalAppliance):
    """A LocalAppliance that puts each process it starts or restarts into
    its memory cgroup at once (not up to a sampling period later)."""

    memory: MemoryLimits | None = None

    def start_redis(self) -> None:
        super().start_redis()
        pid = self.pid("redis")
        if self.memory is not None and pid is not None:
            self.memory.place("redis", pid)

    def _spawn(self, child: Child) -> None:
        super()._spawn(child)
        if self.memory is not None and child.process is not None:
            self.memory.place(child.unit, child.process.pid)


# -- the run ---------------------------------------------------------------------


@dataclass(slots=True)
class Posted:
    """What is kept of a posted event."""

    message_id: str
    at: str  # the bridge's text of its time: an edit's reply id carries it
    wall: float  # time.time() when posted


@dataclass
class Samples:
    """Once a second: seconds since the start, RSS per process (MB), queue
    depth per stream (entries not delivered or not acknowledged), and what
    Redis says it holds: ``used_memory`` (MB, what ``maxmemory`` limits; its
    RSS lags behind it), its number of keys (mostly cached verdicts) and how
    many keys it has evicted since it started (``evicted_keys``)."""

    t: list[float] = field(default_factory=list)
    rss_mb: dict[str, list[float]] = field(
        default_factory=lambda: {p: [] for p in PROCESSES}
    )
    depth: dict[str, list[int]] = field(
        default_factory=lambda: {s: [] for s, _ in QUEUES}
    )
    redis_used_mb: list[float] = field(default_factory=list)
    redis_keys: list[int] = field(default_factory=list)
    redis_evicted: list[int] = field(default_factory=list)


class Sampler(threading.Thread):
    """Samples the appliance once a second, and reads the ``scan`` and
    ``verdict`` streams through a consumer group of its own
    (:class:`queue.Observer`) to see every job id go by."""

    def __init__(
        self, appliance: LocalAppliance, client: redis.Redis, started: float
    ) -> None:
        super().__init__(daemon=True, name="soak-sampler")
        self.appliance = appliance
        self.client = client
        self.started = started
        self.samples = Samples()
        self.jobs: dict[str, set[str]] = {s: set() for s, _ in STREAMS}
        self.entries: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.observer = queue.Observer(client, [s for s, _ in STREAMS], "soak")
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            tick = time.monotonic()
            self.sample()
            self._halt.wait(max(0.0, 1.0 - (time.monotonic() - tick)))

    def finish(self) -> None:
        self._halt.set()
        self.join()
        self.sample()
        self.observer.close()

    def sample(self) -> None:
        with self.lock:
            self.samples.t.append(round(time.monotonic() - self.started, 2))
            for process in PROCESSES:
                rss = rss_mb(self.appliance.pid(process))
                self.samples.rss_mb[process].append(round(rss, 1))
            for stream, group in QUEUES:
                try:
                    depth = sum(queue.depth_sync(self.client, stream, group).values())
                except redis.RedisError:
                    depth = -1
                self.samples.depth[stream].append(depth)
            try:
                info = self.client.info()
                used = int(info["used_memory"]) / 2**20
                evicted = int(info["evicted_keys"])
                keys = int(self.client.dbsize())
            except redis.RedisError:
                used, keys, evicted = -1.0, -1, -1
            self.samples.redis_used_mb.append(round(used, 2))
            self.samples.redis_keys.append(keys)
            self.samples.redis_evicted.append(evicted)
            with contextlib.suppress(redis.RedisError):
                self._observe()

    def _observe(self) -> None:
        for stream, entry in self.observer.read():
            self.entries[stream] += 1
            self.jobs[stream].add(entry.fields.get("job", ""))


def rss_mb(pid: int | None) -> float:
    """A process's resident set (VmRSS, what its cgroup is charged), MB."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


@dataclass
class Observed:
    """Everything a run recorded, from which :func:`build_report` works."""

    events: list[Event] = field(default_factory=list)
    posted: dict[int, Posted] = field(default_factory=dict)
    kills: list[dict[str, Any]] = field(default_factory=list)
    sent: list[SentMessage] = field(default_factory=list)
    ledger: dict[str, tuple[str, str]] = field(default_factory=dict)
    samples: Samples = field(default_factory=Samples)
    jobs: dict[str, set[str]] = field(default_factory=dict)
    entries: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    oom_kills: dict[str, int] = field(default_factory=dict)
    limits: str = ""
    started_at: str = ""
    elapsed: float = 0.0
    late: float = 0.0  # the most an event was posted behind its schedule, s
    # Chatter (no link, never edited) is counted, not kept: over days it is
    # most of the traffic, and the accounting never looks at it again.
    chatter: int = 0
    chatter_in_bursts: int = 0
    next_seq: int = 0
    repeat_window: float = 6 * 3600.0  # the reporter's, as configured
    traffic_s: float = 0.0  # how long the traffic lasted (less if stopped)
    drained: bool = False
    interrupted: bool = False


def run_soak(
    options: SoakOptions,
    progress: IO[str] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Run one soak; write ``soak.json``, ``soak.png`` and ``appliance.log``
    into ``options.out``. Setting ``stop`` ends the traffic early; the
    appliance still drains and the report is still written.

    Returns:
        The report, as written to ``soak.json``.

    Raises:
        SoakError: a unit did not become ready.
    """
    options.out.mkdir(parents=True, exist_ok=True)
    if options.keep_state:
        state = options.out / "state"
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir()
        observed = _run(options, state, progress, stop or threading.Event())
    else:
        with tempfile.TemporaryDirectory(prefix="wabscan-soak-", dir="/tmp") as tmp:
            observed = _run(options, Path(tmp), progress, stop or threading.Event())
    limits_mb, total_mb = unit_memory_max()
    report = build_report(options, observed, limits_mb, total_mb)
    report["chart"], report["chart_note"] = draw_chart(report, options.out / "soak.png")
    (options.out / "soak.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _run(
    options: SoakOptions, state: Path, progress: IO[str] | None, stop: threading.Event
) -> Observed:
    world = make_world(options.seed, options.shape.groups)
    log = (options.out / "appliance.log").open("w", encoding="utf-8")
    appliance = _LimitedAppliance(state, state / "wabscan.toml", log=log)
    # The demo's settings: the local transport, and reply rates high enough
    # that the soak measures the pipeline, not the anti-ban pacing
    # (docs/soak.md).
    write_config(appliance.config_file, demo_settings(state, appliance.redis_url))
    config = load_config(appliance.config_file)
    window = float(config.reporter.repeat_window_seconds)
    shape = dataclasses.replace(options.shape, repeat_window=window)
    _import_feeds(world, config.database_path, state)
    observed = Observed(started_at=format_time(datetime.now(UTC)), repeat_window=window)
    chat = LocalChat(transport_file(config))
    client = redis.Redis.from_url(appliance.redis_url, decode_responses=True)
    if options.limits:
        try:
            appliance.memory = MemoryLimits.create(
                f"wabscan-soak-{os.getpid()}", *unit_memory_max()
            )
            observed.limits = "cgroup v1, MemoryMax per unit and for the slice"
        except LimitsUnavailable as exc:
            observed.limits = str(exc)
    else:
        observed.limits = "off"
    try:
        appliance.start()
        _wait_ready(appliance)
        started = time.monotonic()
        sampler = Sampler(appliance, client, started)
        sampler.start()
        traffic = Traffic(world, options.seed, options.duration, shape)
        posting = _Posting(appliance, chat, sampler, observed, started, progress)
        posting.run(traffic, options.progress_every, stop)
        _lift_mutes(world, chat, observed, started)
        slots = expected_replies(observed.events, shape.repeat_window)
        observed.drained = _drain(chat, client, len(slots), options.drain_timeout)
        sampler.finish()
        observed.elapsed = time.monotonic() - started
        observed.samples, observed.jobs = sampler.samples, sampler.jobs
        observed.entries = dict(sampler.entries)
        observed.sent = chat.sent()
        observed.ledger = _ledger(config.database_path)
        observed.restarts = {u: appliance.children[u].restarts for u in UNITS}
        if appliance.memory is not None:
            observed.oom_kills = {p: appliance.memory.oom_kills(p) for p in PROCESSES}
    finally:
        chat.close()
        client.close()
        appliance.stop()
        log.close()
        if appliance.memory is not None:
            left = appliance.memory.remove()
            observed.limits += f"; {left}" if left else ""
    return observed


def _import_feeds(world: World, database: Path, state: Path) -> None:
    db = open_database(database)
    try:
        for category, domains in (
            ("phishing", world.phishing),
            ("allow", world.allowed),
        ):
            path = state / f"soak-{category}.txt"
            head = f"# wabscan soak: invented {category} domains, from the seed\n"
            path.write_text(head + "\n".join(domains) + "\n", encoding="utf-8")
            import_feed(db, path, f"soak-{category}", category)
    finally:
        db.close()


def _wait_ready(appliance: LocalAppliance, timeout: float = 60.0) -> None:
    for unit in UNITS:
        host, port = appliance.address(unit)
        deadline = time.monotonic() + timeout
        while True:
            url = f"http://{host}:{port}/healthz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
                break
            if time.monotonic() > deadline:
                raise SoakError(f"soak: {unit} not ready after {timeout:.0f} s")
            time.sleep(0.1)


@dataclass
class _Posting:
    """Posts the traffic on its schedule, kills units when it says so."""

    appliance: LocalAppliance
    chat: LocalChat
    sampler: Sampler
    observed: Observed
    started: float
    progress: IO[str] | None

    def run(
        self, traffic: Traffic, progress_every: float, stop: threading.Event
    ) -> None:
        observed = self.observed
        next_line = progress_every
        for event in traffic:
            # Between two events, never during one: what was posted is
            # exactly what was recorded, so an early stop still balances.
            delay = self.started + event.at - time.monotonic()
            if stop.wait(max(delay, 0.0)):
                observed.interrupted = True
                break
            observed.late = max(observed.late, -delay)
            if event.kind == KILL:
                pid = self.appliance.pid(event.unit)
                self.appliance.kill(event.unit, signal.SIGKILL)
                observed.kills.append({"t": event.at, "unit": event.unit, "pid": pid})
            else:
                _post(self.chat, event, observed.posted)
            observed.next_seq = event.seq + 1
            if event.kind == MESSAGE and not event.links and not event.edited:
                observed.chatter += 1
                observed.chatter_in_bursts += event.burst
            else:
                observed.events.append(dataclasses.replace(event, text=""))
            if event.at >= next_line:
                self._line(event.at)
                next_line += progress_every
        observed.traffic_s = time.monotonic() - self.started

    def _line(self, at: float) -> None:
        with self.sampler.lock:
            samples = self.sampler.samples
            rss = " ".join(f"{p}={v[-1]:.0f}" for p, v in samples.rss_mb.items() if v)
            depth = sum(v[-1] for v in samples.depth.values() if v)
            used = samples.redis_used_mb[-1] if samples.redis_used_mb else 0.0
        sent = self.chat.db.execute("SELECT count(*) FROM sent").fetchone()[0]
        _say(
            self.progress,
            f"t={at:.0f}s events={self.observed.next_seq} replies={sent} "
            f"queued={depth} rss_mb {rss} redis_used_mb={used:.1f}",
        )


def _post(chat: LocalChat, event: Event, posted: dict[int, Posted]) -> None:
    now = datetime.now(UTC)
    if event.kind == JOIN:
        message_id = chat.add_bot(event.group, event.group)
    else:
        edited = posted[event.edit_of].message_id if event.kind == EDIT else None
        message_id = chat.post(
            event.group,
            event.sender,
            event.text,
            admin=event.admin,
            name=event.name,
            edit_of=edited,
            at=now,
        )
    # Chatter without links is never looked up again: not keeping it keeps
    # the harness small over days.
    if event.kind != MESSAGE or event.links or event.edited:
        posted[event.seq] = Posted(message_id, format_time(now), now.timestamp())


def _lift_mutes(
    world: World, chat: LocalChat, observed: Observed, started: float
) -> None:
    """A run cut short may leave a group muted: lift it, or the warnings it
    holds back would count as lost."""
    for group, periods in sorted(mute_periods(observed.events).items()):
        if periods[-1][1] == math.inf:
            admin = world.group(group).admins[0]
            event = Event(
                seq=observed.next_seq,
                at=round(time.monotonic() - started, 4),
                kind=COMMAND,
                group=group,
                sender=admin.phone,
                name=admin.name,
                admin=True,
                text="!wabscan unmute",
                command="unmute",
            )
            _post(chat, event, observed.posted)
            observed.events.append(event)
            observed.next_seq += 1


def _say(out: IO[str] | None, line: str) -> None:
    if out is not None:
        out.write(line + "\n")
        out.flush()


def _drain(chat: LocalChat, client: redis.Redis, expected: int, timeout: float) -> bool:
    """Wait until there are as many replies as expected, no queue holds
    anything, and nothing was sent for SETTLE_SECONDS; False after
    ``timeout``. Deferred warnings wait in SQLite, not in a queue: the count
    is what waits for them."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(TimeoutError):
        chat.wait_until_delivered(timeout)
    count, changed = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_count = int(chat.db.execute("SELECT count(*) FROM sent").fetchone()[0])
        if now_count != count:
            count, changed = now_count, time.monotonic()
        try:
            busy = any(
                sum(queue.depth_sync(client, stream, group).values())
                for stream, group in QUEUES
            )
        except redis.RedisError:
            busy = True
        if (
            not busy
            and count >= expected
            and time.monotonic() - changed > SETTLE_SECONDS
        ):
            return True
        time.sleep(0.2)
    return False


def _ledger(database: Path) -> dict[str, tuple[str, str]]:
    """The bridge's ledger, WhatsApp id -> (reply id, state): names the
    replies nobody expected, and those given up as in doubt."""
    db = open_database(database)
    try:
        rows = db.execute(
            "SELECT wa_message_id, reply, state FROM outbox_sent"
        ).fetchall()
    finally:
        db.close()
    return {str(wa): (str(reply), str(state)) for wa, reply, state in rows}


# -- the report -------------------------------------------------------------------


def build_report(
    options: SoakOptions,
    observed: Observed,
    limits_mb: Mapping[str, int],
    total_mb: int,
) -> dict[str, Any]:
    """The report: plain values from what the run observed (docs/soak.md
    describes each field)."""
    slots = expected_replies(observed.events, observed.repeat_window)
    replies, latency, series = _replies(observed, slots, observed.traffic_s)
    links = _links(observed)
    accounting = {**links, **replies}
    accounting["balanced"] = not (
        links["links_lost"]
        or links["verdicts_lost"]
        or links["jobs_unexpected"]
        or replies["replies_lost"]
        or replies["replies_doubled"]
        or replies["replies_unexpected"]
    )
    events = observed.events
    kinds = Counter(e.kind for e in events)
    posted_links = [x for e in events if e.kind in (MESSAGE, EDIT) for x in e.links]
    world = make_world(options.seed, options.shape.groups)
    kills = len(observed.kills)
    return {
        "format": REPORT_FORMAT,
        "run": {
            "seed": options.seed,
            "duration_s": options.duration,
            "chaos": options.shape.chaos_every > 0,
            "shape": {**asdict(options.shape), "repeat_window": observed.repeat_window},
            "started_at": observed.started_at,
            "elapsed_s": round(observed.elapsed, 1),
            "interrupted": observed.interrupted,
            "drained": observed.drained,
            "harness_late_max_s": round(observed.late, 3),
            # The harness' own peak memory: what a longer run will need.
            "harness_peak_rss_mb": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            ),
            "host": _host(),
        },
        "traffic": {
            "events": len(events) + observed.chatter,
            "messages": kinds[MESSAGE] + observed.chatter,
            "edits": kinds[EDIT],
            "commands": dict(
                sorted(Counter(e.command for e in events if e.command).items())
            ),
            "groups": len(world.groups),
            "groups_enabled": sum(g.enabled for g in world.groups),
            "members": len({p for g in world.groups for p in g.members}),
            "links": len(posted_links),
            "malicious_links": sum(x.malicious for x in posted_links),
            "burst_messages": sum(e.burst for e in events) + observed.chatter_in_bursts,
            "messages_per_s": round(
                (kinds[MESSAGE] + kinds[EDIT] + observed.chatter)
                / max(observed.traffic_s, 1.0),
                2,
            ),
        },
        "accounting": accounting,
        "latency_ms": {kind: percentiles(values) for kind, values in latency.items()},
        "memory": _memory(observed, limits_mb, total_mb),
        "restarts": {
            **observed.restarts,
            "kills": kills,
            "unplanned": max(0, sum(observed.restarts.values()) - kills),
        },
        "kills": observed.kills,
        "series": {
            "t": observed.samples.t,
            "rss_mb": observed.samples.rss_mb,
            "queue_depth": observed.samples.depth,
            "redis_used_mb": observed.samples.redis_used_mb,
            "redis_keys": observed.samples.redis_keys,
            "redis_evicted": observed.samples.redis_evicted,
            "latency": series,
        },
    }


def _replies(
    observed: Observed, slots: list[Slot], duration: float
) -> tuple[dict[str, Any], dict[str, list[float]], dict[str, Any]]:
    """The replies' accounting, the delays of the prompt ones by kind, and
    the series of warnings' and checks' delays over time."""
    by_seq = {e.seq: e for e in observed.events}
    sent = {m.wa_message_id: m for m in observed.sent}
    muted = mute_periods(observed.events)
    expected_wa: set[str] = set()
    kinds: dict[str, Counter[str]] = {}
    lost, doubled = [], []
    later = deferred = 0
    # The notices and "enable" answers of the first second leave together
    # (23 replies at once, one at a time through the bridge's outbox): they
    # say how fast a burst of replies drains, not how fast one is answered.
    latency: dict[str, list[float]] = {k: [] for k in (SETUP, ANSWER, CHECK, WARNING)}
    timed: list[tuple[float, float]] = []  # (posted at, ms) of warnings, checks
    for slot in slots:
        answered = []
        for seq in slot.candidates:
            wa = message_id_for(reply_id(slot.kind, by_seq[seq], observed.posted))
            expected_wa.add(wa)
            if wa in sent:
                answered.append((seq, sent[wa]))
        counts = kinds.setdefault(slot.kind, Counter())
        counts["expected"] += 1
        counts["sent"] += len(answered)
        label = f"{slot.kind} in {slot.group}, event {slot.candidates[0]}"
        if not answered:
            lost.append(label)
            continue
        if len(answered) > 1:
            doubled.append(label)
        seq, message = answered[0]
        later += seq != slot.candidates[0]
        event = by_seq[seq]
        if slot.kind == WARNING and _inside(muted.get(event.group, []), event.at):
            deferred += 1
            continue
        delay = (parse_time(message.at).timestamp() - observed.posted[seq].wall) * 1000
        latency[SETUP if event.at < SETUP_SECONDS else slot.kind].append(delay)
        if slot.kind in (WARNING, CHECK):
            timed.append((event.at, delay))
    unexpected = [
        {"reply": observed.ledger.get(m.wa_message_id, ("?", ""))[0], "group": m.group}
        for m in observed.sent
        if m.wa_message_id not in expected_wa
    ]
    abandoned = sorted(
        r for r, state in observed.ledger.values() if state == "abandoned"
    )
    accounting = {
        "replies_expected": len(slots),
        "replies_sent": len(observed.sent),
        "replies_lost": len(lost),
        "replies_doubled": len(doubled),
        "replies_unexpected": len(unexpected),
        "replies_resent_same_id": sum(m.attempts > 1 for m in observed.sent),
        "replies_abandoned": len(abandoned),
        "answered_a_later_repost": later,
        "warnings_deferred_by_mute": deferred,
        "by_kind": {k: dict(v) for k, v in sorted(kinds.items())},
        # The first 50 of each, to start looking.
        "lost": lost[:50],
        "doubled": doubled[:50],
        "unexpected": unexpected[:50],
        "abandoned": abandoned[:50],
    }
    return accounting, latency, _latency_series(timed, duration)


def _links(observed: Observed) -> dict[str, int]:
    """Every scan job the traffic calls for, seen (or not) on each stream."""
    expected: set[str] = set()
    enabled: set[str] = set()
    for event in observed.events:
        if event.command == "enable":
            enabled.add(event.group)
        scanned = event.kind == COMMAND or (
            event.kind in (MESSAGE, EDIT) and event.group in enabled
        )
        if scanned and event.seq in observed.posted:
            expected.update(job_ids(event, observed.posted))
    queued = observed.jobs.get(queue.SCAN, set())
    judged = observed.jobs.get(queue.VERDICT, set())
    return {
        "links_expected": len(expected),
        "links_queued": len(expected & queued),
        "links_lost": len(expected - queued),
        "verdicts_out": len(expected & judged),
        "verdicts_lost": len(expected - judged),
        "jobs_unexpected": len((queued | judged) - expected),
        "scan_entries": observed.entries.get(queue.SCAN, 0),
        "verdict_entries": observed.entries.get(queue.VERDICT, 0),
    }


def _inside(periods: Sequence[tuple[float, float]], at: float) -> bool:
    # A second either side: a message posted just before a mute may be
    # decided just after it.
    return any(start - 1 <= at <= end + 1 for start, end in periods)


def _latency_series(
    timed: list[tuple[float, float]], duration: float
) -> dict[str, Any]:
    """Delays in buckets of posting time, so a slow spell shows when it was."""
    bucket = max(10.0, duration / 120)
    grouped: dict[int, list[float]] = {}
    for at, delay in timed:
        grouped.setdefault(int(at // bucket), []).append(delay)
    series: dict[str, Any] = {
        "bucket_s": bucket,
        "t": [],
        "p50": [],
        "p95": [],
        "max": [],
    }
    for index in sorted(grouped):
        stats = percentiles(grouped[index])
        series["t"].append(index * bucket + bucket / 2)
        for key in ("p50", "p95", "max"):
            series[key].append(stats[key])
    return series


def _memory(
    observed: Observed,
    limits_mb: Mapping[str, int],
    total_mb: int,
) -> dict[str, Any]:
    """First and last minute of the traffic (a quarter of a short run): their
    medians, the growth between them, the peak."""
    end = observed.traffic_s
    window = min(60.0, end / 4)
    t = observed.samples.t
    units: dict[str, Any] = {}
    for process, values in observed.samples.rss_mb.items():
        first = [v for s, v in zip(t, values, strict=True) if s <= window and v]
        last = [
            v for s, v in zip(t, values, strict=True) if end - window <= s <= end and v
        ]
        units[process] = {
            "first_mb": _median(first),
            "last_mb": _median(last),
            "growth_mb": round(_median(last) - _median(first), 1),
            "peak_mb": max(values, default=0.0),
            "goal_mb": GOALS_MB[process],
            "memory_max_mb": limits_mb[process],
            "oom_kills": observed.oom_kills.get(process, 0),
        }
    totals = [sum(v) for v in zip(*observed.samples.rss_mb.values(), strict=True)]
    return {
        "window_s": window,
        "limits": observed.limits,
        "units": units,
        "redis_data": _redis_data(observed, window),
        "appliance": {
            "peak_mb": round(max(totals, default=0.0), 1),
            "goal_mb": APPLIANCE_GOAL_MB,
            "memory_max_mb": total_mb,
        },
    }


def _redis_data(observed: Observed, window: float) -> dict[str, Any]:
    """What Redis holds against its ``maxmemory``. Streams hold only work in
    flight; cached verdicts live for hours to days, so the data grows until
    ``maxmemory`` and from then on the least recently used cached verdicts
    are evicted (``volatile-lru``). The growth rate says when that starts."""
    t, used = observed.samples.t, observed.samples.redis_used_mb
    end = observed.traffic_s
    first = _median([u for s, u in zip(t, used, strict=True) if s <= window and u >= 0])
    last = _median(
        [u for s, u in zip(t, used, strict=True) if end - window <= s <= end and u >= 0]
    )
    limit = float(REDIS_MAXMEMORY.removesuffix("mb"))
    per_hour = (last - first) / max(end - window, 1.0) * 3600
    keys = [k for k in observed.samples.redis_keys if k >= 0]
    evicted = [k for k in observed.samples.redis_evicted if k >= 0]
    return {
        "first_mb": first,
        "last_mb": last,
        "peak_mb": max(used, default=0.0),
        "maxmemory_mb": limit,
        # From then on Redis evicts cached verdicts to take new writes.
        "reached_maxmemory": max(used, default=0.0) >= limit * 0.99,
        "growth_mb_per_hour": round(per_hour, 1),
        "hours_to_maxmemory": (
            round(max(0.0, limit - last) / per_hour, 1) if per_hour > 0 else None
        ),
        "keys_last": keys[-1] if keys else 0,
        "evicted_keys": evicted[-1] if evicted else 0,
    }


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """count, p50, p95, p99 and max, interpolating between ranks."""
    ordered = sorted(values)
    result: dict[str, float] = {"count": len(ordered)}
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        result[name] = round(_quantile(ordered, q), 1)
    result["max"] = round(ordered[-1], 1) if ordered else math.nan
    return result


def _quantile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _median(values: Sequence[float]) -> float:
    return round(_quantile(sorted(values), 0.5), 1) if values else 0.0


def _host() -> dict[str, Any]:
    import importlib.util

    return {
        "python": sys.executable,
        "python_version": platform.python_version(),
        # sqlite-utils imports numpy when it is there (+17 MB per unit); the
        # appliance has none.
        "numpy_installed": importlib.util.find_spec("numpy") is not None,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# -- the chart ----------------------------------------------------------------------

_COLOURS: Final = {
    "bridge": (31, 119, 180),
    "scanner": (255, 127, 14),
    "reporter": (44, 160, 44),
    "redis": (214, 39, 40),
    "redis data": (110, 0, 0),
    "p50": (31, 119, 180),
    "p95": (255, 127, 14),
    "max": (170, 170, 170),
    queue.SCAN: (148, 103, 189),
    queue.VERDICT: (140, 86, 75),
    queue.OUTBOX: (227, 119, 194),
}


def draw_chart(report: Mapping[str, Any], path: Path) -> tuple[str | None, str]:
    """Memory, latency and queue depth over time, as a PNG. Returns the
    file's name, or None and why there is no chart.

    Pillow draws it: neonize already depends on it, so any environment with
    the bridge has it. Without it, the run still writes its report.
    """
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return (
            None,
            "chart skipped: Pillow is not installed (pip install wabscan[soak])",
        )

    image = Image.new("RGB", (1200, 900), "white")
    draw = ImageDraw.Draw(image)
    try:
        font: Any = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: one bitmap font, one size
        font = ImageFont.load_default()
    run, series, a = report["run"], report["series"], report["accounting"]
    title = (
        f"wabscan soak  seed {run['seed']}  {_human(run['duration_s'])}  "
        f"{report['traffic']['messages_per_s']} msg/s"
        f"{'  chaos' if run['chaos'] else ''}   replies "
        f"{a['replies_sent']}/{a['replies_expected']}  lost "
        f"{a['replies_lost']}  doubled {a['replies_doubled']}"
    )
    draw.text((20, 12), title, fill="black", font=font)
    chart = _Chart(draw, font, max([*series["t"], run["duration_s"]]), report["kills"])

    rss = {**series["rss_mb"], "redis data": series["redis_used_mb"]}
    top = max(max(v, default=0.0) for v in [*rss.values(), GOALS_MB.values()])
    goals = {p: float(g) for p, g in GOALS_MB.items()}
    goals["redis data"] = report["memory"]["redis_data"]["maxmemory_mb"]
    chart.panel(
        45,
        345,
        "RSS per process, Redis used_memory (MB); dashed: goals, maxmemory",
        series["t"],
        rss,
        top,
        goals,
    )
    latency = series["latency"]
    lines = {k: latency[k] for k in ("p50", "p95", "max")}
    title = (
        f"post to reply (ms), warnings and checks, per {_human(latency['bucket_s'])} "
        "of posting time (max clipped)"
    )
    top = max(latency["p95"], default=10.0) * 1.5
    chart.panel(395, 645, title, latency["t"], lines, top)
    depth = {s: [max(0, d) for d in v] for s, v in series["queue_depth"].items()}
    top = max([10, *(max(v, default=0) for v in depth.values())])
    chart.panel(695, 860, "queue depth (entries)", series["t"], depth, top)
    image.save(path, "PNG", optimize=True)
    return path.name, ""


@dataclass
class _Chart:
    """Panels sharing one time axis, with the kills marked across them."""

    draw: Any
    font: Any
    span: float
    kills: Sequence[Mapping[str, Any]]
    left: int = 70
    right: int = 1030

    def panel(
        self,
        upper: int,
        lower: int,
        title: str,
        xs: Sequence[float],
        lines: Mapping[str, Sequence[float]],
        top: float,
        goals: Mapping[str, float] | None = None,
    ) -> None:
        draw, font, left, right = self.draw, self.font, self.left, self.right
        top = max(top * 1.1, 1.0)

        def x_of(t: float) -> float:
            return left + (right - left) * min(t, self.span) / self.span

        def y_of(v: float) -> float:
            return lower - (lower - upper) * min(max(v, 0.0), top) / top

        draw.text((left, upper - 20), title, fill="black", font=font)
        draw.rectangle((left, upper, right, lower), outline=(120, 120, 120))
        for value in _ticks(top):
            draw.line([(left, y_of(value)), (right, y_of(value))], fill=(235, 235, 235))
            draw.text(
                (left - 8, y_of(value)),
                f"{value:g}",
                fill="black",
                font=font,
                anchor="rm",
            )
        for value in _ticks(self.span, times=True):
            x = x_of(value)
            draw.line([(x, lower), (x, lower + 4)], fill="black")
            draw.text(
                (x, lower + 6), _human(value), fill="black", font=font, anchor="mt"
            )
        for name, goal in (goals or {}).items():
            for x in range(left, right, 12):
                draw.line(
                    [(x, y_of(goal)), (min(x + 6, right), y_of(goal))],
                    fill=_COLOURS[name],
                )
        for kill in self.kills:
            x = x_of(kill["t"])
            for y in range(upper, lower, 8):
                draw.line([(x, y), (x, min(y + 4, lower))], fill=(200, 0, 0))
            draw.text(
                (x + 3, upper + 2), f"kill {kill['unit']}", fill=(200, 0, 0), font=font
            )
        for row, (name, values) in enumerate(lines.items()):
            points = [(x_of(t), y_of(v)) for t, v in zip(xs, values, strict=False)]
            if len(points) > 1:
                draw.line(points, fill=_COLOURS[name], width=2)
            elif points:  # one bucket: a dot
                px, py = points[0]
                draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=_COLOURS[name])
            key = upper + 4 + row * 18
            draw.line(
                [(right + 12, key + 7), (right + 32, key + 7)],
                fill=_COLOURS[name],
                width=3,
            )
            label = name.removeprefix("wabscan:")
            draw.text((right + 38, key), label, fill="black", font=font)


def _ticks(top: float, times: bool = False) -> list[float]:
    """Round values from 0 to ``top``, five to ten of them; whole minutes,
    hours or days for a long time axis."""
    steps: list[float] = [m * 10**e for e in range(-1, 7) for m in (1, 2, 2.5, 5)]
    if times and top > 300:
        steps = [60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400]
    step = next((s for s in steps if top / s <= 8), steps[-1])
    return [i * step for i in range(int(top / step) + 1)]


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 60:.0f}m" if seconds >= 600 else f"{seconds:g}s"


# -- reading reports -------------------------------------------------------------


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """What to read first: the accounting, latency, memory and restarts."""
    run, a, memory = report["run"], report["accounting"], report["memory"]
    restarts = report["restarts"]
    lines = [
        f"soak seed={run['seed']} duration={_human(run['duration_s'])} "
        f"chaos={'yes' if run['chaos'] else 'no'} "
        f"balanced={'yes' if a['balanced'] else 'NO'} "
        f"drained={'yes' if run['drained'] else 'NO'}",
        f"links expected={a['links_expected']} queued={a['links_queued']} "
        f"verdicts={a['verdicts_out']} lost={a['links_lost'] + a['verdicts_lost']} "
        f"unexpected={a['jobs_unexpected']}",
        f"replies expected={a['replies_expected']} sent={a['replies_sent']} "
        f"lost={a['replies_lost']} doubled={a['replies_doubled']} "
        f"unexpected={a['replies_unexpected']} resent-same-id="
        f"{a['replies_resent_same_id']} deferred-by-mute="
        f"{a['warnings_deferred_by_mute']}",
    ]
    for kind, s in report["latency_ms"].items():
        if s["count"]:
            lines.append(
                f"latency {kind:8} n={s['count']:<6} p50={s['p50']} p95={s['p95']} "
                f"p99={s['p99']} max={s['max']} ms"
            )
    for process, m in memory["units"].items():
        lines.append(
            f"rss {process:8} first={m['first_mb']} last={m['last_mb']} "
            f"growth={m['growth_mb']:+} peak={m['peak_mb']} goal={m['goal_mb']} "
            f"max={m['memory_max_mb']} MB oom_kills={m['oom_kills']}"
        )
    data = memory["redis_data"]
    lines.append(
        f"redis used_memory first={data['first_mb']} last={data['last_mb']} "
        f"maxmemory={data['maxmemory_mb']} MB, {data['growth_mb_per_hour']:+} MB/h, "
        f"hours to maxmemory={data['hours_to_maxmemory']} keys={data['keys_last']} "
        f"evicted={data['evicted_keys']}"
        + (" REACHED maxmemory" if data["reached_maxmemory"] else "")
    )
    lines.append(
        f"rss appliance peak={memory['appliance']['peak_mb']} MB "
        f"goal={memory['appliance']['goal_mb']}; limits: {memory['limits']}"
    )
    lines.append(
        "restarts "
        + " ".join(f"{u}={restarts[u]}" for u in UNITS)
        + f" kills={restarts['kills']} unplanned={restarts['unplanned']}"
    )
    lines.append(
        f"chart {report['chart']}" if report["chart"] else report["chart_note"]
    )
    return lines


# (label, path in the report)
_COMPARED: Final = (
    ("balanced", ("accounting", "balanced")),
    ("messages/s", ("traffic", "messages_per_s")),
    ("replies expected", ("accounting", "replies_expected")),
    ("replies lost", ("accounting", "replies_lost")),
    ("replies doubled", ("accounting", "replies_doubled")),
    ("links lost", ("accounting", "links_lost")),
    ("warning p50 ms", ("latency_ms", "warning", "p50")),
    ("warning p95 ms", ("latency_ms", "warning", "p95")),
    ("warning p99 ms", ("latency_ms", "warning", "p99")),
    *((f"{p} RSS last MB", ("memory", "units", p, "last_mb")) for p in PROCESSES),
    *((f"{p} RSS growth MB", ("memory", "units", p, "growth_mb")) for p in PROCESSES),
    ("appliance RSS peak MB", ("memory", "appliance", "peak_mb")),
    ("Redis used_memory MB/h", ("memory", "redis_data", "growth_mb_per_hour")),
    ("Redis used_memory peak MB", ("memory", "redis_data", "peak_mb")),
    ("Redis evicted keys", ("memory", "redis_data", "evicted_keys")),
    ("unplanned restarts", ("restarts", "unplanned")),
)


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Two reports side by side, with B's change from A."""
    lines = [f"{'measure':24} {'A':>10} {'B':>10} {'B - A':>10}"]
    for label, path in _COMPARED:
        first, second = _dig(a, path), _dig(b, path)
        numbers = all(
            isinstance(v, int | float) and not isinstance(v, bool)
            for v in (first, second)
        )
        change = f"{second - first:+.1f}" if numbers else ""
        lines.append(f"{label:24} {first!s:>10} {second!s:>10} {change:>10}".rstrip())
    # Kills draw from their own stream: with or without, the traffic is the same.
    shapes = [_dig(r, ("run", "shape")) for r in (a, b)]
    shapes = [
        {k: v for k, v in shape.items() if k != "chaos_every"}
        if isinstance(shape, Mapping)
        else shape
        for shape in shapes
    ]
    same = _dig(a, ("run", "seed")) == _dig(b, ("run", "seed")) and (
        shapes[0] == shapes[1]
    )
    lines.append(f"same traffic: {'yes' if same else 'no (seed or shape differ)'}")
    return lines


def _dig(report: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = report
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return "-"
        value = value[key]
    return value


# -- command line (python -m wabscan.soak) ------------------------------------------


def run_interactive(options: SoakOptions) -> int:
    """Run a soak from a command line: progress on stderr, the summary on
    stdout; exit status 1 if the accounting does not balance.

    SIGTERM or Ctrl-C ends the traffic early; the appliance drains and the
    report is written all the same (a second one stops the drain too). A
    shell starts background jobs with SIGINT ignored; this undoes that.

    Raises:
        SoakError: a unit did not become ready.
    """
    stop = threading.Event()

    def interrupt(number: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("stopping: no more traffic; draining", file=sys.stderr)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    report = run_soak(options, progress=sys.stderr, stop=stop)
    print("\n".join(summary_lines(report)))
    print(f"report {options.out / 'soak.json'}")
    return 0 if report["accounting"]["balanced"] else 1


def compare_files(first: Path, second: Path) -> str:
    """``compare`` of two ``soak.json`` files, as text to print.

    Raises:
        InputError: a file that is not a soak report.
    """
    reports = []
    for path in (first, second):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(str(path), f"not a soak report: {exc}") from None
        if not isinstance(report, dict) or "accounting" not in report:
            raise InputError(str(path), "not a soak report (no accounting)")
        reports.append(report)
    return "\n".join(compare(*reports))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m wabscan.soak [options]`` is ``wabscan soak [options]``;
    ``python -m wabscan.soak compare A B`` is ``wabscan soak-compare A B``."""
    from wabscan import cli

    args = list(sys.argv[1:] if argv is None else argv)
    args = ["soak-compare", *args[1:]] if args[:1] == ["compare"] else ["soak", *args]
    sys.argv = ["wabscan", *args]
    cli.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
