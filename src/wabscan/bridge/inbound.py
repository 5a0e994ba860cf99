"""The inbound path: group messages become scan jobs, commands are carried out.

Both transports call :meth:`Inbound.accept` with what they received and
wait for it: it returns only once every job (and every reply to a command)
is durable, in Redis or in the spool. For each message:

- the bot's own messages are ignored;
- ``!wabscan ...`` from a group admin is a command (see ``commands``); from
  anyone else it is ignored, so the bot cannot be made to talk by members;
- in a group where checking is on, every link becomes one
  :class:`~wabscan.jobs.ScanJob` (kind ``message``, or ``edit`` for an edit,
  which is scanned again under the original message's id). The sender is a
  keyed hash of the phone JID (or of the ``@lid`` JID when no phone JID is
  known); the text itself goes nowhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from wabscan import queue
from wabscan.bridge import groups
from wabscan.bridge.commands import HELP_TEXT, Command, CommandError, parse_command
from wabscan.bridge.events import GroupJoined, InboundMessage
from wabscan.bridge.metrics import BridgeMetrics
from wabscan.bridge.spool import Entry, Spool
from wabscan.config import Config
from wabscan.jobs import KIND_CHECK, KIND_EDIT, KIND_MESSAGE, OutboxMessage, ScanJob
from wabscan.links import extract_links
from wabscan.privacy import author_hash
from wabscan.scanner.canonical import without_password
from wabscan.serial import SerialDatabase
from wabscan.storage import format_time, utc_now

log = logging.getLogger(__name__)

# How long the bridge trusts what it read about a group's settings; the
# control API may change them from another process meanwhile.
SETTINGS_TTL: Final = 5.0

AdminCheck = Callable[[InboundMessage], Awaitable[bool]]


def scan_jobs(
    message: InboundMessage,
    key: bytes,
    *,
    max_links: int = 20,
    max_url_length: int = 2048,
) -> list[ScanJob]:
    """One scan job per link of a message (none when it has no link).

    The ``job`` id of an edit carries the edit's own id, so that it is a new
    job next to the original's; ``message`` stays the original's id, which a
    reply quotes, and ``at`` is the time of the edit.
    """
    found = extract_links(
        message.text, max_links=max_links, max_url_length=max_url_length
    )
    if not found.links:
        return []
    kind = KIND_EDIT if message.edited else KIND_MESSAGE
    ident = message.message_id
    if message.edited:
        edit = message.edit_id or str(int(message.at.timestamp() * 1000))
        ident = f"{message.message_id}/edit-{edit}"
    sender = author_hash(key, message.author)
    at = format_time(message.at)
    count = len(found.links)
    return [
        ScanJob(
            job=ScanJob.make_id(message.group, ident, index),
            kind=kind,
            group=message.group,
            message=message.message_id,
            sender=sender,
            # No password of a link ever reaches Redis (its AOF) or SQLite.
            url=without_password(link.url),
            index=index,
            count=count,
            at=at,
        )
        for index, link in enumerate(found.links)
    ]


def command_reply_id(group: str, message_id: str) -> str:
    return f"command/{group}/{message_id}"


def join_notice_id(group: str, key: str) -> str:
    return f"notice/{group}/join/{key}"


@dataclass
class _Cached:
    settings: groups.GroupSettings
    read_at: float


class Inbound:
    """The inbound path of one bridge.

    Args:
        config: the configuration (link limits, ``bridge.scan_on_join``).
        shared: the bridge's database.
        spool: where entries are made durable.
        key: the installation's author key.
        metrics: the bridge's metrics.
        is_admin: looks up whether a message's sender is a group admin when
            the transport did not say (``sender_is_admin`` is None).
        session_state: the session's state, for ``!wabscan status``.
    """

    def __init__(
        self,
        config: Config,
        shared: SerialDatabase,
        spool: Spool,
        key: bytes,
        metrics: BridgeMetrics,
        is_admin: AdminCheck,
        session_state: Callable[[], str],
    ) -> None:
        self.config = config
        self.shared = shared
        self.spool = spool
        self.key = key
        self.metrics = metrics
        self.is_admin = is_admin
        self.session_state = session_state
        self._settings: dict[str, _Cached] = {}

    async def accept(self, messages: Sequence[InboundMessage]) -> None:
        """Turn ``messages`` into jobs and command replies; returns once they
        are durable."""
        entries: list[Entry] = []
        for message in messages:
            if message.from_me:
                self.metrics.messages.labels("own").inc()
                continue
            command = None if message.edited else parse_command(message.text)
            if command is not None:
                # What came before the command is made durable first: the
                # command may turn checking off, and a crash after it must
                # not find those links unqueued and the group disabled.
                await self._put(entries)
                entries = []
                await self._put(await self._command(message, command))
                continue
            settings = await self._group(message.group, message.group_name)
            if not settings.enabled:
                self.metrics.messages.labels("disabled").inc()
                continue
            jobs = scan_jobs(
                message,
                self.key,
                max_links=self.config.links.max_per_message,
                max_url_length=self.config.links.max_url_length,
            )
            outcome = ("edit" if message.edited else "message") if jobs else "no-links"
            self.metrics.messages.labels(outcome).inc()
            if jobs:
                # The message id is what the scanner's, the reporter's and the
                # outbox's lines share (docs/operations.md).
                log.info(
                    "links-queued group=%s message=%s links=%d",
                    message.group,
                    message.message_id,
                    len(jobs),
                )
            entries.extend((queue.SCAN, job.to_fields()) for job in jobs)
        await self._put(entries)

    async def joined(self, event: GroupJoined) -> None:
        """The bot was added to a group: record it and post the notice."""
        enabled = self.config.bridge.scan_on_join
        # Without an id for the join (neonize gives none for some kinds), at
        # most one notice a day: a join delivered twice is not noticed twice.
        key = event.key or f"day-{event.at:%Y-%m-%d}"
        first = await self.shared.run(
            groups.record_join, event.group, event.name, key, enabled, event.at
        )
        self._settings.pop(event.group, None)
        log.info(
            "group-joined group=%s first=%s enabled=%s", event.group, first, enabled
        )
        if not first:
            return
        tail = groups.JOIN_NOTICE_ON if enabled else groups.JOIN_NOTICE_OFF
        notice = OutboxMessage(
            reply=join_notice_id(event.group, key),
            group=event.group,
            quote="",
            text=f"{groups.JOIN_NOTICE}\n{tail}",
            kind="notice",
        )
        await self.spool.put([(queue.OUTBOX, notice.to_fields())])

    async def _put(self, entries: list[Entry]) -> None:
        if not entries:
            return
        await self.spool.put(entries)
        self.metrics.links.inc(sum(1 for stream, _ in entries if stream == queue.SCAN))

    async def _group(self, jid: str, name: str) -> groups.GroupSettings:
        cached = self._settings.get(jid)
        now = time.monotonic()
        if cached is not None and now - cached.read_at < SETTINGS_TTL:
            return cached.settings
        settings = await self.shared.run(
            groups.ensure_group, jid, name, self.config.bridge.scan_on_join, utc_now()
        )
        self._settings[jid] = _Cached(settings, now)
        return settings

    async def _command(
        self, message: InboundMessage, command: Command | CommandError
    ) -> list[Entry]:
        admin = message.sender_is_admin
        if admin is None:
            admin = await self.is_admin(message)
        name = command.name if isinstance(command, Command) else "invalid"
        if not admin:
            self.metrics.messages.labels("command-refused").inc()
            log.info("command-refused group=%s command=%s", message.group, name)
            return []
        self.metrics.messages.labels("command").inc()
        actor = author_hash(self.key, message.author)
        log.info("command group=%s command=%s admin=%s", message.group, name, actor)

        if isinstance(command, CommandError):
            return [self._reply(message, command.message)]
        if command.name == "check":
            job = ScanJob(
                job=ScanJob.make_id(message.group, message.message_id, 0),
                kind=KIND_CHECK,
                group=message.group,
                message=message.message_id,
                sender=actor,
                url=command.url,
                index=0,
                count=1,
                at=format_time(message.at),
            )
            # The reporter answers a check whatever the verdict.
            return [(queue.SCAN, job.to_fields())]
        if command.name == "help":
            return [self._reply(message, HELP_TEXT)]
        if command.name == "status":
            return [self._reply(message, await self._status(message.group))]

        reply = await self.shared.run(
            groups.apply_command,
            message.group,
            message.message_id,
            command,
            actor,
            self.config.bridge.scan_on_join,
            message.at,
        )
        self._settings.pop(message.group, None)
        if reply is None:
            log.info("command-repeated group=%s command=%s", message.group, name)
            return []
        return [self._reply(message, reply)]

    async def _status(self, group: str) -> str:
        now = utc_now()
        settings = await self.shared.run(groups.get_group, group)
        links = await self.shared.run(
            groups.links_checked, group, now - timedelta(hours=24)
        )
        return groups.status_text(
            settings, self.config.bridge.scan_on_join, links, self.session_state(), now
        )

    def _reply(self, message: InboundMessage, text: str) -> Entry:
        reply = OutboxMessage(
            reply=command_reply_id(message.group, message.message_id),
            group=message.group,
            quote=message.message_id,
            text=text,
            kind="command",
        )
        return (queue.OUTBOX, reply.to_fields())
