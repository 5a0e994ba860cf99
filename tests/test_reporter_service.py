"""The reporter unit end to end: VERDICT entries in, OUTBOX entries out, with a
real redis-server and a real SQLite file; and kill -9 in the middle of it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
from prometheus_client import CollectorRegistry, generate_latest

from tests.conftest import RedisServer
from wabscan import queue, storage
from wabscan.config import Config
from wabscan.http import Router
from wabscan.jobs import KIND_CHECK, KIND_MESSAGE, OutboxMessage, ScanJob
from wabscan.reporter import ledger
from wabscan.reporter.service import ReporterUnit, main
from wabscan.service import Unit
from wabscan.systemd import Notifier
from wabscan.verdict import Level

GROUPS = [f"12036300000000000{i}@g.us" for i in range(5)]


def verdict_fields(
    group: str,
    message: str,
    index: int,
    count: int,
    level: Level,
    kind: str = KIND_MESSAGE,
) -> dict[str, str]:
    url = f"https://{message.lower()}-{index}.example/{group[:6]}"
    fields = ScanJob(
        job=ScanJob.make_id(group, message, index),
        kind=kind,
        group=group,
        message=message,
        sender="0123456789abcdef",
        url=url,
        index=index,
        count=count,
        at="2025-03-14T11:59:00.000Z",
    ).to_fields()
    fields.update(
        canonical=url,
        verdict=level.value,
        score="70.0",
        reasons=json.dumps(["The domain ends in .example, an ending used for scams."]),
    )
    return fields


def outbox(url: str) -> list[OutboxMessage]:
    entries: Any = queue.connect(url).xrange(queue.OUTBOX)
    return [OutboxMessage.from_fields(fields) for _id, fields in entries]


def make_config(tmp_path: Path, server: RedisServer) -> Config:
    config = Config(
        state_dir=str(tmp_path / "state"),
        database=str(tmp_path / "state" / "wabscan.sqlite3"),
        redis_url=server.url,
    )
    config.listen.reporter = "127.0.0.1:0"
    return config


# -- in process ----------------------------------------------------------------


def test_verdicts_in_replies_out(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    config = make_config(tmp_path, redis_server)
    group = GROUPS[0]
    verdicts = [
        # Two links, one malicious: one reply naming it.
        verdict_fields(group, "A", 0, 2, Level.BENIGN),
        verdict_fields(group, "A", 1, 2, Level.MALICIOUS),
        # Benign only: silent.
        verdict_fields(group, "B", 0, 1, Level.BENIGN),
        # An admin's check: answered, benign included.
        verdict_fields(group, "C", 0, 1, Level.BENIGN, kind=KIND_CHECK),
        {"job": "junk", "verdict": "no-such-level"},  # malformed: skipped, acked
    ]
    registry = CollectorRegistry()
    unit = Unit("reporter", config, Notifier(), registry, Router())

    async def scenario() -> list[OutboxMessage]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(main, unit)
            producer = queue.Producer(queue.connect(config.redis_url), queue.VERDICT)
            await producer.add_many(verdicts[:3])
            await producer.add_many(verdicts[3:])
            client = queue.connect(config.redis_url)
            with trio.fail_after(10):
                while len(sent := await queue.call(outbox, config.redis_url)) < 2:
                    await trio.sleep(0.02)
                while queue.depth_sync(client, queue.VERDICT, "reporter")["pending"]:
                    await trio.sleep(0.02)
            assert unit.health.ok
            unit.stopping.set()
        return sent

    sent = trio.run(scenario)
    assert [(m.reply, m.kind, m.quote) for m in sent] == [
        (f"reply/{group}/A", "warning", "A"),
        (f"check/{group}/C", "command", "C"),
    ]
    assert "a-1[.]example" in sent[0].text and "a-0" not in sent[0].text
    assert "c-0[.]example" in sent[1].text
    metrics = generate_latest(registry).decode()
    assert 'wabscan_reporter_replies_total{kind="warning"} 1.0' in metrics
    assert 'wabscan_reporter_suppressed_total{reason="benign"} 1.0' in metrics
    assert 'wabscan_reporter_verdicts_total{verdict="malicious"} 1.0' in metrics


def test_a_held_warning_goes_out_when_the_mute_ends(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    config = make_config(tmp_path, redis_server)
    group = GROUPS[1]
    db = storage.open_database(config.database_path)
    until = storage.utc_now() + timedelta(hours=1)
    db.execute(
        "INSERT INTO groups (jid, enabled, muted_until, joined_at) VALUES (?, 1, ?, ?)",
        (group, storage.format_time(until), storage.format_time(until)),
    )
    unit = Unit("reporter", config, Notifier(), CollectorRegistry(), Router())

    async def scenario() -> list[OutboxMessage]:
        async with trio.open_nursery() as nursery:
            reporter = ReporterUnit(unit)
            nursery.start_soon(reporter.run)
            producer = queue.Producer(queue.connect(config.redis_url), queue.VERDICT)
            await producer.add_many([verdict_fields(group, "A", 0, 1, Level.MALICIOUS)])
            with trio.fail_after(10):
                while not await reporter.store.run(ledger.deferred_count):
                    await trio.sleep(0.02)
            assert await queue.call(outbox, config.redis_url) == []
            # What POST /groups/{jid}/unmute does: change the row, then wake.
            db.execute("UPDATE groups SET muted_until = NULL WHERE jid = ?", (group,))
            reporter.wake()
            with trio.fail_after(10):
                while not (sent := await queue.call(outbox, config.redis_url)):
                    await trio.sleep(0.02)
            unit.stopping.set()
        return sent

    try:
        sent = trio.run(scenario)
    finally:
        db.close()
    assert [m.reply for m in sent] == [f"reply/{group}/A"]


# -- kill -9 -----------------------------------------------------------------------

RUN_REPORTER = """
import sys
from wabscan.config import load_config
from wabscan.logs import setup_logging
from wabscan.reporter import ledger
from wabscan.reporter.service import ReporterUnit, main
from wabscan.service import run_unit
setup_logging("reporter")
run_unit("reporter", load_config(sys.argv[1]), main)
"""


@pytest.fixture
def reporter_config(tmp_path: Path, redis_server: RedisServer) -> Iterator[Path]:
    path = tmp_path / "wabscan.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'redis_url = "{redis_server.url}"\n'
        "[listen]\n"
        'reporter = "127.0.0.1:0"\n'
    )
    yield path


def start_reporter(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", RUN_REPORTER, str(config)],
            stdout=out,
            stderr=out,
            env=env,
        )


@pytest.mark.slow
def test_kill_9_mid_stream_loses_and_doubles_no_reply(
    tmp_path: Path,
    reporter_config: Path,
    redis_server: RedisServer,
    redis_client: redis.Redis,
) -> None:
    rng = random.Random(20250314)
    expected: set[str] = set()
    entries: list[dict[str, str]] = []
    for n in range(1200):
        group = rng.choice(GROUPS)
        count = rng.randint(1, 3)
        levels = rng.choices(list(Level), weights=[6, 2, 2], k=count)
        message = f"M{n}"
        if {Level.SUSPICIOUS, Level.MALICIOUS} & set(levels):
            expected.add(f"reply/{group}/{message}")
        entries += [
            verdict_fields(group, message, i, count, level)
            for i, level in enumerate(levels)
        ]
    # The links of a message arrive far apart, across batches and restarts.
    rng.shuffle(entries)
    producer = queue.Producer(redis_client, queue.VERDICT)
    for start in range(0, len(entries), 500):
        producer.add_many_sync(entries[start : start + 500])

    log = tmp_path / "reporter.log"
    kills = 0
    for _ in range(6):
        before = redis_client.xlen(queue.OUTBOX)
        process = start_reporter(reporter_config, log)
        # Kill once the outbox has grown by a random amount: mid-batch,
        # between the outbox and the mark, or between the mark and the ack.
        target = before + rng.randint(1, 120)
        deadline = time.monotonic() + 20
        while redis_client.xlen(queue.OUTBOX) < target and time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"reporter exited early:\n{log.read_text()[-3000:]}")
            time.sleep(rng.choice([0, 0.001, 0.005]))
        process.kill()
        process.wait()
        kills += 1
        if redis_client.xlen(queue.OUTBOX) >= len(expected):
            break

    readies = log.read_text().count("ready unit=reporter")
    process = start_reporter(reporter_config, log)
    try:
        deadline = time.monotonic() + 30
        # SIGTERM is the unit's to handle only once it runs (not while Python
        # is still importing).
        while log.read_text().count("ready unit=reporter") == readies:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        # depth_sync reads the group's fields by name: a decoding client.
        decoding = queue.connect(redis_server.url)
        while True:
            depth = queue.depth_sync(decoding, queue.VERDICT, "reporter")
            if depth == {"lag": 0, "pending": 0}:
                break
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        time.sleep(0.3)  # let the last flush finish
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
    assert code == 0, log.read_text()[-3000:]

    sent = outbox(redis_server.url)
    ids = {m.reply for m in sent}
    assert kills >= 2
    assert ids == expected  # none lost, none extra
    # Re-adding an entry after a crash is allowed (the bridge sends an id at
    # most once), but it only happens for the replies of the batch in flight.
    assert len(sent) - len(ids) <= 100 * kills
    assert "Traceback" not in log.read_text()
