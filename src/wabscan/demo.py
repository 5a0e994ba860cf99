"""``wabscan demo``: the whole appliance on a sample conversation.

Starts a private Redis and the three units with the local WhatsApp transport
in a temporary folder, imports a small feed and allowlist, adds the bot to a
group, has the group's admin say ``!wabscan enable``, replays a family group's
chat export message by message, waits until every unit is idle, and prints
the conversation with the bot's replies under the messages they quote.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import redis
import tomli_w
from rich.console import Console
from rich.markup import escape

from wabscan import queue
from wabscan.bridge.local import LocalChat, SentMessage
from wabscan.chatexport import ChatMessage, parse_chat
from wabscan.config import load_config
from wabscan.errors import WabscanError
from wabscan.feeds import import_feed
from wabscan.storage import open_database
from wabscan.supervise import LocalAppliance

GROUP = "carter-family"
IDLE_SECONDS = 2.0


class DemoError(WabscanError):
    pass


def demo_data(name: str) -> Path:
    return Path(str(resources.files("wabscan.data") / "demo" / name))


def write_config(path: Path, settings: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(settings), encoding="utf-8")
    return path


def demo_settings(state: Path, redis_url: str) -> dict[str, Any]:
    """A configuration for a local run: the local transport, and reply rates
    high enough that a 30-message conversation is not paced like a real one."""
    token = state / "control-token"
    token.write_text(secrets.token_hex(24) + "\n")
    token.chmod(0o600)
    return {
        "state_dir": str(state),
        "redis_url": redis_url,
        "bridge": {
            "transport": "local",
            "local_transport_dir": str(state / "local-transport"),
            "group_rate_per_minute": 600.0,
            "global_rate_per_minute": 6000.0,
            "reply_jitter_seconds": 0.0,
        },
        "reporter": {"token_file": str(token)},
    }


@dataclass
class Posted:
    message: ChatMessage
    message_id: str


@dataclass
class DemoResult:
    posted: list[Posted]
    sent: list[SentMessage]

    def replies_to(self, message: ChatMessage) -> list[SentMessage]:
        ids = {p.message_id for p in self.posted if p.message is message}
        return [s for s in self.sent if s.quote in ids]


def run_demo(
    chat_file: Path | None = None,
    state: Path | None = None,
    console: Console | None = None,
    verbose: bool = False,
) -> DemoResult:
    """Run the demo; what was posted and what the bot sent."""
    console = console or Console()
    chat = parse_chat(chat_file or demo_data("family-group.txt"))
    people = [m for m in chat.messages if not m.system and m.author]
    if not people:
        raise DemoError(str(chat.source), "no messages to replay")
    admin = people[0].author or ""

    with tempfile.TemporaryDirectory(prefix="wabscan-demo-", dir="/tmp") as tmp:
        state = state or Path(tmp)
        state.mkdir(parents=True, exist_ok=True)
        log = (state / "appliance.log").open("w", encoding="utf-8")
        appliance = LocalAppliance(state, state / "wabscan.toml", log=log)
        write_config(appliance.config_file, demo_settings(state, appliance.redis_url))
        config = load_config(appliance.config_file)
        _import_demo_feeds(config.database_path)

        console.print(f"[dim]starting redis and the three units in {state}…[/]")
        try:
            appliance.start()
            _wait_ready(appliance)
            result = _play(appliance, config, chat.messages, admin, console)
        except TimeoutError as exc:
            hint = "run with --verbose for the units' logs"
            raise DemoError(f"demo: {exc} ({hint})") from None
        finally:
            appliance.stop()
            log.close()
            if verbose:
                console.print((state / "appliance.log").read_text(), markup=False)
        return result


def _import_demo_feeds(database: Path) -> None:
    db = open_database(database)
    try:
        import_feed(db, demo_data("phishing-feed.txt"), "demo-phishing", "phishing")
        import_feed(db, demo_data("popular-sites.txt"), "demo-popular", "allow")
    finally:
        db.close()


def _wait_ready(appliance: LocalAppliance, timeout: float = 60.0) -> None:
    # The first request to each socket is also what starts a socket-activated
    # unit under systemd; here the units are already started.
    for unit in appliance.children:
        host, port = appliance.address(unit)
        _until(partial(_healthy, host, port), timeout, f"{unit} not ready")


def _healthy(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _play(
    appliance: LocalAppliance,
    config: Any,
    messages: list[ChatMessage],
    admin: str,
    console: Console,
) -> DemoResult:
    from wabscan.bridge.local import transport_file

    chat = LocalChat(transport_file(config))
    client = redis.Redis.from_url(appliance.redis_url, decode_responses=True)
    try:
        chat.add_bot(GROUP, "Carter family")
        enable = chat.post(
            GROUP, _phone(admin), "!wabscan enable", admin=True, name=admin
        )
        _wait_idle(chat, client)

        posted: list[Posted] = []
        for message in messages:
            if message.system or not message.author or not message.text:
                continue
            author = message.author
            message_id = chat.post(
                GROUP, _phone(author), message.text, admin=author == admin, name=author
            )
            posted.append(Posted(message, message_id))
        _wait_idle(chat, client)
        sent = chat.sent()
    finally:
        chat.close()
        client.close()

    _print(console, messages, posted, sent, admin, enable)
    return DemoResult(posted, sent)


def _wait_idle(chat: LocalChat, client: redis.Redis, timeout: float = 90.0) -> None:
    """Until the bridge took every message, every stream is drained, and the
    bot has sent nothing new for IDLE_SECONDS."""
    chat.wait_until_delivered(timeout)
    deadline = time.monotonic() + timeout
    last = (-1, time.monotonic())
    while time.monotonic() < deadline:
        busy = any(
            sum(queue.depth_sync(client, stream, group).values())
            for stream, group in (
                (queue.SCAN, "scanner"),
                (queue.VERDICT, "reporter"),
                (queue.OUTBOX, "bridge"),
            )
        )
        count = len(chat.sent())
        if count != last[0] or busy:
            last = (count, time.monotonic())
        elif time.monotonic() - last[1] > IDLE_SECONDS:
            return
        time.sleep(0.1)
    raise TimeoutError("the appliance did not settle within the time allowed")


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def _phone(author: str) -> str:
    """A stand-in number for a name (the local transport needs one)."""
    digits = "".join(c for c in author if c.isdigit())
    if author.startswith("+") and len(digits) >= 8:
        return digits
    return "1555" + str(int(hashlib.sha256(author.encode()).hexdigest(), 16))[:7]


def _print(
    console: Console,
    messages: list[ChatMessage],
    posted: list[Posted],
    sent: list[SentMessage],
    admin: str,
    enable_id: str,
) -> None:
    by_quote: dict[str, list[SentMessage]] = {}
    for reply in sent:
        by_quote.setdefault(reply.quote or "", []).append(reply)
    shown: set[str] = set()

    def replies(key: str) -> None:
        for reply in by_quote.get(key, []):
            shown.add(reply.wa_message_id)
            text = escape(reply.text).replace("\n", "\n    ")
            console.print(f"    [bold magenta]wabscan ▸[/] {text}")

    console.rule("[bold]Carter family[/] (replayed with wabscan in the group)")
    replies("")
    console.print(f"[cyan]{escape(admin)}[/] (admin): !wabscan enable")
    replies(enable_id)
    ids = {id(p.message): p.message_id for p in posted}
    for message in messages:
        stamp = message.time.strftime("%d/%m %H:%M")
        if message.system or not message.author:
            console.print(f"[dim]{stamp} · {escape(message.text)}[/]")
            continue
        body = escape(message.text).replace("\n", "\n    ")
        console.print(f"[dim]{stamp}[/] [cyan]{escape(message.author)}[/]: {body}")
        if id(message) in ids:
            replies(ids[id(message)])
    for reply in sent:
        if reply.wa_message_id not in shown:
            console.print(f"    [bold magenta]wabscan ▸[/] {escape(reply.text)}")
    console.rule(f"{len(sent)} messages from the bot")
