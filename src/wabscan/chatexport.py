"""Read WhatsApp "Export chat" files into plain messages.

WhatsApp writes one line per message, starting with a date and time whose
layout depends on the phone (Android or iOS) and its locale::

    24/12/19, 11:23 - Alice: text           Android, day first
    12/24/19, 11:23 PM - Alice: text        Android, US (U+202F before PM)
    [24.12.19, 11:23:45] Alice: text        iOS, with seconds (and U+200E)
    2019/12/24, 11:23. - Alice: text        year first, trailing dot

A line that does not start with a date and time continues the message above
it. Lines without ``Author:`` are system lines ("You were added"). A ``.zip``
export ("include media") holds the chat as ``_chat.txt`` (iOS) or
``WhatsApp Chat with X.txt`` (Android) next to the media files.

Whether ``03/04/24`` is the 3rd of April or the 4th of March cannot be told
from one line, so the whole file decides: see :func:`parse_chat_text`.
"""

from __future__ import annotations

import codecs
import os
import re
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

from wabscan.errors import InputError

# Years of messages from a large group come to tens of megabytes; the cap
# keeps a wrong file or a zip bomb from exhausting the appliance's memory.
MAX_CHAT_BYTES = 256 * 1024 * 1024

# Direction marks and embeddings that iOS puts before "<attached: ...>", at
# line starts and around names. They are invisible and would split tokens.
_MARKS = re.compile("[\u200e\u200f\u202a-\u202e]")

# The header of a message, in every layout seen in exports. The separators
# may carry one space ("2024. 01. 02." in Hungarian, "2. 1. 2024" in Czech);
# the time may use dots (Danish "14.05"). Not covered: clocks with a word
# for a.m./p.m. or the time ("오후 3:05", "午後3:05", "klo 14.05"), whose
# lines are not recognised as headers, and two-digit years written first
# (yy/mm/dd), which are read as dd/mm/yy.
_HEADER = re.compile(
    r"""
    (?P<bracket>\[)?                        # iOS: "[date, time] "
    (?:
        (?P<ymd_year>\d{4}) (?P<ymd_sep>[./-]\ ?) (?P<ymd_month>\d{1,2})
        (?P=ymd_sep) (?P<ymd_day>\d{1,2})
      | (?P<first>\d{1,2}) (?P<sep>[./-]\ ?) (?P<second>\d{1,2})
        (?P=sep) (?P<year>\d{4}|\d{2})
    )
    \.?                                     # "24.12.19." in some locales
    (?: ,\s* | \s+ )                        # the comma is missing in some
    (?P<hour>\d{1,2}) [:.] (?P<minute>\d{2}) (?: [:.] (?P<seconds>\d{2}) )?
    (?: \s* (?P<meridiem>[AaPp]) \.? \s* [Mm] \.? )?   # PM, p.m., p.\xa0m.
    \.?                                     # "13:34. - " in some locales
    (?(bracket)
        \]\s*
      | (?: \s+ [-\u2013] \s                # Android: "date, time - "
          | :\s )                           # old iOS: "date, time: "
    )
    """,
    re.VERBOSE,
)

# A quote before the first ": " means the colon sits inside a quoted group
# subject of a system line ('X changed the subject to "Trip: Rome"').
_QUOTED = re.compile('["\u201c\u201d]')

# "John Doe:" with nothing after it (an editor trimmed the space) and the
# "John Doe:." that chat-miner's fixtures use for a disappearing message.
_BARE_AUTHOR = re.compile(r'(?P<author>[^:"\u201c\u201d]+):(?P<text>\.?)')

# iOS writes system lines as "Group name: \u200eAlice added Bob". Only with
# that mark, and only for these English phrases, is such a line a system
# line; in other languages it stays a message by the group name, text intact.
_IOS_SYSTEM = re.compile(
    r"""
    Messages\ and\ calls\ are\ end-to-end\ encrypted
    | Messages\ to\ this\ group\ are\ now\ secured
    | Your\ security\ code\ with\ .+\ changed
    | Disappearing\ messages\ were\ turned
    | You're\ now\ an\ admin
    | .+?\ (?:created\ group | created\ this\ group | added | removed | left$
             | joined\ using\ this\ group's\ invite\ link
             | changed\ the\ (?:subject|group\ description|group\ name)
             | changed\ this\ group's\ (?:icon|settings)
             | changed\ their\ phone\ number)
    """,
    re.VERBOSE,
)

