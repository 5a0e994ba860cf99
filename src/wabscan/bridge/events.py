"""WhatsApp's events, translated into the bridge's own small values.

neonize hands the bridge protobufs (``neonize.proto.Neonize_pb2``): a
``Message`` event wraps whatsmeow's ``MessageInfo`` and the ``waE2E``
message, whose text may sit in a dozen places. The functions here read them
and return :class:`InboundMessage`, :class:`GroupJoined` or
:class:`SessionEvent`, or None for what the bridge does not act on. They are
pure: no I/O, no neonize import (they only read attributes, so the local
transport and the tests use them without loading the Go library, which
costs 40-50 MB, FIELD-NOTES).

What counts as a message the bridge reads:

- group chats only (``...@g.us``); direct chats, status updates and
  newsletters are not scanned;
- text from ``conversation``, ``extendedTextMessage.text`` and the captions
  of images, videos and documents, looking through the wrappers WhatsApp
  puts around them (ephemeral, view-once, document-with-caption, edited,
  device-sent);
- an edit (``protocolMessage`` of type ``MESSAGE_EDIT``) is read as the new
  text of the original message: ``message_id`` is the original's id, so a
  reply quotes what the group sees, and ``edit_id`` is the edit's own;
- an empty body, a reaction, a revoke, a sticker, a poll and every other
  kind give None, without error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

# neonize's protobuf classes are generated code without type information;
# the translators read their attributes, so they take them as Any.
Proto = Any

GROUP_SERVER: Final = "g.us"
PHONE_SERVER: Final = "s.whatsapp.net"
LID_SERVER: Final = "lid"

# Wrappers whose inner ``.message`` holds the real content. whatsmeow
# unwraps most of them before neonize sees the event (``UnwrapRaw``), but
# not all versions do all, and a test or a history sync may carry them.
_WRAPPERS: Final = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "editedMessage",
    "deviceSentMessage",
    "botInvokeMessage",
    "groupMentionedMessage",
    "associatedChildMessage",
)
_CAPTIONED: Final = ("imageMessage", "videoMessage", "documentMessage")
_MAX_DEPTH: Final = 6  # wrappers nest two or three deep at most

# Session events: the kinds :class:`SessionEvent` carries.
CONNECTED: Final = "connected"
DISCONNECTED: Final = "disconnected"
LOGGED_OUT: Final = "logged-out"
CLIENT_OUTDATED: Final = "client-outdated"
TEMPORARY_BAN: Final = "temporary-ban"
KEEPALIVE_TIMEOUT: Final = "keepalive-timeout"
KEEPALIVE_RESTORED: Final = "keepalive-restored"
CONNECT_FAILED: Final = "connect-failed"
STREAM_REPLACED: Final = "stream-replaced"
PAIRING: Final = "pairing"  # a QR code was offered: there is no session
PAIRED: Final = "paired"

# ConnectFailure / LoggedOut reasons (whatsmeow's ConnectFailureReason, as
# neonize names them) that mean the session is gone for good.
_LOGOUT_REASONS: Final = frozenset(
    {"LOGGED_OUT", "MAIN_DEVICE_GONE", "UNKNOWN_LOGOUT", "BAD_USER_AGENT"}
)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One group message (or one edit of it), as every transport gives it.

    Attributes:
        group: the group's JID, ``<id>@g.us``.
        message_id: WhatsApp's id of the message; for an edit, the id of the
            message that was edited (what a reply quotes).
        sender_jid: the sender as WhatsApp addressed it, without device:
            ``<number>@s.whatsapp.net`` or ``<lid>@lid``.
        sender_pn: the sender's phone JID when known (an ``@lid`` sender
            mapped through the session's store), else empty.
        sender_is_admin: whether the sender is a group admin, when the
            transport knows it with the message; None to look it up.
        text: the text or caption (never stored, never logged).
        at: when the message (or the edit) was sent.
        edited: this is an edit; ``text`` is the new text.
        edit_id: the edit's own message id (empty when not an edit).
        from_me: sent by the bridge's own account (ignored).
        group_name: the group's subject when the transport knows it.
    """

    group: str
    message_id: str
    sender_jid: str
    sender_pn: str
    sender_is_admin: bool | None
    text: str
    at: datetime
    edited: bool = False
    edit_id: str = ""
    from_me: bool = False
    group_name: str = ""

    @property
    def author(self) -> str:
        """The id hashed into a scan job: the phone JID when known, else the
        JID WhatsApp gave (so one person posting as ``@lid`` before the
        mapping is known and as a phone JID after gets two pseudonyms)."""
        return self.sender_pn or self.sender_jid


