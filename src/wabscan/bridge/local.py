"""The local transport: a stand-in for WhatsApp, for tests, the demo and soak runs.

Selected by ``bridge.transport = "local"``, never by default. It is one
SQLite file, ``<bridge.local_transport_dir>/local-transport.sqlite3``, that
two sides share:

- the harness (:class:`LocalChat`, the ``wabscan local-transport`` commands)
  plays group members and admins: it appends rows to ``inbound`` (a message,
  an edit of an earlier one, or the bot being added to a group), and reads
  ``sent``, what the bot said;
- the bridge (:class:`LocalTransport`) reads ``inbound`` in order, hands the
  rows to the same inbound path as WhatsApp's messages (as
  :class:`~wabscan.bridge.events.InboundMessage`), and moves its read
  position (``delivered``) only once they are durable. That is the
  acknowledgement WhatsApp would get: a bridge killed before it reads the
  rows again, as WhatsApp re-delivers an unacknowledged message.

``sent`` is keyed by the message id the bridge chose: a second send with
the same id is counted (``attempts``) but recorded once, as WhatsApp drops a
message whose id it has seen. The file holds test conversations, not an
appliance's data; the appliance's database never sees a message's text.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import trio
from sqlite_utils import Database

from wabscan.bridge.events import GroupJoined, InboundMessage
from wabscan.bridge.session import Session, SessionState
from wabscan.bridge.transport import InboundSink, RecentMessages
from wabscan.config import Config
from wabscan.errors import InputError
from wabscan.serial import SerialDatabase
from wabscan.storage import format_time, parse_time

FILENAME: Final = "local-transport.sqlite3"
READER: Final = "bridge"
POLL: Final = 0.02  # idle poll of the inbound table; a read costs ~50 us
BATCH: Final = 100

_SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS inbound (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL DEFAULT 'message' CHECK (kind IN ('message', 'join')),
        message_id TEXT NOT NULL UNIQUE,
        group_jid TEXT NOT NULL,
        group_name TEXT NOT NULL DEFAULT '',
        sender TEXT NOT NULL DEFAULT '',
        sender_name TEXT NOT NULL DEFAULT '',
        is_admin INTEGER NOT NULL DEFAULT 0,
        text TEXT NOT NULL DEFAULT '',
        edit_of TEXT,
        at TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS inbound_sender ON inbound(group_jid, sender)",
    """
    CREATE TABLE IF NOT EXISTS delivered (
        reader TEXT PRIMARY KEY,
        last_id INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS sent (
        wa_message_id TEXT PRIMARY KEY,
        group_jid TEXT NOT NULL,
        quote TEXT NOT NULL DEFAULT '',
        text TEXT NOT NULL,
        at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 1
    )
    """,
)


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message the bot sent, as the local transport recorded it.

    Attributes:
        wa_message_id: the id the bridge gave it.
        group: the group's JID.
        quote: the id of the message it quotes, or empty.
        text: what it said.
        at: when it was first recorded.
        attempts: how many times it was sent (more than one after a crash
            between sending and recording; recorded once all the same).
    """

    wa_message_id: str
    group: str
    quote: str
    text: str
    at: str
    attempts: int


def transport_file(config: Config) -> Path:
    """The local transport's file for a configuration."""
    directory = config.bridge.local_transport_dir
    base = Path(directory) if directory else config.state_path / "local-transport"
    return base / FILENAME


def open_transport_file(path: str | Path) -> Database:
    """Open (creating) the shared file, usable from any thread."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(sqlite3.connect(str(path), check_same_thread=False))
    db.execute("PRAGMA busy_timeout = 5000")
    db.enable_wal()
    db.execute("PRAGMA synchronous = NORMAL")
    for statement in _SCHEMA:
        db.execute(statement)
    return db


def group_jid(group: str) -> str:
    """A group JID from what a person types: ``family`` is ``family@g.us``."""
    group = group.strip()
    if not group:
        raise InputError("--group", "must not be empty")
    return group if "@" in group else f"{group}@g.us"


def sender_jid(sender: str) -> str:
    """A sender JID: ``15550001`` is ``15550001@s.whatsapp.net``."""
    sender = sender.strip().lstrip("+")
    if not sender:
        raise InputError("--sender", "must not be empty")
    return sender if "@" in sender else f"{sender}@s.whatsapp.net"


class LocalChat:
    """The harness side of the local transport: plays the people in groups.

    Args:
        path: the transport's file (see :func:`transport_file`).

    Example::

        chat = LocalChat(transport_file(config))
        chat.add_bot("family", "Family")
        chat.post("family", "15550001111", "!wabscan enable", admin=True)
        chat.post("family", "15550002222", "free gift: evil-shop.com/claim")
        replies = chat.wait_for_sent(2)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = open_transport_file(self.path)

    def close(self) -> None:
        self.db.close()

    def post(
        self,
        group: str,
        sender: str,
        text: str,
        *,
        admin: bool = False,
        name: str = "",
        group_name: str = "",
        edit_of: str | None = None,
        at: datetime | None = None,
    ) -> str:
        """A member (or admin) writes ``text`` in ``group``; returns the
        message's id. With ``edit_of``, it is an edit of that message."""
        message_id = "L" + uuid.uuid4().hex[:19].upper()
        self.db.execute(
            "INSERT INTO inbound (kind, message_id, group_jid, group_name, sender,"
            " sender_name, is_admin, text, edit_of, at)"
            " VALUES ('message', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message_id,
                group_jid(group),
                group_name,
                sender_jid(sender),
                name,
                int(admin),
                text,
                edit_of,
                format_time(at or datetime.now(UTC)),
            ),
        )
        return message_id

    def add_bot(self, group: str, group_name: str = "") -> str:
        """The bot's account is added to ``group``; returns the event's id."""
        event_id = "J" + uuid.uuid4().hex[:19].upper()
        self.db.execute(
            "INSERT INTO inbound (kind, message_id, group_jid, group_name, at)"
            " VALUES ('join', ?, ?, ?, ?)",
            (event_id, group_jid(group), group_name, format_time(datetime.now(UTC))),
        )
        return event_id

    def sent(self) -> list[SentMessage]:
        """Everything the bot sent, in the order it was first recorded."""
        rows = self.db.execute(
            "SELECT wa_message_id, group_jid, quote, text, at, attempts"
            " FROM sent ORDER BY rowid"
        ).fetchall()
        return [SentMessage(*row) for row in rows]

    def wait_for_sent(self, count: int, timeout: float = 10.0) -> list[SentMessage]:
        """Wait until the bot sent at least ``count`` messages; all of them.

        Raises:
            TimeoutError: fewer arrived within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            sent = self.sent()
            if len(sent) >= count:
                return sent
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(sent)} of {count} messages sent")
            time.sleep(0.02)

    def delivered(self) -> int:
        """How many inbound rows the bridge has taken (made durable)."""
        row = self.db.execute(
            "SELECT last_id FROM delivered WHERE reader = ?", (READER,)
        ).fetchone()
        return int(row[0]) if row else 0

    def wait_until_delivered(self, timeout: float = 10.0) -> None:
        """Wait until the bridge has taken every inbound row.

        Raises:
            TimeoutError: it has not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            row = self.db.execute("SELECT max(id) FROM inbound").fetchone()
            if self.delivered() >= int(row[0] or 0):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the bridge has not read every message")
            time.sleep(0.02)