# Only the English markers: a localised "(Datei angehängt)" or
# "<Medien ausgeschlossen>" leaves ``attachment`` None; the text is kept.
_ATTACHED = re.compile(r"<attached:\s*(?P<name>[^>]+?)\s*>")
_FILE_ATTACHED = re.compile(r"(?P<name>\S.*?)\s\(file\ attached\)", re.VERBOSE)
_OMITTED = re.compile(
    r"<Media omitted>"
    r"|(?:^|\s)(?:image|video|audio|sticker|GIF|document|Contact card) omitted$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of an export, as WhatsApp wrote it.

    Attributes:
        time: naive local time as written in the export.
        author: the sender's display name or number; None for system lines.
        text: the whole message, lines joined with "\\n", direction marks
            (U+200E, U+200F, U+202A-U+202E) removed.
        line: 1-based line number where the message starts.
        system: True for lines WhatsApp wrote itself ("X created group").
        attachment: the media file name ("<attached: 0001-PHOTO.jpg>",
            "IMG-1.jpg (file attached)"), "omitted" for "<Media omitted>" or
            "image omitted", else None.
    """

    time: datetime
    author: str | None
    text: str
    line: int
    system: bool
    attachment: str | None


@dataclass(frozen=True, slots=True)
class ChatExport:
    """A parsed export: its messages in file order and the date order used."""

    source: str
    messages: list[ChatMessage]
    date_order: str


def parse_chat(path: str | os.PathLike[str]) -> ChatExport:
    """Parse an exported chat: a ``.txt`` file or the ``.zip`` with media.

    Args:
        path: the export. Zip archives are recognised by their content, not
            their name; inside, ``_chat.txt`` or a ``WhatsApp ... .txt`` is
            preferred, else the only ``.txt``.

    Returns:
        The export, with ``source`` set to ``path`` as given.

    Raises:
        InputError: the file is missing, unreadable, binary, not UTF-8, a zip
            without a chat, or not a WhatsApp export (see
            :func:`parse_chat_text`).

    Example::

        export = parse_chat("WhatsApp Chat with Family.zip")
        links = [m.text for m in export.messages if "http" in m.text]
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            magic = file.read(4)
            # A zip with media can be gigabytes; only the chat is read.
            if magic in (b"PK\x03\x04", b"PK\x05\x06"):
                member, data = _read_zip_chat(source)
                where = f"{source}:{member}"
            else:
                size = os.fstat(file.fileno()).st_size
                _check_size(source, size)
                data = magic + file.read()
                where = source
    except FileNotFoundError:
        raise InputError(source, "no such file") from None
    except IsADirectoryError:
        raise InputError(source, "is a directory, not a chat export") from None
    except OSError as error:
        raise InputError(source, f"cannot read ({error.strerror or error})") from None

    return _parse(_decode(data, where), source, where)


def parse_chat_text(text: str, source: str = "<text>") -> ChatExport:
    """Parse the text of an exported chat.

    Day or month first is decided once per file: a date whose first number
    is above 12 votes day-first, one whose second number is above 12 votes
    month-first, and the larger vote wins. With no votes, or a tie, the file
    is read day-first, the order of most locales WhatsApp ships in; a US
    export whose every day so far is 12 or less is then misread, and only
    more messages can tell. Year-first dates are unambiguous.

    A line that looks like a header but names an impossible date or time
    under that order (month 13, 25:00) is a continuation line: WhatsApp never
    writes one, so someone typed it.

    ``date_order`` is "YMD" only when every date is written year first.

    An empty file, or one with only blank lines, is a valid export with no
    messages rather than an error: nothing in it contradicts an export, and
    "0 messages, 0 links" is the true answer to a scan of it, where "not a
    WhatsApp chat export" would send the user looking for a format problem
    that is not there. A caller that expected messages can check ``messages``.

    Args:
        text: the export's text.
        source: the name used in ``ChatExport.source`` and in errors.

    Returns:
        The export, messages in file order.

    Raises:
        InputError: the text contains NUL characters, has text before its
            first message, or no line starts with a date and time.
    """
    return _parse(text, source, source)


def _parse(text: str, source: str, where: str) -> ChatExport:
    nul = text.find("\0")
    if nul >= 0:
        number = text.count("\n", 0, nul) + 1
        raise InputError(f"{where}:{number}", "contains NUL bytes; not a text file")

    # Only "\n" ends a line: str.splitlines() would also split at U+2028 or
    # \x1c inside a message and shift every line number after it.
    raw_lines = text.removeprefix("\ufeff").split("\n")
    lines = [_MARKS.sub("", raw.removesuffix("\r")) for raw in raw_lines]

    # Pass 1: every line that could start a message; together they decide
    # the date order.
    headers = {
        index: match
        for index, line in enumerate(lines)
        if (match := _HEADER.match(line)) is not None
    }
    date_order = _date_order(headers.values())

    # Pass 2: headers that name a real moment start messages, and the lines
    # up to the next one continue them. Many messages share a minute, so
    # each distinct header is converted once.
    moments: dict[str, datetime | None] = {}
    starts: list[tuple[int, datetime, re.Match[str]]] = []
    for index, match in headers.items():
        if match[0] not in moments:
            moments[match[0]] = _header_time(match, date_order)
        moment = moments[match[0]]
        if moment is not None:
            starts.append((index, moment, match))
    bounds = [index for index, _, _ in starts] + [len(lines)]
    messages = [
        _message(
            index,
            moment,
            [lines[index][match.end() :], *lines[index + 1 : end]],
            raw_lines[index],
        )
        for (index, moment, match), end in zip(starts, bounds[1:], strict=True)
    ]

    before_first = starts[0][0] if starts else len(lines)
    stray = next((i for i in range(before_first) if lines[i].strip()), None)
    if stray is not None and not messages:
        raise InputError(
            where, "not a WhatsApp chat export (no line starts with a date and time)"
        )
    if stray is not None:
        raise InputError(
            f"{where}:{stray + 1}",
            "text before the first message; a WhatsApp export starts with a date "
            "and time",
        )
    return ChatExport(source=source, messages=messages, date_order=date_order)


def _date_order(headers: Iterable[re.Match[str]]) -> str:
    day_first = month_first = year_first = other = 0
    for match in headers:
        if match["ymd_year"]:
            year_first += 1
            continue
        other += 1
        first, second = int(match["first"]), int(match["second"])
        if first > 12 >= second:
            day_first += 1
        elif second > 12 >= first:
            month_first += 1
    if year_first and not other:
        return "YMD"
    return "MDY" if month_first > day_first else "DMY"


def _header_time(match: re.Match[str], date_order: str) -> datetime | None:
    if match["ymd_year"]:
        year, month, day = map(int, match.group("ymd_year", "ymd_month", "ymd_day"))
    else:
        first, second, year = map(int, match.group("first", "second", "year"))
        month, day = (first, second) if date_order == "MDY" else (second, first)
        # WhatsApp dates from 2009 on, so a two-digit year is in this century.
        if year < 100:
            year += 2000

    hour = int(match["hour"])
    meridiem = match["meridiem"]
    if meridiem is not None:
        if hour > 12:
            return None
        # 12 a.m. is midnight and 12 p.m. noon; chat-miner's fixtures also
        # write midnight as "00:08 a. m.".
        hour = hour % 12 + (12 if meridiem in "Pp" else 0)

    try:
        return datetime(
            year, month, day, hour, int(match["minute"]), int(match["seconds"] or 0)
        )
    except ValueError:
        return None


def _message(index: int, time: datetime, body: list[str], raw: str) -> ChatMessage:
    # A message never ends in a blank line; the file's final newline and
    # blank lines between messages would otherwise stick to it.
    while len(body) > 1 and not body[-1].strip():
        body.pop()
    first = body[0]
    author, first = _split_author(first)
    text = "\n".join([first, *body[1:]])

    # Typed text never carries the mark iOS puts after "Group name: ".
    if author is not None and ": \u200e" in raw and _IOS_SYSTEM.match(first):
        author = None
    system = author is None

    return ChatMessage(
        time=time,
        author=author,
        text=text,
        line=index + 1,
        system=system,
        attachment=None if system else _attachment(text),
    )


def _split_author(rest: str) -> tuple[str | None, str]:
    author, colon, text = rest.partition(": ")
    author = author.strip()
    if colon and author and not _QUOTED.search(author):
        return author, text
    bare = _BARE_AUTHOR.fullmatch(rest)
    if bare is not None and bare["author"].strip():
        return bare["author"].strip(), bare["text"]
    return None, rest


def _attachment(text: str) -> str | None:
    # Nearly every message is plain text; skip the patterns for those.
    if "attached" not in text and "omitted" not in text.lower():
        return None
    attached = _ATTACHED.search(text)
    if attached is not None:
        return attached["name"]
    first = text.split("\n", 1)[0].strip()
    file_attached = _FILE_ATTACHED.fullmatch(first)
    if file_attached is not None:
        return file_attached["name"]
    if _OMITTED.search(first):
        return "omitted"
    return None


def _check_size(where: str, size: int) -> None:
    if size > MAX_CHAT_BYTES:
        raise InputError(
            where,
            f"{size // 2**20} MiB of chat text is more than the "
            f"{MAX_CHAT_BYTES // 2**20} MiB limit; export a shorter period",
        )


def _read_zip_chat(source: str) -> tuple[str, bytes]:
    try:
        with zipfile.ZipFile(source) as archive:
            member = _chat_member(source, archive.infolist())
            _check_size(f"{source}:{member.filename}", member.file_size)
            with archive.open(member) as file:
                # file_size comes from the archive and may lie; read no more.
                return member.filename, file.read(MAX_CHAT_BYTES + 1)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,  # compression methods zipfile lacks
        EOFError,
        zlib.error,
    ) as error:
        raise InputError(source, f"not a readable zip archive ({error})") from None
    except RuntimeError as error:  # encrypted members
        raise InputError(source, f"cannot read the zip archive ({error})") from None


