"""The scanner unit as systemd runs it: socket activation, notify, watchdog,
stop, and kill -9 with no link lost."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.activation import ActivatedUnit, write_config
from wabscan import queue
from wabscan.jobs import KIND_MESSAGE, ScanJob

pytestmark = pytest.mark.slow

LINKS = [
    "http://paypa1-secure.com/login",
    "https://en.wikipedia.org/wiki/Trio",
    "http://192.168.4.7:8081/bank/login.php",
    "https://www.bank.com@login-verify.example.net/",
]


def job(group: str, message: str, index: int, url: str, count: int) -> dict[str, str]:
    return ScanJob(
        job=ScanJob.make_id(group, message, index),
        kind=KIND_MESSAGE,
        group=group,
        message=message,
        sender="a1b2c3",
        url=url,
        index=index,
        count=count,
        at="2026-12-03T10:00:00+00:00",
    ).to_fields()


@pytest.fixture
def scanner(
    tmp_path: Path, private_redis
) -> Iterator[tuple[ActivatedUnit, redis.Redis]]:
    config = write_config(tmp_path, private_redis.url)
    unit = ActivatedUnit("scanner", config, tmp_path)
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    try:
        yield unit, client
    finally:
        unit.stop()
        client.close()


def verdict_entries(client: redis.Redis) -> list[dict[str, str]]:
    return [fields for _id, fields in client.xrange(queue.VERDICT)]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_socket_activation_readiness_and_a_verdict(scanner, tmp_path: Path) -> None:
    unit, client = scanner
    unit.start()

    # Nothing runs until the first connection; that request is answered.
    status, body = unit.get("/healthz")
    assert status in (200, 503)
    assert json.loads(body)["unit"] == "scanner"
    ready = unit.read_notify("READY=1")
    assert "STATUS=scanning" in ready

    client.xadd(queue.SCAN, job("g1@g.us", "M1", 0, LINKS[0], 1))
    wait_for(lambda: len(verdict_entries(client)) == 1, what="a verdict entry")
    entry = verdict_entries(client)[0]
    assert entry["job"] == "g1@g.us/M1/0"
    assert entry["canonical"] == "http://paypa1-secure.com/login"
    assert entry["verdict"] in ("suspicious", "malicious")
    assert json.loads(entry["reasons"])

    with sqlite3.connect(tmp_path / "wabscan.sqlite3") as db:
        stored = db.execute("SELECT level FROM verdicts").fetchall()
        sighting = db.execute("SELECT group_id, message_id FROM sightings").fetchall()
    assert stored == [(entry["verdict"],)]
    assert sighting == [("g1@g.us", "M1")]

    status, body = unit.get("/healthz")
    assert status == 200 and json.loads(body)["state"] == "ready"
    status, metrics = unit.get("/metrics")
    assert status == 200
    assert b"wabscan_scanner_links_total" in metrics
    unit.read_notify("WATCHDOG=1", timeout=15)


def test_sigterm_stops_within_the_grace_period(scanner) -> None:
    unit, _client = scanner
    unit.start()
    unit.get("/healthz")
    unit.read_notify("READY=1")
    started = time.monotonic()
    unit.signal(signal.SIGTERM)
    assert unit.wait(timeout=15) == 0
    assert time.monotonic() - started < 10
    unit.read_notify("STOPPING=1", timeout=1)


def test_kill_9_mid_stream_loses_no_link(scanner, tmp_path: Path) -> None:
    unit, client = scanner
    unit.start()
    unit.get("/healthz")
    unit.read_notify("READY=1")

    total = 1500
    pipe = client.pipeline()
    for n in range(total):
        url = f"http://shop{n}.example-{n % 7}.com/item/{n}"
        pipe.xadd(queue.SCAN, job("g1@g.us", f"M{n}", 0, url, 1))
    pipe.execute()

    wait_for(lambda: len(verdict_entries(client)) > 50, what="the first verdicts")
    unit.signal(signal.SIGKILL)
    unit.wait(timeout=10)
    assert len({e["job"] for e in verdict_entries(client)}) < total

    restarted = ActivatedUnit("scanner", unit.config, tmp_path)
    unit.process = None
    try:
        restarted.start()
        restarted.get("/healthz")
        wait_for(
            lambda: len({e["job"] for e in verdict_entries(client)}) == total,
            timeout=120,
            what="every job's verdict after the restart",
        )
        wait_for(
            lambda: queue.depth_sync(client, queue.SCAN, "scanner")["pending"] == 0,
            what="the scan stream to be fully acknowledged",
        )
    finally:
        restarted.stop()

    with sqlite3.connect(tmp_path / "wabscan.sqlite3") as db:
        sightings = db.execute("SELECT count(*) FROM sightings").fetchone()[0]
        verdicts = db.execute("SELECT count(*) FROM verdicts").fetchone()[0]
    assert sightings == total  # idempotent: replays wrote no second row
    assert verdicts == total
