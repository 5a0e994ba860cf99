"""The translator, fed real neonize protobufs.

Events are built with neonize's own generated classes and sent through
``SerializePartialToString`` and the event table neonize decodes with
(``INT_TO_EVENT[code].FromString``), as the Go side delivers them. Required
fields make ``SerializeToString`` refuse a partial event (FIELD-NOTES).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

pytest.importorskip("neonize")

from neonize.events import (
    EVENT_TO_INT,
    INT_TO_EVENT,
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    DisconnectedEv,
    JoinedGroupEv,
    KeepAliveRestoredEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    QREv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.proto.Neonize_pb2 import (
    JID,
    GroupInfo,
    GroupName,
    MessageInfo,
    MessageSource,
)
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    DocumentMessage,
    ExtendedTextMessage,
    FutureProofMessage,
    ImageMessage,
    Message,
    ProtocolMessage,
    ReactionMessage,
    StickerMessage,
    VideoMessage,
)

from wabscan.bridge import events
from wabscan.bridge.events import (
    message_text,
    translate_joined,
    translate_message,
    translate_session,
)

GROUP = JID(User="120363025246125486", Server="g.us")
ALICE = JID(User="15550001111", Server="s.whatsapp.net", Device=3)
ALICE_LID = JID(User="204838195732589", Server="lid")
SENT_AT_MS = 1_714_564_800_123  # 2024-05-01T12:00:00.123Z


def delivered(event: Any) -> Any:
    """The event as neonize hands it to a handler: bytes from Go, decoded."""
    code = EVENT_TO_INT[type(event)]
    return INT_TO_EVENT[code].FromString(event.SerializePartialToString())


def message_event(
    body: Message,
    *,
    chat: JID = GROUP,
    sender: JID = ALICE,
    sender_alt: JID | None = None,
    message_id: str = "3EB0A1B2C3D4E5F6A7B8",
    from_me: bool = False,
    is_group: bool = True,
    is_edit: bool = False,
) -> Any:
    source = MessageSource(Chat=chat, Sender=sender, IsFromMe=from_me, IsGroup=is_group)
    if sender_alt is not None:
        source.SenderAlt.CopyFrom(sender_alt)
    info = MessageInfo(
        MessageSource=source, ID=message_id, Timestamp=SENT_AT_MS, Pushname="Alice"
    )
    return delivered(MessageEv(Info=info, Message=body, IsEdit=is_edit))


def test_the_message_event_is_neonizes_message_protobuf() -> None:
    assert MessageEv.DESCRIPTOR.full_name == "neonize.Message"


def test_plain_text() -> None:
    got = translate_message(message_event(Message(conversation="see evil.example/x")))

    assert got is not None
    assert got.group == "120363025246125486@g.us"
    assert got.message_id == "3EB0A1B2C3D4E5F6A7B8"
    assert got.sender_jid == "15550001111@s.whatsapp.net"  # device dropped
    assert got.sender_pn == "15550001111@s.whatsapp.net"
    assert got.sender_is_admin is None
    assert got.text == "see evil.example/x"
    assert got.at == datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert not got.edited and not got.from_me and got.edit_id == ""


def test_extended_text() -> None:
    body = Message(
        extendedTextMessage=ExtendedTextMessage(
            text="https://bank-login.example/verify", matchedText="x"
        )
    )
    got = translate_message(message_event(body))
    assert got is not None and got.text == "https://bank-login.example/verify"


@pytest.mark.parametrize(
    "body",
    [
        Message(imageMessage=ImageMessage(caption="photo: evil.example")),
        Message(videoMessage=VideoMessage(caption="video: evil.example")),
        Message(documentMessage=DocumentMessage(caption="doc: evil.example")),
        Message(
            documentWithCaptionMessage=FutureProofMessage(
                message=Message(
                    documentMessage=DocumentMessage(caption="wrapped: evil.example")
                )
            )
        ),
        Message(
            ephemeralMessage=FutureProofMessage(
                message=Message(conversation="ephemeral: evil.example")
            )
        ),
        Message(
            viewOnceMessageV2=FutureProofMessage(
                message=Message(imageMessage=ImageMessage(caption="once: evil.example"))
            )
        ),
    ],
    ids=["image", "video", "document", "document-wrapped", "ephemeral", "view-once"],
)
def test_captions_and_wrappers(body: Message) -> None:
    got = translate_message(message_event(body))
    assert got is not None
    assert got.text.endswith("evil.example")


def _edit(new_text: str) -> ProtocolMessage:
    return ProtocolMessage(
        key=MessageKey(remoteJID="120363025246125486@g.us", ID="ORIGINAL0001"),
        type=ProtocolMessage.MESSAGE_EDIT,
        editedMessage=Message(conversation=new_text),
    )


def test_edit_as_whatsmeow_unwraps_it() -> None:
    # whatsmeow's UnwrapRaw replaces the editedMessage wrapper by its inner
    # protocolMessage and sets IsEdit.
    event = message_event(
        Message(protocolMessage=_edit("now: evil.example/new")),
        message_id="EDITEVENT0001",
        is_edit=True,
    )
    got = translate_message(event)

    assert got is not None
    assert got.edited
    assert got.message_id == "ORIGINAL0001"  # what a reply quotes
    assert got.edit_id == "EDITEVENT0001"
    assert got.text == "now: evil.example/new"


def test_edit_still_wrapped() -> None:
    body = Message(
        editedMessage=FutureProofMessage(
            message=Message(protocolMessage=_edit("x.example/y"))
        )
    )
    got = translate_message(message_event(body, message_id="EDITEVENT0002"))

    assert got is not None and got.edited
    assert (got.message_id, got.edit_id) == ("ORIGINAL0001", "EDITEVENT0002")
    assert got.text == "x.example/y"


def test_own_messages_are_marked_from_me() -> None:
    got = translate_message(message_event(Message(conversation="hi"), from_me=True))
    assert got is not None and got.from_me


@pytest.mark.parametrize(
    "body",
    [
        Message(),
        Message(conversation=""),
        Message(conversation="   \n"),
        Message(extendedTextMessage=ExtendedTextMessage()),
        Message(imageMessage=ImageMessage()),
        Message(stickerMessage=StickerMessage()),
        Message(reactionMessage=ReactionMessage(text="👍")),
        Message(
            protocolMessage=ProtocolMessage(
                key=MessageKey(ID="ORIGINAL0001"), type=ProtocolMessage.REVOKE
            )
        ),
        Message(
            protocolMessage=ProtocolMessage(
                type=ProtocolMessage.MESSAGE_EDIT,
                editedMessage=Message(conversation="no key"),
            )
        ),
    ],
    ids=[
        "nothing",
        "empty",
        "blank",
        "empty-extended",
        "image-without-caption",
        "sticker",
        "reaction",
        "revoke",
        "edit-without-key",
    ],
)
def test_empty_and_unsupported_bodies_are_skipped(body: Message) -> None:
    assert translate_message(message_event(body)) is None


def test_direct_chats_and_status_are_not_scanned() -> None:
    direct = message_event(
        Message(conversation="evil.example"),
        chat=JID(User="15550001111", Server="s.whatsapp.net"),
        is_group=False,
    )
    status = message_event(
        Message(conversation="evil.example"),
        chat=JID(User="status", Server="broadcast"),
        is_group=False,
    )
    assert translate_message(direct) is None
    assert translate_message(status) is None


def test_lid_sender_with_phone_jid_in_sender_alt() -> None:
    asked: list[str] = []
    event = message_event(
        Message(conversation="hello"), sender=ALICE_LID, sender_alt=ALICE
    )
    got = translate_message(event, lambda lid: asked.append(lid) or "")

    assert got is not None
    assert got.sender_jid == "204838195732589@lid"
    assert got.sender_pn == "15550001111@s.whatsapp.net"
    assert got.author == "15550001111@s.whatsapp.net"
    assert asked == []  # no store lookup needed


def test_lid_sender_mapped_through_the_store() -> None:
    asked: list[str] = []

    def lookup(lid: str) -> str:
        asked.append(lid)
        return "15550001111@s.whatsapp.net"

    got = translate_message(
        message_event(Message(conversation="hello"), sender=ALICE_LID), lookup
    )
    assert got is not None and got.sender_pn == "15550001111@s.whatsapp.net"
    assert asked == ["204838195732589@lid"]


def test_lid_sender_unknown_to_the_store_keeps_the_lid() -> None:
    got = translate_message(
        message_event(Message(conversation="hello"), sender=ALICE_LID), lambda _: ""
    )
    assert got is not None
    assert got.sender_pn == ""
    assert got.author == "204838195732589@lid"


def test_message_text_of_nested_wrappers_is_bounded() -> None:
    body = Message(conversation="deep")
    for _ in range(20):
        body = Message(ephemeralMessage=FutureProofMessage(message=body))
    assert message_text(body) in ("deep", "")  # never recursion trouble


def test_joined_group() -> None:
    event = delivered(
        JoinedGroupEv(
            Reason="invite",
            CreateKey="KEY1",
            GroupInfo=GroupInfo(JID=GROUP, GroupName=GroupName(Name="Family")),
        )
    )
    got = translate_joined(event)
    assert got is not None
    assert (got.group, got.name, got.key) == (
        "120363025246125486@g.us",
        "Family",
        "KEY1",
    )


@pytest.mark.parametrize(
    ("event", "kind", "detail"),
    [
        (ConnectedEv(status=True), events.CONNECTED, ""),
        (DisconnectedEv(status=True), events.DISCONNECTED, ""),
        (LoggedOutEv(OnConnect=True, Reason=2), events.LOGGED_OUT, "LOGGED_OUT"),
        (ClientOutdatedEv(), events.CLIENT_OUTDATED, "405"),
        (ConnectFailureEv(Reason=6), events.CLIENT_OUTDATED, "CLIENT_OUTDATED"),
        (ConnectFailureEv(Reason=4), events.LOGGED_OUT, "MAIN_DEVICE_GONE"),
        (
            ConnectFailureEv(Reason=10),
            events.CONNECT_FAILED,
            "SERVICE_UNAVAILABLE",
        ),
        (TemporaryBanEv(Code=4), events.TEMPORARY_BAN, "SENT_TOO_MANY_SAME_MESSAGE"),
        (KeepAliveRestoredEv(), events.KEEPALIVE_RESTORED, ""),
        (StreamReplacedEv(), events.STREAM_REPLACED, ""),
        (QREv(Codes=["2@abc"]), events.PAIRING, ""),
        (PairStatusEv(Status=2), events.PAIRED, ""),
    ],
)
def test_session_events(event: Any, kind: str, detail: str) -> None:
    got = translate_session(delivered(event))
    assert got is not None
    assert (got.kind, got.detail) == (kind, detail)


def test_keepalive_timeout_carries_its_count() -> None:
    got = translate_session(delivered(KeepAliveTimeoutEv(ErrorCount=3, LastSuccess=1)))
    assert got is not None and got.kind == events.KEEPALIVE_TIMEOUT and got.count == 3