def _chat_member(source: str, members: list[zipfile.ZipInfo]) -> zipfile.ZipInfo:
    # macOS adds "__MACOSX/._chat.txt" resource forks that are not text.
    texts = [
        member
        for member in members
        if not member.is_dir()
        and member.filename.lower().endswith(".txt")
        and not member.filename.startswith("__MACOSX/")
        and not PurePosixPath(member.filename).name.startswith("._")
    ]
    for preferred in (
        lambda name: name == "_chat.txt",
        lambda name: "whatsapp" in name.lower(),
    ):
        for member in texts:
            if preferred(PurePosixPath(member.filename).name):
                return member
    if len(texts) == 1:
        return texts[0]

    if not texts:
        found = ", ".join(member.filename for member in members[:5]) or "nothing"
        raise InputError(source, f"no .txt chat inside this zip (found: {found})")
    names = ", ".join(member.filename for member in texts[:5])
    raise InputError(
        source,
        f"several .txt files and none named like a WhatsApp chat ({names}); "
        "extract the chat and pass the .txt",
    )


def _decode(data: bytes, where: str) -> str:
    # Exports are UTF-8; a file re-saved on Windows may be UTF-16 with a BOM.
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise InputError(where, "not valid UTF-16 text") from None

    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise InputError(
            f"{where}:{line}", "binary data (NUL bytes), not a WhatsApp chat export"
        )
    if len(data) > MAX_CHAT_BYTES:
        _check_size(where, len(data))

    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InputError(
            f"{where}:{line}",
            f"not UTF-8 text (byte 0x{data[error.start]:02x}); WhatsApp exports "
            "are UTF-8, so re-export the chat or save the file as UTF-8",
        ) from None