@dataclass(frozen=True, slots=True)
class GroupJoined:
    """The bridge's account was added to a group (or joined one).

    Attributes:
        group: the group's JID.
        name: its subject, possibly empty.
        key: an id of this join, stable if the event is delivered twice,
            so that the notice posted for it is sent once.
        at: when the bridge saw it.
    """

    group: str
    name: str
    key: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """Something that changes the state of the WhatsApp session.

    Attributes:
        kind: one of the module's constants (``connected``, ``logged-out``...).
        detail: a reason code or name for the log (never a secret).
        count: for ``keepalive-timeout``, how many keep-alives failed in a row.
    """

    kind: str
    detail: str = ""
    count: int = 0


def jid_string(jid: Proto) -> str:
    """``user@server`` for a neonize ``JID``, without the device part; empty
    for an unset JID."""
    user = str(jid.User or "")
    server = str(jid.Server or "")
    if not user or not server:
        return ""
    return f"{user}@{server}"


def message_text(message: Proto) -> str:
    """The text or caption of a ``waE2E.Message``; empty when it has none."""
    return _text(message, 0)


def translate_message(
    event: Proto, pn_for_lid: Callable[[str], str] | None = None
) -> InboundMessage | None:
    """Read a neonize ``MessageEv`` (``Neonize_pb2.Message``).

    Args:
        event: the event as neonize delivered it (or as a test built it).
        pn_for_lid: looks up the phone JID of an ``...@lid`` sender in the
            session's store (``NewClient.get_pn_from_lid``); returns an empty
            string when unknown. Not called when the event carries the phone
            JID itself (``SenderAlt``).

    Returns:
        The message, or None when it is not a group message with text.
    """
    info = event.Info
    source = info.MessageSource
    group = jid_string(source.Chat)
    if not source.IsGroup or not group.endswith("@" + GROUP_SERVER):
        return None

    body = _unwrap(event.Message)
    message_id = str(info.ID)
    edit_id = ""
    edited = False
    if body.HasField("protocolMessage"):
        protocol = body.protocolMessage
        if protocol.type != protocol.MESSAGE_EDIT or not protocol.key.ID:
            return None  # a revoke, an ephemeral setting, a key share...
        edited = True
        edit_id = message_id
        message_id = str(protocol.key.ID)
        body = protocol.editedMessage

    text = message_text(body)
    if not text.strip() or not message_id:
        return None

    sender = jid_string(source.Sender)
    return InboundMessage(
        group=group,
        message_id=message_id,
        sender_jid=sender,
        sender_pn=_phone_jid(sender, source, pn_for_lid),
        sender_is_admin=None,
        text=text,
        at=_at(info.Timestamp),
        edited=edited or bool(event.IsEdit),
        edit_id=edit_id,
        from_me=bool(source.IsFromMe),
    )


def translate_joined(event: Proto, now: datetime | None = None) -> GroupJoined | None:
    """Read a neonize ``JoinedGroupEv``; None when it names no group."""
    info = event.GroupInfo
    group = jid_string(info.JID)
    if not group.endswith("@" + GROUP_SERVER):
        return None
    key = str(event.CreateKey or info.ParticipantVersionID or "")
    return GroupJoined(
        group=group,
        name=str(info.GroupName.Name or ""),
        key=key,
        at=now or datetime.now(UTC),
    )