class LocalTransport:
    """The bridge's side of the local transport.

    Args:
        path: the transport's file.
    """

    name = "local"
    custom_ids = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.shared = SerialDatabase(open_transport_file(self.path))
        self.recent: RecentMessages[bool] = RecentMessages()

    async def run(
        self,
        sink: InboundSink,
        session: Session,
        stopping: trio.Event,
        beat: Callable[[], None],
    ) -> None:
        session.set(SessionState.CONNECTED, f"local transport, {self.path}")
        position = await self.shared.run(_position)
        while not stopping.is_set():
            beat()
            rows = await self.shared.run(_rows_after, position, BATCH)
            if not rows:
                with trio.move_on_after(POLL):
                    await stopping.wait()
                continue
            messages: list[InboundMessage] = []
            for row in rows:
                if row["kind"] == "join":
                    await sink.accept(messages)
                    messages = []
                    await sink.joined(_joined(row))
                    continue
                message = _message(row)
                self.recent.put(message.group, message.message_id, True)
                messages.append(message)
            await sink.accept(messages)
            position = int(rows[-1]["id"])
            await self.shared.run(_set_position, position)

    async def send(self, group: str, text: str, *, quote: str, message_id: str) -> str:
        message_id = message_id or "3EB0" + uuid.uuid4().hex[:20].upper()
        known = bool(quote) and self.recent.get(group, quote) is not None
        await self.shared.run(
            _record_sent, message_id, group, quote if known else "", text
        )
        return message_id

    async def is_admin(self, group: str, sender_jid: str, sender_pn: str) -> bool:
        return bool(await self.shared.run(_is_admin, group, sender_pn or sender_jid))

    def close(self) -> None:
        self.shared.close()


