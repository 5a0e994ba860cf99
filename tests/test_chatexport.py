"""Tests for wabscan.chatexport.

Three sources of truth: the upstream fixtures in shared/data with their
targets (chat-miner, whatsapp-chat-parser), our own chats in tests/chats with
the messages written out here, and hypothesis properties over generated chats.
"""

from __future__ import annotations

import csv
import json
import os
import time
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wabscan import chatexport
from wabscan.chatexport import ChatMessage, parse_chat, parse_chat_text
from wabscan.errors import InputError

CHATS = Path(__file__).parent / "chats"
SAMPLES = Path(__file__).parents[1] / "samples"
MARKS = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e"


def shared_data() -> Path:
    """Where the shared data lives: shared/data, a sibling of the clone.

    The repository is /work/main and the data /work/shared/data here; CI
    checks the data out next to the clone the same way.
    """
    return Path(__file__).absolute().parents[2] / "shared" / "data"


SHARED = shared_data() / "chats"
needs_shared = pytest.mark.skipif(
    not shared_data().is_dir(), reason=f"shared data not found at {shared_data()}"
)


def msg(
    line: int,
    when: str,
    author: str | None,
    text: str,
    attachment: str | None = None,
) -> ChatMessage:
    """An expected message; a None author makes it a system line."""
    return ChatMessage(
        time=datetime.fromisoformat(when),
        author=author,
        text=text,
        line=line,
        system=author is None,
        attachment=attachment,
    )


# --- upstream fixtures against their targets ---------------------------------


def as_chatminer(message: ChatMessage) -> tuple[str, str, str]:
    """Our message in the conventions of chat-miner's targets.

    - chat-miner names the author of a system line "System"; ours is None
      with ``system`` set.
    - chat-miner joins a message's lines with a space; we keep the newlines.
    - chat-miner NFKC-normalises each message, which turns the U+00A0 in
      "abnormal<U+00A0>unicode" into a space; we keep the text as written.
    - chat-miner reads "John Doe:." as a disappearing message and writes the
      placeholder "<Disappearing Message>"; we keep the "." that is there.
    """
    author = "System" if message.system else str(message.author)
    text = unicodedata.normalize("NFKC", message.text.replace("\n", " "))
    if text == ".":
        text = "<Disappearing Message>"
    return message.time.isoformat(sep=" "), unicodedata.normalize("NFKC", author), text


CHATMINER_2024 = [
    ("chatminer_test_ddmmyy_24hrs.txt", "DMY"),
    ("chatminer_test_mmddyy_24hrs.txt", "MDY"),
    ("chatminer_test_mmddyyyy_12hrs.txt", "MDY"),
    ("chatminer_test_yyyymmdd_24hrs.txt", "YMD"),
    ("chatminer_test_[mmddyy]_24hrs.txt", "MDY"),
]
CHATMINER_CSV = [
    ("chatminer_test_dateformat1.txt", "MDY"),
    ("chatminer_test_dateformat2.txt", "MDY"),
    ("chatminer_test_dateformat3.txt", "YMD"),
    # Every date in this file reads both ways; day first is our default,
    # and chat-miner's target agrees (2022-10-09).
    ("chatminer_test_unicode.txt", "DMY"),
]
# Checked one by one below.
OTHER_SHARED = [
    "chatminer_testlog.txt",
    "whatsappchatparser_short-chat.txt",
    "whatsappchatparser_empty.txt",
    "whatsappchatparser_not-a-whatsapp-chat.txt",
]


@needs_shared
def test_every_shared_chat_is_checked() -> None:
    checked = [name for name, _ in CHATMINER_2024 + CHATMINER_CSV] + OTHER_SHARED
    assert sorted(path.name for path in SHARED.glob("*.txt")) == sorted(checked)


