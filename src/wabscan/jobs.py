"""The entries that travel on the Redis streams between the units.

Redis stream fields are flat strings; these dataclasses are the one place
that says what each stream carries, so that the bridge, the scanner and the
reporter cannot drift apart.

- ``scan`` (bridge, reporter -> scanner): one :class:`ScanJob` per link.
- ``verdict`` (scanner -> reporter): the job's fields plus the verdict.
- ``outbox`` (reporter, bridge -> bridge): one :class:`OutboxMessage` per reply.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from wabscan.verdict import Level

# Why a link is being scanned; the reply policy differs for each.
KIND_MESSAGE = "message"  # a link in a group message
KIND_EDIT = "edit"  # a link in an edited message
KIND_CHECK = "check"  # "!wabscan check URL" from an admin: always answered
KIND_RESCAN = "rescan"  # asked through the control API: bypasses the cache


@dataclass(frozen=True, slots=True)
class ScanJob:
    """One link of one message, to be judged.

    Attributes:
        job: unique id, ``<group>/<message>/<index>``; the natural key of the
            job everywhere it is written.
        kind: one of the ``KIND_*`` constants.
        group: the group's JID (empty for a rescan).
        message: WhatsApp's id of the message (empty for a rescan).
        sender: keyed hash of the sender (never the JID or phone number).
        url: the link, refanged, as found in the text.
        index: the link's position among the message's links (0-based).
        count: how many links the message had, so that the reporter knows
            when it has every verdict for the message.
        at: when the message was sent, ISO-8601 UTC.
    """

    job: str
    kind: str
    group: str
    message: str
    sender: str
    url: str
    index: int
    count: int
    at: str

    def to_fields(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_fields(cls, data: dict[str, str]) -> ScanJob:
        values: dict[str, str | int] = {
            f.name: data.get(f.name, "") for f in fields(cls)
        }
        values["index"] = int(data.get("index") or 0)
        values["count"] = int(data.get("count") or 1)
        return cls(**values)  # type: ignore[arg-type]

    @staticmethod
    def make_id(group: str, message: str, index: int) -> str:
        return f"{group}/{message}/{index}"


@dataclass(frozen=True, slots=True)
class VerdictMessage:
    """A job with its verdict, as the scanner publishes it.

    ``level`` is None when the URL could not be parsed (``error`` says why);
    the reporter counts such a link as judged and says nothing about it.
    """

    job: ScanJob
    canonical: str
    level: Level | None
    score: float
    reasons: tuple[str, ...]
    error: str = ""

    @classmethod
    def from_fields(cls, data: dict[str, str]) -> VerdictMessage:
        verdict = data.get("verdict")
        return cls(
            job=ScanJob.from_fields(data),
            canonical=data.get("canonical", ""),
            level=Level(verdict) if verdict else None,
            score=float(data.get("score") or 0),
            reasons=tuple(json.loads(data.get("reasons") or "[]")),
            error=data.get("error", ""),
        )


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message for the bridge to send to a group.

    Attributes:
        reply: unique id; the bridge sends each id at most once.
        group: the group's JID.
        quote: id of the message to quote, or empty.
        text: what to send (links in it already defanged).
        kind: ``warning``, ``correction``, ``notice`` or ``command``.
    """

    reply: str
    group: str
    quote: str
    text: str
    kind: str

    def to_fields(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_fields(cls, data: dict[str, str]) -> OutboxMessage:
        return cls(**{f.name: data.get(f.name, "") for f in fields(cls)})