def translate_session(event: Proto) -> SessionEvent | None:
    """Read a session event (``ConnectedEv``, ``LoggedOutEv``...) by its
    protobuf type; None for one that does not change the session state."""
    name = event.DESCRIPTOR.name
    if name == "Connected":
        return SessionEvent(CONNECTED)
    if name == "Disconnected":
        return SessionEvent(DISCONNECTED)
    if name == "KeepAliveTimeout":
        return SessionEvent(KEEPALIVE_TIMEOUT, count=int(event.ErrorCount))
    if name == "KeepAliveRestored":
        return SessionEvent(KEEPALIVE_RESTORED)
    if name == "ClientOutdated":
        return SessionEvent(CLIENT_OUTDATED, "405")
    if name == "StreamReplaced":
        return SessionEvent(STREAM_REPLACED)
    if name == "TemporaryBan":
        return SessionEvent(TEMPORARY_BAN, _enum_name(event, "Code"))
    if name == "QR":
        return SessionEvent(PAIRING)
    if name == "PairStatus":
        if _enum_name(event, "Status") == "SUCCESS":
            return SessionEvent(PAIRED)
        return SessionEvent(CONNECT_FAILED, "pairing failed")
    if name in ("LoggedOut", "ConnectFailure"):
        reason = _enum_name(event, "Reason")
        if reason == "CLIENT_OUTDATED":
            return SessionEvent(CLIENT_OUTDATED, reason)
        if reason == "TEMP_BANNED":
            return SessionEvent(TEMPORARY_BAN, reason)
        if name == "LoggedOut" or reason in _LOGOUT_REASONS:
            return SessionEvent(LOGGED_OUT, reason)
        return SessionEvent(CONNECT_FAILED, reason)
    return None


def _unwrap(message: Proto) -> Proto:
    for _ in range(_MAX_DEPTH):
        inner = next(
            (
                getattr(message, wrapper).message
                for wrapper in _WRAPPERS
                if message.HasField(wrapper)
                and getattr(message, wrapper).HasField("message")
            ),
            None,
        )
        if inner is None:
            return message
        message = inner
    return message


def _text(message: Proto, depth: int) -> str:
    if depth > _MAX_DEPTH:
        return ""
    message = _unwrap(message)
    if message.conversation:
        return str(message.conversation)
    if message.HasField("extendedTextMessage"):
        return str(message.extendedTextMessage.text or "")
    for kind in _CAPTIONED:
        if message.HasField(kind):
            return str(getattr(message, kind).caption or "")
    if message.HasField("protocolMessage"):
        protocol = message.protocolMessage
        if protocol.type == protocol.MESSAGE_EDIT:
            return _text(protocol.editedMessage, depth + 1)
    return ""


def _phone_jid(
    sender: str, source: Proto, pn_for_lid: Callable[[str], str] | None
) -> str:
    if sender.endswith("@" + PHONE_SERVER):
        return sender
    if not sender.endswith("@" + LID_SERVER):
        return ""
    # whatsmeow puts the other addressing of the sender in SenderAlt when
    # the group is in LID mode; only without it is the store consulted.
    alt = jid_string(source.SenderAlt) if source.HasField("SenderAlt") else ""
    if alt.endswith("@" + PHONE_SERVER):
        return alt
    if pn_for_lid is None:
        return ""
    found = pn_for_lid(sender)
    return found if found.endswith("@" + PHONE_SERVER) else ""


def _at(timestamp_ms: int) -> datetime:
    # Info.Timestamp is Unix milliseconds (FIELD-NOTES); 0 when unset.
    if not timestamp_ms:
        return datetime.now(UTC)
    return datetime.fromtimestamp(int(timestamp_ms) / 1000, UTC)


def _enum_name(message: Proto, field: str) -> str:
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = descriptor.values_by_number.get(int(getattr(message, field)))
    return str(value.name) if value is not None else str(getattr(message, field))