@needs_shared
@pytest.mark.parametrize(("name", "date_order"), CHATMINER_2024)
def test_chatminer_2024_fixtures_match_target(name: str, date_order: str) -> None:
    export = parse_chat(SHARED / name)

    # The 2024 target leaves out system lines and the "John Doe:." message,
    # so those are checked here and dropped before the comparison.
    assert [m.text for m in export.messages if m.system] == [
        '+12 345 578 created group "Groupname"',
        "You were added",
    ]
    assert [m.author for m in export.messages if m.text == "."] == ["John Doe"]
    kept = [m for m in export.messages if not m.system and m.text != "."]

    target = json.loads((SHARED / "chatminer_target.json").read_text("utf-8"))
    expected = [
        (
            datetime.fromisoformat(row["timestamp"]).isoformat(sep=" "),
            row["author"],
            row["message"],
        )
        for row in target
    ]
    # The target lists messages newest first: the file order reversed.
    assert [as_chatminer(m) for m in reversed(kept)] == expected
    assert export.date_order == date_order


@needs_shared
@pytest.mark.parametrize(("name", "date_order"), CHATMINER_CSV)
def test_chatminer_csv_fixtures_match_target(name: str, date_order: str) -> None:
    export = parse_chat(SHARED / name)

    target = SHARED / name.replace(".txt", "_target.csv")
    with target.open(encoding="utf-8", newline="") as file:
        expected = [
            (row["timestamp"], row["author"], row["message"])
            for row in csv.DictReader(file)
        ]
    # These targets keep every message, system lines included, in the file
    # order reversed (not sorted: dateformat1 has 2014 after 2017).
    assert [as_chatminer(m) for m in reversed(export.messages)] == expected
    assert export.date_order == date_order


@needs_shared
def test_chatminer_testlog_matches_target() -> None:
    # testlog mixes about ten layouts in one file; its day/month dates are
    # month first (12/24/19, 10.24.21), so 09/10/22 is the 10th of September.
    export = parse_chat(SHARED / "chatminer_testlog.txt")

    target = (SHARED / "chatminer_testlog_target.json").read_text("utf-8")
    expected = []
    for row in map(json.loads, target.splitlines()):
        # The target's milliseconds count the written local time as UTC.
        when = datetime.fromtimestamp(row["datetime"] / 1000, UTC)
        stamp = when.replace(tzinfo=None).isoformat(sep=" ")
        expected.append((stamp, row["author"], row["message"]))
    assert [as_chatminer(m) for m in reversed(export.messages)] == expected
    assert export.date_order == "MDY"


@needs_shared
def test_whatsappchatparser_short_chat() -> None:
    # whatsapp-chat-parser ships no target; these are the five messages.
    # All dates read both ways, so day first: 08/05/2017 is the 8th of May.
    export = parse_chat(SHARED / "whatsappchatparser_short-chat.txt")

    assert export.messages == [
        msg(
            1,
            "2017-03-06 00:45",
            None,
            "Messages to this group are now secured with end-to-end encryption. "
            "Tap for more info.",
        ),
        msg(2, "2017-03-06 00:45", None, 'You created group "ShortChat"'),
        msg(3, "2017-03-06 00:45", "Sample User", "This is a test message"),
        msg(4, "2017-05-08 01:48", "TestBot", "Hey I'm a test too!"),
        msg(
            5,
            "2017-04-09 01:50",
            "+410123456789",
            "How are you?\n\nIs everything alright?",
        ),
    ]
    assert export.date_order == "DMY"


@needs_shared
def test_whatsappchatparser_empty_file_is_an_export_without_messages() -> None:
    export = parse_chat(SHARED / "whatsappchatparser_empty.txt")

    assert export.messages == []
    assert export.source == str(SHARED / "whatsappchatparser_empty.txt")


@needs_shared
def test_whatsappchatparser_not_a_chat_is_refused() -> None:
    path = SHARED / "whatsappchatparser_not-a-whatsapp-chat.txt"

    with pytest.raises(InputError) as raised:
        parse_chat(path)

    assert str(raised.value) == (
        f"{path}: not a WhatsApp chat export (no line starts with a date and time)"
    )


# --- our own chats -----------------------------------------------------------