def local_send(
    config: Config,
    group: str,
    sender: str,
    text: str,
    *,
    admin: bool = False,
    name: str = "",
) -> str:
    """``wabscan local-transport send``: post a message as a member; returns
    its id.

    Raises:
        InputError: an empty group, sender or text.
    """
    if not text.strip():
        raise InputError("TEXT", "must not be empty")
    chat = LocalChat(transport_file(config))
    try:
        return chat.post(group, sender, text, admin=admin, name=name)
    finally:
        chat.close()


def local_sent(config: Config, *, as_json: bool = False) -> str:
    """``wabscan local-transport sent``: what the bot sent, as text to print
    (one JSON object a line with ``as_json``)."""
    path = transport_file(config)
    if not path.exists():
        return ""
    chat = LocalChat(path)
    try:
        sent = chat.sent()
    finally:
        chat.close()
    if as_json:
        return "\n".join(json.dumps(asdict(m), ensure_ascii=False) for m in sent)
    blocks = []
    for message in sent:
        quoted = f" (reply to {message.quote})" if message.quote else ""
        repeats = (
            f" [sent {message.attempts}x, recorded once]"
            if message.attempts > 1
            else ""
        )
        blocks.append(
            f"[{message.at}] {message.group}{quoted}{repeats}\n{message.text}"
        )
    return "\n\n".join(blocks)


def _position(db: Database) -> int:
    row = db.execute(
        "SELECT last_id FROM delivered WHERE reader = ?", (READER,)
    ).fetchone()
    return int(row[0]) if row else 0


def _set_position(db: Database, last_id: int) -> None:
    db.execute(
        "INSERT INTO delivered (reader, last_id) VALUES (?, ?)"
        " ON CONFLICT (reader) DO UPDATE SET last_id = excluded.last_id",
        (READER, last_id),
    )


def _rows_after(db: Database, position: int, limit: int) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT * FROM inbound WHERE id > ? ORDER BY id LIMIT ?", (position, limit)
        )
    )


def _record_sent(
    db: Database, message_id: str, group: str, quote: str, text: str
) -> None:
    db.execute(
        "INSERT INTO sent (wa_message_id, group_jid, quote, text, at)"
        " VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (wa_message_id) DO UPDATE SET attempts = attempts + 1",
        (message_id, group, quote, text, format_time(datetime.now(UTC))),
    )


def _is_admin(db: Database, group: str, sender: str) -> bool:
    row = db.execute(
        "SELECT is_admin FROM inbound WHERE group_jid = ? AND sender = ?"
        " ORDER BY id DESC LIMIT 1",
        (group, sender),
    ).fetchone()
    return bool(row and row[0])


def _message(row: dict[str, Any]) -> InboundMessage:
    edit_of = row["edit_of"]
    sender = str(row["sender"])
    return InboundMessage(
        group=str(row["group_jid"]),
        message_id=str(edit_of or row["message_id"]),
        sender_jid=sender,
        sender_pn=sender if sender.endswith("@s.whatsapp.net") else "",
        sender_is_admin=bool(row["is_admin"]),
        text=str(row["text"]),
        at=parse_time(row["at"]),
        edited=bool(edit_of),
        edit_id=str(row["message_id"]) if edit_of else "",
        group_name=str(row["group_name"] or ""),
    )


def _joined(row: dict[str, Any]) -> GroupJoined:
    return GroupJoined(
        group=str(row["group_jid"]),
        name=str(row["group_name"] or ""),
        key=str(row["message_id"]),
        at=parse_time(row["at"]),
    )
