"""The appliance tests' hands inside the container.

conftest.py pipes this file to the appliance's own Python
(``runuser -u wabscan -- /opt/wabscan/bin/python - COMMAND ...``), so it runs
as the service user, with the installed wabscan, next to the real files. It
plays group members through the local transport and reads back what the
units recorded; each command prints one JSON document.

Every message it posts starts with ``BODY_WORD`` and comes from a number
starting with ``SENDER_PREFIX``, so the journal test can look for both.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import redis

from wabscan import queue
from wabscan.bridge.local import LocalChat, transport_file
from wabscan.config import load_config

BODY_WORD = "zanzibarquokka"  # in every posted body, in no log line
SENDER_PREFIX = "1555777"  # posted senders' numbers: 15557770000..15557770009
EVIL = "evil-wabscan-test.example"  # denied by an override in the tests
BENIGN = "wikipedia.org"  # allowed by an override in the tests
DATABASE = Path("/var/lib/wabscan/wabscan.sqlite3")
STREAMS = (
    (queue.SCAN, "scanner"),
    (queue.VERDICT, "reporter"),
    (queue.OUTBOX, "bridge"),
)
FILLER = "wabscan-test:filler:"
POSTED = re.compile(rf"{BODY_WORD} (\S+) (\d+),")  # what post() writes


def _config() -> Any:
    return load_config(os.environ.get("WABSCAN_CONFIG", "/etc/wabscan/wabscan.toml"))


def _redis() -> redis.Redis:
    return redis.Redis.from_url(_config().redis_url, decode_responses=True)


def _database() -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{DATABASE}?mode=ro", uri=True, timeout=10)
    db.row_factory = sqlite3.Row
    return db


def post(args: argparse.Namespace) -> Any:
    """Members post ``count`` messages at ``rate`` a second: each has a benign
    link, every ``malicious_every``-th also a malicious one."""
    chat = LocalChat(transport_file(_config()))
    posted = []
    started = time.monotonic()
    try:
        for n in range(args.count):
            links = []
            malicious = args.malicious_every > 0 and n % args.malicious_every == 0
            if malicious:
                links.append(f"http://m{n}-{args.tag}.{EVIL}/claim?n={n}")
            links.append(f"https://{BENIGN}/wiki/{args.tag}_{n}")
            text = f"{BODY_WORD} {args.tag} {n}, see " + " and ".join(links)
            sender = f"{SENDER_PREFIX}{n % 10:04d}"
            message_id = chat.post(args.group, sender, text, name="Member")
            posted.append({"id": message_id, "malicious": malicious})
            if args.rate:
                delay = started + (n + 1) / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    finally:
        chat.close()
    return posted


def command(args: argparse.Namespace) -> Any:
    """A group admin says something (``!wabscan enable``)."""
    chat = LocalChat(transport_file(_config()))
    try:
        return {"id": chat.post(args.group, args.sender, args.text, admin=True)}
    finally:
        chat.close()


def depths(args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Undelivered and unacknowledged entries of every stream, the bridge's
    spool, and replies the reporter has not handed to the outbox yet."""
    client = _redis()
    try:
        streams = {s: queue.depth_sync(client, s, g) for s, g in STREAMS}
    finally:
        client.close()
    with _database() as db:
        spool = db.execute("SELECT count(*) FROM bridge_spool").fetchone()[0]
        queued = db.execute(
            "SELECT count(*) FROM replies WHERE status = 'queued'"
        ).fetchone()[0]
    return {"streams": streams, "spool": spool, "queued_replies": queued}


def settle(args: argparse.Namespace) -> Any:
    """Wait until the bridge took every posted row, nothing waits anywhere,
    and the bot has sent nothing new for ``quiet`` seconds."""
    chat = LocalChat(transport_file(_config()))
    deadline = time.monotonic() + args.timeout
    last = (-1, time.monotonic())
    state: dict[str, Any] = {}
    try:
        while time.monotonic() < deadline:
            newest = chat.db.execute("SELECT max(id) FROM inbound").fetchone()[0]
            delivered = chat.delivered()
            try:
                state = depths()
                busy = (
                    any(sum(d.values()) for d in state["streams"].values())
                    or state["spool"]
                    or state["queued_replies"]
                )
            except (redis.RedisError, sqlite3.Error) as exc:
                state = {"error": repr(exc)}
                busy = True
            busy = busy or delivered < (newest or 0)
            count = len(chat.sent())
            if busy or count != last[0]:
                last = (count, time.monotonic())
            elif time.monotonic() - last[1] >= args.quiet:
                return {"settled": True, "sent": count, **state}
            time.sleep(0.1)
        return {"settled": False, "delivered": delivered, "newest": newest, **state}
    finally:
        chat.close()