OWN_CHATS: dict[str, tuple[str, list[ChatMessage]]] = {
    "android_dmy_24h.txt": (
        "DMY",
        [
            msg(
                1,
                "2024-03-14 09:02",
                None,
                "Messages and calls are end-to-end encrypted. No one outside of "
                "this chat, not even WhatsApp, can read or listen to them. Tap to "
                "learn more.",
            ),
            msg(
                2, "2024-03-14 09:02", None, 'Maria Santos created group "Book club 📚"'
            ),
            msg(
                3,
                "2024-03-14 09:05",
                "Maria Santos",
                "Welcome! The reading list is on "
                "https://openlibrary.org/people/bookclub/lists",
            ),
            msg(
                4,
                "2024-03-14 09:07",
                "+44 7700 900123",
                "Thanks! Reviews at www.goodreads.com/group/show/12345",
            ),
            msg(
                5,
                "2024-03-14 09:15",
                "Tomás 🌻",
                "Next meeting:\n- chapters 1-4\n\n- bring snacks\n"
                "details on meetup.com/book-club-lisbon",
            ),
            msg(10, "2024-03-14 10:01", "Maria Santos", "<Media omitted>", "omitted"),
            msg(
                11,
                "2024-03-14 10:02",
                "Maria Santos",
                "IMG-20240314-WA0007.jpg (file attached)\ncover of the next book",
                "IMG-20240314-WA0007.jpg",
            ),
            msg(
                13,
                "2024-03-15 18:30",
                "+44 7700 900123",
                "*Free e-books* at *https://free-ebooks-now.example.com/claim* hurry!",
            ),
            msg(
                14,
                "2024-03-15 18:31",
                "Tomás 🌻",
                "don't, it's hxxp://free-ebooks-now[.]example[.]com again",
            ),
            msg(15, "2024-03-15 18:32", None, "Tomás 🌻 left"),
        ],
    ),
    "ios_dmy_seconds.txt": (
        "DMY",
        [
            # iOS writes system lines as "Group name: \u200e..."; the mark and
            # the phrase make them system lines without an author.
            msg(
                1,
                "2024-01-02 08:15:03",
                None,
                "Messages and calls are end-to-end encrypted. No one outside of "
                "this chat, not even WhatsApp, can read or listen to them.",
            ),
            msg(2, "2024-01-02 08:15:03", None, "Ana Costa created group “Neighbours”"),
            msg(3, "2024-01-02 08:16:10", None, "You were added"),
            msg(
                4,
                "2024-01-02 08:20:45",
                "Ana Costa",
                "Parcel notice, is this real? "
                "https://parcel-redelivery.example.org/track?id=8812",
            ),
            msg(
                5,
                "2024-01-02 08:21:02",
                "João",
                "<attached: 00000012-PHOTO-2024-01-02-08-21-02.jpg>",
                "00000012-PHOTO-2024-01-02-08-21-02.jpg",
            ),
            msg(6, "2024-01-02 08:22:30", "João", "image omitted", "omitted"),
            msg(
                7,
                "2024-01-02 08:25:00",
                "~\u202fPedro",
                "no! report it via www.ncsc.gov.uk/collection/phishing-scams",
            ),
            # Marked like a system line, but a location share is a message.
            msg(
                8,
                "2024-01-13 21:04:59",
                "Ana Costa",
                "Location: https://maps.google.com/?q=38.7223,-9.1393",
            ),
            msg(
                9,
                "2024-01-13 21:05:10",
                "Ana Costa",
                "party at mine,\nbring food\nhttps://bit.ly/3Hk9xQz",
            ),
        ],
    ),
    "android_us_12h_narrow.txt": (
        "MDY",
        [
            msg(
                1,
                "2024-01-05 19:45",
                None,
                "Messages and calls are end-to-end encrypted. No one outside of "
                "this chat, not even WhatsApp, can read or listen to them. Tap to "
                "learn more.",
            ),
            msg(
                2,
                "2024-01-05 19:46",
                "Dave",
                "check out http://example-deals.com/offer?ref=wa",
            ),
            msg(
                3,
                "2024-01-05 19:50",
                "Kim O'Brien",
                "hxxps://secure-login[.]bank-example[.]com/auth is the one from the "
                "SMS, don't click",
            ),
            msg(4, "2024-01-13 00:05", "Dave", "midnight reading: www.wikipedia.org"),
            msg(
                5,
                "2024-01-13 12:30",
                "Kim O'Brien",
                "noon news: news.example.co.uk/article/123",
            ),
            msg(
                6,
                "2024-01-13 12:31",
                "Kim O'Brien",
                "VID-20240113-WA0002.mp4 (file attached)",
                "VID-20240113-WA0002.mp4",
            ),
        ],
    ),
    "android_mdy_4digit.txt": (
        "MDY",
        [
            msg(1, "2023-12-30 21:10", "+1 415 555 0134", "Happy new year everyone 🎉"),
            msg(
                2,
                "2023-12-31 23:59",
                "Priya",
                "countdown stream: https://www.youtube.com/watch?v=aB3dE5fG7hI",
            ),
            msg(
                3,
                "2024-01-01 00:01",
                "+1 415 555 0134",
                "*Claim your 2024 gift card* *www.gift-card-2024.example.net/claim*",
            ),
            msg(4, "2024-01-01 00:02", "Priya", "that's spam,\nreported it"),
        ],
    ),
    "german_dots.txt": (
        "DMY",
        [
            msg(1, "2023-12-24 18:00", None, "Jens hat die Gruppe „Familie“ erstellt"),
            msg(2, "2023-12-24 18:01", "Oma Gisela", "Frohe Weihnachten! 🎄"),
            msg(
                3,
                "2023-12-24 18:05",
                "Jens",
                "Danke! Fotos: https://photos.app.goo.gl/AbCdEf123",
            ),
            msg(
                4,
                "2023-12-26 09:30",
                "Oma Gisela",
                "Ich habe eine SMS bekommen: *sparkasse-sicherheit.example.de/login*",
            ),
            msg(
                5,
                "2023-12-26 09:45",
                "Jens",
                "Nicht öffnen! Das ist Phishing: "
                "hxxps://sparkasse-sicherheit[.]example[.]de",
            ),
        ],
    ),
    "ymd_dashes.txt": (
        "YMD",
        [
            msg(
                1,
                "2023-07-04 09:15",
                "Sven",
                "Picnic at 12, map: https://www.openstreetmap.org/#map=15/59.3293/18.0686",
            ),
            msg(2, "2023-07-04 09:16", "Karin", "👍"),
            msg(3, "2023-07-04 09:20", "Sven", "weather: smhi.se"),
        ],
    ),
    "spanish_pm_nbsp.txt": (
        "DMY",
        [
            msg(
                1, "2024-02-03 21:05", "Lucía", "Mirad esto https://elpais.com/ciencia/"
            ),
            msg(
                2,
                "2024-02-03 21:07",
                "Carlos",
                "Y esto, ojo: hxxp://correos-envio[.]example[.]es/pago",
            ),
            msg(3, "2024-02-15 10:30", "Lucía", "<Media omitted>", "omitted"),
        ],
    ),
    "ios_us_12h_seconds.txt": (
        "MDY",
        [
            msg(
                1,
                "2024-01-05 19:45:12",
                "Dave",
                "<attached: 00000003-PHOTO-2024-01-05-19-45-12.jpg>",
                "00000003-PHOTO-2024-01-05-19-45-12.jpg",
            ),
            msg(
                2,
                "2024-01-05 19:46:00",
                "Kim",
                "nice! more at https://www.flickr.com/photos/example/",
            ),
            msg(
                3,
                "2024-01-25 08:01:09",
                "Dave",
                "Report.pdf • 3 pages document omitted",
                "omitted",
            ),
        ],
    ),
    # Nothing says which number is the day, so day first (see the docstring).
    "ambiguous_dates.txt": (
        "DMY",
        [
            msg(1, "2024-04-03 10:00", "Ana", "first https://example.org/a"),
            msg(2, "2024-06-05 11:30", "Ben", "second www.example.com/b"),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(OWN_CHATS))
def test_own_chat(name: str) -> None:
    date_order, expected = OWN_CHATS[name]

    export = parse_chat(CHATS / name)

    assert export.messages == expected
    assert export.date_order == date_order
    assert export.source == str(CHATS / name)


def test_every_own_chat_is_checked() -> None:
    assert sorted(path.name for path in CHATS.glob("*.txt")) == sorted(OWN_CHATS)


def test_sample_family_group() -> None:
    export = parse_chat(SAMPLES / "family-group.txt")

    authors = {m.author for m in export.messages if not m.system}
    assert len(export.messages) == 26
    assert authors == {
        "Helen Carter",
        "Richard Carter",
        "Sophie",
        "Tom",
        "+44 7700 900461",
    }
    assert sum(m.system for m in export.messages) == 3
    assert [m.attachment for m in export.messages if m.attachment] == [
        "omitted",
        "IMG-20240303-WA0014.jpg",
    ]
    assert any("\n" in m.text for m in export.messages)
    assert export.date_order == "DMY"


# --- zip exports -------------------------------------------------------------


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_ios_zip_with_media(tmp_path: Path) -> None:
    chat = (CHATS / "ios_dmy_seconds.txt").read_bytes()
    path = make_zip(
        tmp_path / "WhatsApp Chat - Neighbours.zip",
        {
            "00000012-PHOTO-2024-01-02-08-21-02.jpg": b"\xff\xd8\xff\xe0\0\x10JFIF",
            "_chat.txt": chat,
            # macOS Archive Utility adds these resource forks; not the chat.
            "__MACOSX/._chat.txt": b"\0\x05\x16\x07\0\x02",
        },
    )

    export = parse_chat(path)

    assert export.messages == OWN_CHATS["ios_dmy_seconds.txt"][1]
    assert export.source == str(path)


def test_android_zip_is_found_by_content_not_name(tmp_path: Path) -> None:
    chat = (CHATS / "android_dmy_24h.txt").read_bytes()
    path = make_zip(
        tmp_path / "export.bin",
        {
            "IMG-20240314-WA0007.jpg": b"\xff\xd8\xff",
            "notes.txt": b"not the chat",
            "WhatsApp Chat with Book club.txt": chat,
        },
    )

    assert parse_chat(path).messages == OWN_CHATS["android_dmy_24h.txt"][1]


def test_zip_with_one_unnamed_txt(tmp_path: Path) -> None:
    chat = (CHATS / "german_dots.txt").read_bytes()
    path = make_zip(tmp_path / "chat.zip", {"Familie.txt": chat, "IMG-1.jpg": b""})

    assert len(parse_chat(path).messages) == 5


def test_zip_without_chat(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "media.zip", {"IMG-20240101-WA0001.jpg": b"\xff\xd8"})

    with pytest.raises(InputError) as raised:
        parse_chat(path)

    assert raised.value.where == str(path)
    assert "no .txt chat inside" in raised.value.what
    assert "IMG-20240101-WA0001.jpg" in raised.value.what


def test_empty_zip(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "empty.zip", {})

    with pytest.raises(InputError, match=r"no \.txt chat inside"):
        parse_chat(path)


def test_zip_with_several_unnamed_txt(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "two.zip", {"a.txt": b"", "b.txt": b""})

    with pytest.raises(InputError, match=r"several \.txt files.*a\.txt, b\.txt"):
        parse_chat(path)


def test_corrupt_zip(tmp_path: Path) -> None:
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04" + b"\x00garbage" * 10)

    with pytest.raises(InputError, match="not a readable zip archive"):
        parse_chat(path)


def test_zip_with_damaged_member(tmp_path: Path) -> None:
    chat = (CHATS / "android_dmy_24h.txt").read_bytes()
    path = make_zip(tmp_path / "damaged.zip", {"_chat.txt": chat})
    data = bytearray(path.read_bytes())
    # The compressed bytes start after the 30-byte local header and the name.
    for offset in range(30 + len("_chat.txt"), 30 + len("_chat.txt") + 40):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(InputError, match="not a readable zip archive"):
        parse_chat(path)


def test_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chatexport, "MAX_CHAT_BYTES", 100)
    chat = (CHATS / "android_dmy_24h.txt").read_bytes()
    (tmp_path / "chat.txt").write_bytes(chat)
    make_zip(tmp_path / "chat.zip", {"_chat.txt": chat})

    with pytest.raises(InputError, match="limit"):
        parse_chat(tmp_path / "chat.txt")
    with pytest.raises(InputError, match="limit") as raised:
        parse_chat(tmp_path / "chat.zip")
    assert raised.value.where == f"{tmp_path / 'chat.zip'}:_chat.txt"


def test_error_inside_zip_names_member_and_line(tmp_path: Path) -> None:
    chat = "24/12/19, 11:23 - Ana: hi\n24/12/19, 11:24 - Ana: olá\n".encode("latin-1")
    path = make_zip(tmp_path / "x.zip", {"_chat.txt": chat})

    with pytest.raises(InputError) as raised:
        parse_chat(path)

    assert raised.value.where == f"{path}:_chat.txt:2"


# --- files that are not exports ----------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        parse_chat(tmp_path / "nope.txt")

    assert str(raised.value) == f"{tmp_path / 'nope.txt'}: no such file"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        parse_chat(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without permission")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "locked.txt"
    path.write_text("24/12/19, 11:23 - Ana: hi\n")
    path.chmod(0)

    with pytest.raises(InputError, match="cannot read"):
        parse_chat(path)


def test_read_error_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same path as a permission error, for when the tests run as root.
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(chatexport, "open", refuse, raising=False)

    with pytest.raises(InputError) as raised:
        parse_chat("chat.txt")

    assert str(raised.value) == "chat.txt: cannot read (Permission denied)"


def test_binary_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "photo.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")

    with pytest.raises(InputError) as raised:
        parse_chat(path)

    assert raised.value.where == f"{path}:3"
    assert "binary" in raised.value.what


def test_non_utf8_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(
        "24/12/19, 11:23 - Ana: hi\n24/12/19, 11:24 - José: olá\n".encode("cp1252")
    )

    with pytest.raises(InputError) as raised:
        parse_chat(path)

    assert raised.value.where == f"{path}:2"
    assert "UTF-8" in raised.value.what


def test_utf16_and_bom_and_crlf_are_read(tmp_path: Path) -> None:
    text = "\ufeff24/12/19, 11:23 - Ana: hi\r\nthere\r\n24/12/19, 11:24 - Bo: ok\r\n"
    path = tmp_path / "windows.txt"
    path.write_bytes(text.encode("utf-16"))

    export = parse_chat(path)

    assert export.messages == [
        msg(1, "2019-12-24 11:23", "Ana", "hi\nthere"),
        msg(3, "2019-12-24 11:24", "Bo", "ok"),
    ]
    assert parse_chat_text(text).messages == export.messages


def test_nul_in_text() -> None:
    with pytest.raises(InputError) as raised:
        parse_chat_text("24/12/19, 11:23 - Ana: hi\n\0", source="chat.txt")

    assert raised.value.where == "chat.txt:2"


@pytest.mark.parametrize("text", ["", "\n\n", "   \n", "\ufeff"])
def test_empty_text_is_an_export_without_messages(text: str) -> None:
    export = parse_chat_text(text)

    assert export.messages == []
    assert export.date_order == "DMY"


def test_text_before_the_first_message() -> None:
    text = "Chat with Ana\n24/12/19, 11:23 - Ana: hi\n"

    with pytest.raises(InputError) as raised:
        parse_chat_text(text, source="chat.txt")

    assert raised.value.where == "chat.txt:1"


# --- rules that the fixtures do not show on their own -----------------------


def test_impossible_date_continues_the_message() -> None:
    # Under the file's day-first order, 02/31 is no date: someone typed it.
    text = "31/12/24, 10:00 - Ana: agenda\n31/02/24, 10:00 - see you\n"

    assert parse_chat_text(text).messages == [
        msg(1, "2024-12-31 10:00", "Ana", "agenda\n31/02/24, 10:00 - see you")
    ]


def test_conflicting_evidence_is_decided_by_majority() -> None:
    text = (
        "13/01/24, 10:00 - Ana: a\n"
        "14/01/24, 10:00 - Ana: b\n"
        "01/15/24, 10:00 - Ana: typed, not a header\n"
    )

    export = parse_chat_text(text)

    assert export.date_order == "DMY"
    assert [m.text for m in export.messages] == [
        "a",
        "b\n01/15/24, 10:00 - Ana: typed, not a header",
    ]


def test_colon_in_quoted_subject_is_not_an_author() -> None:
    text = '12/01/24, 10:00 - Ana changed the subject from "A" to "Trip: Rome"\n'

    [message] = parse_chat_text(text).messages

    assert message.system
    assert message.author is None
    assert message.text == 'Ana changed the subject from "A" to "Trip: Rome"'


def test_author_with_empty_message() -> None:
    # Some editors trim the space after "Ana:" when a message starts with a
    # new line.
    text = "12/01/24, 10:00 - Ana:\nhttps://example.org/x\n"

    assert parse_chat_text(text).messages == [
        msg(1, "2024-01-12 10:00", "Ana", "\nhttps://example.org/x")
    ]


def test_marks_are_removed_from_text_and_author() -> None:
    text = (
        "\u200e[12/01/24, 10:00:00] \u202aAna\u202c: \u200fhttps://example.org/\u200e\n"
    )

    [message] = parse_chat_text(text).messages

    assert (message.author, message.text) == ("Ana", "https://example.org/")


def test_large_export_parses_quickly() -> None:
    # 100,000 lines: one message every seven minutes for two years, every
    # tenth of them on three lines.
    lines: list[str] = []
    number = 0
    while len(lines) < 100_000:
        moment = datetime(2022, 1, 1) + timedelta(minutes=7 * number)
        lines.append(f"{moment:%d/%m/%Y, %H:%M} - Person {number % 9}: see")
        if number % 10 == 0:
            lines += ["https://example.org/a", "www.example.com/b"]
        number += 1
    text = "\n".join(lines) + "\n"

    started = time.perf_counter()
    export = parse_chat_text(text)
    elapsed = time.perf_counter() - started

    assert len(export.messages) == number
    # About 1 s on a busy two-core machine; the bound leaves room for slow CI.
    assert elapsed < 4.0


# --- properties --------------------------------------------------------------

FRAGMENTS = st.sampled_from(
    [
        "12/24/19, 11:23 - ",
        "24/12/2019, 23:59 - ",
        "[01/02/2024, 10:00:00] ",
        "\u200e[1/5/24, 7:45:12\u202fPM] ",
        "2022/12/24, 13:01. - ",
        "9/24/2019 11:30 p.\xa0m. - ",
        "31/02/24, 25:61 - ",
        "Ana: ",
        ": ",
        ":.",
        '"',
        "\n",
        "\r\n",
        "\u200e",
        "\ufeff",
        "\0",
        "<attached: 0001-PHOTO.jpg>",
        "IMG-1.jpg (file attached)",
        "image omitted",
        "<Media omitted>",
        "Messages and calls are end-to-end encrypted",
    ]
)


@settings(deadline=None)
@given(st.lists(st.one_of(FRAGMENTS, st.text(max_size=20)), max_size=30).map("".join))
def test_parse_chat_text_raises_only_input_error(text: str) -> None:
    try:
        export = parse_chat_text(text, source="fuzz.txt")
    except InputError as error:
        assert error.where.startswith("fuzz.txt")
        return

    lines = [m.line for m in export.messages]
    assert lines == sorted(set(lines))
    assert all(1 <= line <= text.count("\n") + 1 for line in lines)
    assert not any(mark in m.text for m in export.messages for mark in MARKS)
    assert export.date_order in {"DMY", "MDY", "YMD"}


def _twelve_hour(moment: datetime) -> tuple[int, str]:
    return moment.hour % 12 or 12, "AM" if moment.hour < 12 else "PM"


@dataclass(frozen=True)
class Layout:
    """How one phone writes the header of a message."""

    name: str
    header: Callable[[datetime], str]
    date_order: str
    seconds: bool = False


def _android_us(t: datetime) -> str:
    hour, meridiem = _twelve_hour(t)
    return f"{t.month}/{t.day}/{t:%y}, {hour}:{t:%M}\u202f{meridiem} - "


def _ios_us(t: datetime) -> str:
    hour, meridiem = _twelve_hour(t)
    return f"[{t.month}/{t.day}/{t:%y}, {hour}:{t:%M:%S}\u202f{meridiem}] "


def _spanish_us(t: datetime) -> str:
    hour, meridiem = _twelve_hour(t)
    marker = "a.\xa0m." if meridiem == "AM" else "p.\xa0m."
    return f"{t.month}/{t.day}/{t.year} {hour}:{t:%M}\xa0{marker} - "


LAYOUTS = [
    Layout("android", lambda t: f"{t:%d/%m/%y, %H:%M} - ", "DMY"),
    Layout("android-4-digit-year", lambda t: f"{t:%d/%m/%Y, %H:%M} - ", "DMY"),
    Layout("android-dashes", lambda t: f"{t:%d-%m-%Y %H:%M} - ", "DMY"),
    Layout("german", lambda t: f"{t:%d.%m.%y, %H:%M} - ", "DMY"),
    Layout("android-us-12h", _android_us, "MDY"),
    Layout("spanish-us-12h", _spanish_us, "MDY"),
    Layout("month-first-4-digit", lambda t: f"{t:%m/%d/%Y, %H:%M} - ", "MDY"),
    Layout("ios", lambda t: f"\u200e[{t:%d/%m/%y, %H:%M:%S}] ", "DMY", True),
    Layout("ios-us-12h", _ios_us, "MDY", True),
    Layout("ios-no-comma", lambda t: f"[{t:%m/%d/%y %H:%M}] ", "MDY"),
    Layout("year-first-trailing-dot", lambda t: f"{t:%Y/%m/%d, %H:%M}. - ", "YMD"),
    Layout("year-first-dashes", lambda t: f"{t:%Y-%m-%d %H:%M:%S} - ", "YMD", True),
    Layout("hungarian", lambda t: f"{t:%Y. %m. %d.} {t.hour}:{t:%M} - ", "YMD"),
    Layout(
        "czech", lambda t: f"{t.day}. {t.month}. {t.year} {t.hour}:{t:%M} - ", "DMY"
    ),
    Layout("dotted-time", lambda t: f"{t:%d.%m.%Y %H.%M} - ", "DMY"),
    Layout("old-ios", lambda t: f"{t:%d/%m/%Y, %H:%M:%S}: ", "DMY", True),
]

AUTHORS = (
    st.text(
        alphabet=st.one_of(
            st.characters(categories=["L", "N", "So", "Zs"]),
            st.sampled_from("+-'._()~:"),
        ),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(lambda a: a and ": " not in a and a[-1] != ":")
)
# Anything but the line break, NUL and the marks the parser removes.
TEXT_LINE = st.text(
    alphabet=st.characters(
        exclude_categories=["Cs"], exclude_characters="\n\r\0" + MARKS
    ),
    max_size=40,
)
# A continuation line must not itself look like a header: none starts with a
# digit or "[" (a limit of the format, not of the parser).
CONTINUATION = TEXT_LINE.filter(lambda s: s[:1] not in "[0123456789" or not s)
TEXTS = st.builds(
    lambda first, rest: "\n".join([first, *rest]),
    TEXT_LINE,
    st.lists(CONTINUATION, max_size=3),
).filter(lambda t: "\n" not in t or t.rsplit("\n", 1)[1].strip() != "")
SYSTEM_TEXTS = st.sampled_from(
    [
        "You were added",
        "Ana left",
        '+12 345 578 created group "Trip: Rome"',
        "Messages and calls are end-to-end encrypted. No one outside of this "
        "chat, not even WhatsApp, can read or listen to them.",
    ]
)
MESSAGES = st.lists(
    st.tuples(
        st.datetimes(min_value=datetime(2009, 1, 1), max_value=datetime(2099, 12, 31)),
        st.one_of(st.none(), AUTHORS),
        TEXTS,
        SYSTEM_TEXTS,
    ),
    max_size=8,
)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
@settings(deadline=None, max_examples=60)
@given(generated=MESSAGES)
def test_round_trip(
    layout: Layout, generated: list[tuple[datetime, str | None, str, str]]
) -> None:
    # The first message is on the 25th so that the file says which number is
    # the day, as any export of more than twelve days does.
    messages = [(datetime(2023, 12, 25, 9, 30), "Ana", "first", ""), *generated]
    expected: list[ChatMessage] = []
    lines: list[str] = []
    for when, author, text, system_text in messages:
        moment = when.replace(
            microsecond=0, second=when.second if layout.seconds else 0
        )
        body = f"{author}: {text}" if author is not None else system_text
        expected.append(
            msg(
                len(lines) + 1,
                moment.isoformat(),
                author,
                text if author is not None else body,
            )
        )
        lines.extend((layout.header(moment) + body).split("\n"))

    export = parse_chat_text("\n".join(lines) + "\n")

    parsed = [(m.line, m.time, m.author, m.text, m.system) for m in export.messages]
    assert parsed == [(m.line, m.time, m.author, m.text, m.system) for m in expected]
    assert export.date_order == layout.date_order
