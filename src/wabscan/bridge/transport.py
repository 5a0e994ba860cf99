"""What the bridge needs from a WhatsApp transport, and what both share.

Two transports exist: ``whatsapp`` (neonize) and ``local`` (a SQLite file
that a test, the demo or a soak run writes messages into). Both translate
what they receive into :class:`~wabscan.bridge.events.InboundMessage` and
hand it to the same inbound path, and both send what the outbox path gives
them; nothing past this interface knows which one is running.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final, Generic, Protocol, TypeVar

import trio

from wabscan.bridge.events import GroupJoined, InboundMessage
from wabscan.bridge.session import Session

T = TypeVar("T")

# Enough to quote a reply to any message of the last hour in a busy
# appliance (the reporter answers within seconds; quiet hours and mutes defer
# longer, and a deferred reply then goes out without a quote).
RECENT_MESSAGES: Final = 4096


class SendFailed(Exception):
    """WhatsApp did not take the message (not in the group, not connected...).

    Args:
        reason: a short reason for the log, never the text.
        permanent: retrying will not help (the bot left the group).
    """

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class InboundSink(Protocol):
    """Where a transport hands what it received; each call returns only once
    what it was given is durable (in Redis or the spool)."""

    async def accept(self, messages: Sequence[InboundMessage]) -> None: ...

    async def joined(self, event: GroupJoined) -> None: ...


class Transport(Protocol):
    """A connection to WhatsApp (or its stand-in).

    Attributes:
        name: ``whatsapp`` or ``local``.
        custom_ids: :meth:`send` uses the message id it is given, so that
            WhatsApp (or the stand-in) drops a second message with the same
            id; a resend after a crash is then harmless.
    """

    name: str
    custom_ids: bool

    async def run(
        self,
        sink: InboundSink,
        session: Session,
        stopping: trio.Event,
        beat: Callable[[], None],
    ) -> None:
        """Receive until ``stopping`` is set; keep ``session`` up to date.

        Raises:
            SessionLost: the connection could not be kept within
                ``bridge.max_reconnects`` attempts (the unit exits non-zero).
        """
        ...

    async def send(self, group: str, text: str, *, quote: str, message_id: str) -> str:
        """Send ``text`` to ``group``, quoting message ``quote`` if it is
        still known; returns WhatsApp's id of the message sent.

        Raises:
            SendFailed: it was not sent.
        """
        ...

    async def is_admin(self, group: str, sender_jid: str, sender_pn: str) -> bool:
        """Whether the sender is an admin of the group."""
        ...


class SessionLost(Exception):
    """The WhatsApp connection failed more often than ``bridge.max_reconnects``
    allows; systemd restarts the unit (each failed connect leaks memory and a
    file descriptor in neonize, FIELD-NOTES, so retrying forever in-process
    is not an option)."""


def message_id_for(reply: str) -> str:
    """The WhatsApp message id the bridge gives a reply: derived from the
    reply's id, so a resend carries the same id. Shaped like the ids
    whatsmeow generates (``3EB0`` and upper-case hex)."""
    return "3EB0" + hashlib.sha256(reply.encode("utf-8")).hexdigest()[:20].upper()


class RecentMessages(Generic[T]):
    """What the bridge needs to quote recent messages, by group and id,
    bounded: the oldest are forgotten first. In memory only, because for
    neonize it is the message itself, body included, which is never stored.
    """

    def __init__(self, limit: int = RECENT_MESSAGES) -> None:
        self.limit = limit
        self._items: OrderedDict[tuple[str, str], T] = OrderedDict()

    def put(self, group: str, message_id: str, value: T) -> None:
        key = (group, message_id)
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def get(self, group: str, message_id: str) -> T | None:
        return self._items.get((group, message_id))

    def __len__(self) -> int:
        return len(self._items)