def account(args: argparse.Namespace) -> Any:
    """For every message posted to ``group``: its links as the scanner
    recorded them (sightings), and the warnings the bot sent about it. A
    warning is recognised by the message's own malicious link in its text
    (each is unique), so a warning sent twice under two ids, or sent without
    quoting its message, is still counted against the right message."""
    chat = LocalChat(transport_file(_config()))
    try:
        messages = chat.db.execute(
            "SELECT message_id, text FROM inbound WHERE kind = 'message'"
            " AND group_jid = ? AND text LIKE ?",
            (args.group, f"{BODY_WORD}%"),
        ).fetchall()
        sent = chat.db.execute(
            "SELECT quote, text, attempts FROM sent WHERE group_jid = ?",
            (args.group,),
        ).fetchall()
    finally:
        chat.close()

    with _database() as db:
        sightings = dict(
            db.execute(
                "SELECT message_id, count(*) FROM sightings WHERE group_id = ?"
                " GROUP BY message_id",
                (args.group,),
            ).fetchall()
        )

    report: dict[str, Any] = {
        "messages": len(messages),
        "links": 0,
        "links_recorded": 0,
        "links_lost": [],
        "warnings_expected": 0,
        "warnings_sent": 0,
        "warnings_lost": [],
        "warnings_doubled": [],
        "warnings_unquoted": [],
        "unexpected_replies": [],
        "resent_same_id": 0,
    }
    for message_id, text in messages:
        tag, number = POSTED.match(text).groups()  # type: ignore[union-attr]
        links = len(re.findall(r"https?://", text))
        report["links"] += links
        report["links_recorded"] += sightings.get(message_id, 0)
        if sightings.get(message_id, 0) != links:
            report["links_lost"].append(message_id)
        if EVIL not in text:
            if any(quote == message_id for quote, _, _ in sent):
                report["unexpected_replies"].append(message_id)
            continue
        marker = f"hxxp://m{number}-{tag}[.]"
        warnings = [(q, a) for q, t, a in sent if marker in t]
        report["warnings_expected"] += 1
        report["warnings_sent"] += min(len(warnings), 1)
        report["resent_same_id"] += sum(a - 1 for _, a in warnings)
        if not warnings:
            report["warnings_lost"].append(message_id)
        elif len(warnings) > 1:
            report["warnings_doubled"].append(message_id)
        elif warnings[0][0] != message_id:
            report["warnings_unquoted"].append(message_id)
    return report


def redis_info(args: argparse.Namespace) -> Any:
    client = _redis()
    try:
        memory = client.info("memory")
        return {
            "used_memory": memory["used_memory"],
            "maxmemory": memory["maxmemory"],
            # Entries ever added (consumers delete what they are done with,
            # so the length says only what is in flight).
            "streams": {s: _entries_added(client, s) for s, _ in STREAMS},
            "lengths": {s: client.xlen(s) for s, _ in STREAMS},
        }
    finally:
        client.close()


def _entries_added(client: Any, stream: str) -> int:
    if not client.exists(stream):
        return 0
    return int(client.xinfo_stream(stream)["entries-added"])


def redis_fill(args: argparse.Namespace) -> Any:
    """Write ``megabytes`` of filler values (under the usual maxmemory)."""
    client = _redis()
    try:
        for n in range(args.megabytes * 16):
            client.set(f"{FILLER}{n}", "x" * 65536)
        return {"written": args.megabytes * 16, **redis_info(args)}
    finally:
        client.close()


def redis_free(args: argparse.Namespace) -> Any:
    client = _redis()
    try:
        keys = list(client.scan_iter(f"{FILLER}*"))
        return {"deleted": client.delete(*keys) if keys else 0}
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="inside.py")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("post")
    p.add_argument("--group", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--malicious-every", type=int, default=2)
    p.set_defaults(run=post)
    p = sub.add_parser("command")
    p.add_argument("--group", required=True)
    p.add_argument("--sender", default=f"{SENDER_PREFIX}9999")
    p.add_argument("text")
    p.set_defaults(run=command)
    p = sub.add_parser("depths")
    p.set_defaults(run=depths)
    p = sub.add_parser("settle")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--quiet", type=float, default=2.0)
    p.set_defaults(run=settle)
    p = sub.add_parser("account")
    p.add_argument("--group", required=True)
    p.set_defaults(run=account)
    p = sub.add_parser("redis-info")
    p.set_defaults(run=redis_info)
    p = sub.add_parser("redis-fill")
    p.add_argument("--megabytes", type=int, default=4)
    p.set_defaults(run=redis_fill)
    p = sub.add_parser("redis-free")
    p.set_defaults(run=redis_free)
    args = parser.parse_args()
    json.dump(args.run(args), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
