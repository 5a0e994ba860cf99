"""The control API against the real server: the reporter's router served by
``http.serve`` on a port-0 listener, a real SQLite file and redis-server,
and the stdlib HTTP client."""

from __future__ import annotations

import http.client
import json
import string
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_utils import Database

from tests.conftest import RedisServer
from wabscan import queue, storage
from wabscan.config import Config
from wabscan.http import Router, listeners_from, serve
from wabscan.jobs import KIND_RESCAN, ScanJob
from wabscan.reporter.api import ControlAPI, load_token
from wabscan.reporter.policy import link_hash
from wabscan.serial import SerialDatabase
from wabscan.systemd import bind_address
from wabscan.verdict import Level, Signal, Verdict

TOKEN = "test-token-0123456789abcdef"
GROUP = "120363000000000001@g.us"
T0 = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


@dataclass
class Server:
    port: int
    db_path: Path
    redis_url: str

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One request on a new connection: status, JSON body, headers."""
        headers = {"authorization": f"Bearer {token}"} if token is not None else {}
        data = (
            raw
            if raw is not None
            else (json.dumps(body).encode() if body is not None else None)
        )
        if data is not None:
            headers["content-type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        parsed = json.loads(payload) if payload else {}
        return response.status, parsed, {k.lower(): v for k, v in response.getheaders()}

    def db(self) -> Database:
        return storage.open_database(self.db_path)


def _serve(config: Config) -> Iterator[Server]:
    started = threading.Event()
    state: dict[str, Any] = {}

    async def run() -> None:
        store = SerialDatabase.open(config.database_path)
        api = ControlAPI(
            store, queue.connect(config.redis_url), config, load_token(config)
        )
        router = Router()
        api.install(router)
        sock = bind_address("127.0.0.1:0")
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve, listeners_from([sock]), router)
                state.update(
                    port=sock.getsockname()[1],
                    token=trio.lowlevel.current_trio_token(),
                    scope=nursery.cancel_scope,
                )
                started.set()
        finally:
            store.close()

    thread = threading.Thread(target=trio.run, args=(run,), daemon=True)
    thread.start()
    assert started.wait(10), "the API server did not start"
    try:
        yield Server(state["port"], config.database_path, config.redis_url)
    finally:
        trio.from_thread.run_sync(state["scope"].cancel, trio_token=state["token"])
        thread.join(10)


def _config(tmp_path: Path, redis_server: RedisServer, token: str | None) -> Config:
    config = Config(
        state_dir=str(tmp_path / "state"),
        database=str(tmp_path / "state" / "wabscan.sqlite3"),
        redis_url=redis_server.url,
    )
    if token is not None:
        path = tmp_path / "control-token"
        path.write_text(token + "\n")
        config.reporter.token_file = str(path)
    return config


@pytest.fixture
def api(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> Iterator[Server]:
    yield from _serve(_config(tmp_path, redis_server, TOKEN))


def add_group(server: Server, jid: str = GROUP) -> None:
    db = server.db()
    try:
        db.execute(
            "INSERT INTO groups (jid, name, enabled, joined_at)"
            " VALUES (?, 'Family', 1, ?)",
            (jid, storage.format_time(T0)),
        )
    finally:
        db.close()


def add_verdicts(server: Server, count: int) -> list[str]:
    db = server.db()
    canonicals = []
    try:
        for i in range(count):
            canonical = f"https://site{i}.example/login"
            verdict = Verdict(
                url=canonical,
                canonical=canonical,
                level=Level.SUSPICIOUS,
                score=55.0,
                reasons=("The domain ends in .example.",),
                signals=(
                    Signal("host.suspicious_tld", "The domain ends in .example.", {}),
                ),
            )
            storage.record_verdict(db, verdict, "test-1", T0 + timedelta(minutes=i))
            storage.record_sighting(db, GROUP, f"M{i}", canonical, "0123456789abcdef")
            canonicals.append(canonical)
    finally:
        db.close()
    return canonicals


def audit_actions(server: Server) -> list[str]:
    status, body, _ = server.call("GET", "/api/v1/audit?limit=500")
    assert status == 200
    return [entry["action"] for entry in reversed(body["entries"])]


# -- authentication ---------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "wrong-token-0123456789", TOKEN + "x"])
def test_without_the_right_token_every_path_is_401(
    api: Server, token: str | None
) -> None:
    for path in ("/api/v1/status", "/api/v1/no-such-thing", "/api/v1/overrides/1"):
        status, body, headers = api.call("GET", path, token=token)
        assert status == 401, path
        assert body["field"] == "authorization"
        assert headers["www-authenticate"].startswith("Bearer")


def test_a_basic_scheme_is_refused(api: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    conn.request("GET", "/api/v1/status", headers={"authorization": f"Basic {TOKEN}"})
    assert conn.getresponse().status == 401
    conn.close()


def test_without_a_token_file_the_api_is_off(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    for server in _serve(_config(tmp_path, redis_server, None)):
        status, body, _ = server.call("GET", "/api/v1/status")
        assert status == 503
        assert "reporter.token_file" in body["error"]


def test_a_short_token_is_refused(tmp_path: Path, redis_server: RedisServer) -> None:
    config = _config(tmp_path, redis_server, "short")
    token = load_token(config)
    assert token.value is None and "shorter than 16" in token.problem


def test_the_token_comes_from_the_credentials_directory(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "control-token").write_text(TOKEN)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = _config(tmp_path, redis_server, None)
    assert load_token(config).value == TOKEN


def test_unknown_routes_and_methods(api: Server) -> None:
    status, body, _ = api.call("GET", "/api/v1/nothing/here")
    assert status == 404 and "error" in body
    status, body, headers = api.call("PUT", "/api/v1/status")
    assert status == 405 and headers["allow"] == "GET"


# -- status and scans ---------------------------------------------------------------


def test_status(api: Server) -> None:
    add_verdicts(api, 2)
    add_group(api)
    status, body, _ = api.call("GET", "/api/v1/status")
    assert status == 200
    assert body["versions"]["schema"] >= 2
    assert body["versions"]["scanner_model"] == "test-1"
    assert set(body["queues"]) == {"scan", "verdict", "outbox"}
    assert body["counts"]["verdicts"] == {"suspicious": 2}
    assert body["counts"]["groups"] == 1
    assert api.call("GET", "/api/v1/status?x=1")[0] == 400


def test_scans_are_paged_with_a_cursor(api: Server) -> None:
    canonicals = add_verdicts(api, 5)
    seen: list[str] = []
    path = "/api/v1/scans?limit=2"
    while True:
        status, body, _ = api.call("GET", path)
        assert status == 200
        seen += [scan["canonical"] for scan in body["scans"]]
        if body["next"] is None:
            break
        path = f"/api/v1/scans?limit=2&before={body['next']}"
    assert seen == list(reversed(canonicals))

    for query, field in (
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=201", "limit"),
        ("before=not-a-cursor", "before"),
        ("page=2", "page"),
    ):
        status, body, _ = api.call("GET", f"/api/v1/scans?{query}")
        assert (status, body["field"]) == (400, field), query


def test_one_scan_by_its_id(api: Server) -> None:
    [canonical] = add_verdicts(api, 1)
    status, body, _ = api.call("GET", f"/api/v1/scans/{link_hash(canonical)}")
    assert status == 200
    assert body["canonical"] == canonical and body["verdict"] == "suspicious"
    assert body["signals"][0]["code"] == "host.suspicious_tld"
    assert body["sightings"]["groups"] == 1
    assert api.call("GET", "/api/v1/scans/0123456789abcdef")[0] == 404
    status, body, _ = api.call("GET", "/api/v1/scans/nothex")
    assert (status, body["field"]) == (400, "id")


def test_rescan_queues_a_job(api: Server) -> None:
    status, body, _ = api.call(
        "POST", "/api/v1/rescan", {"url": "hxxps://evil[.]example/login"}
    )
    assert status == 202 and body["status"] == "queued"
    assert body["id"] == link_hash("https://evil.example/login")
    client = queue.connect(api.redis_url)
    entries: Any = client.xrange(queue.SCAN)
    [(_id, fields)] = entries
    job = ScanJob.from_fields(fields)
    assert job.job == body["job"] and job.kind == KIND_RESCAN
    assert job.url == "https://evil.example/login"
    assert audit_actions(api) == ["scan.rescan"]

    for sent, field in (
        ({}, "url"),
        ({"url": 5}, "url"),
        ({"url": "mailto:a@x.example"}, "url"),
        ({"url": "http://[::1"}, "url"),
        ({"url": "https://x.example/" + "a" * 3000}, "url"),
        ({"url": "https://x.example/", "force": True}, "force"),
        ([], "body"),
    ):
        status, body, _ = api.call("POST", "/api/v1/rescan", sent)
        assert (status, body["field"]) == (400, field), sent


# -- overrides ----------------------------------------------------------------------


def test_override_lifecycle(api: Server) -> None:
    status, created, _ = api.call(
        "POST",
        "/api/v1/overrides",
        {"kind": "domain", "value": "Example.COM", "action": "allow", "ttl": "2h"},
    )
    assert status == 201
    assert created["value"] == "example.com" and created["scope"] == "global"
    assert created["created_by"] == "api" and created["expires_at"]
    path = f"/api/v1/overrides/{created['id']}"

    assert api.call("GET", path)[1] == created
    status, body, _ = api.call("GET", "/api/v1/overrides")
    assert [o["id"] for o in body["overrides"]] == [created["id"]]

    status, changed, _ = api.call(
        "PATCH", path, {"action": "deny", "reason": "phishing", "expires_at": None}
    )
    assert status == 200
    assert (changed["action"], changed["reason"], changed["expires_at"]) == (
        "deny",
        "phishing",
        None,
    )

    status, scoped, _ = api.call(
        "POST",
        "/api/v1/overrides",
        {
            "scope": GROUP,
            "kind": "url",
            "value": "HTTPS://A.example:443/x?utm_source=chat",
            "action": "deny",
            "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        },
    )
    assert status == 201 and scoped["scope"] == GROUP
    assert scoped["value"] == "https://a.example/x"  # the scanner's canonical form
    status, body, _ = api.call("GET", f"/api/v1/overrides?scope={GROUP}")
    assert [o["id"] for o in body["overrides"]] == [scoped["id"]]

    status, body, _ = api.call("DELETE", path)
    assert (status, body) == (200, {"deleted": created["id"]})
    assert api.call("GET", path)[0] == 404
    assert api.call("DELETE", path)[0] == 404
    assert api.call("PATCH", path, {"reason": "x"})[0] == 404
    assert audit_actions(api) == [
        "override.add",
        "override.update",
        "override.add",
        "override.delete",
    ]


@pytest.mark.parametrize(
    ("sent", "field"),
    [
        ({"kind": "host", "value": "a.example"}, "action"),
        ({"kind": "ip", "value": "a.example", "action": "allow"}, "kind"),
        ({"kind": "host", "value": "", "action": "allow"}, "value"),
        ({"kind": "host", "value": "a.example", "action": "block"}, "action"),
        (
            {"kind": "host", "value": "a.example", "action": "allow", "scope": "x"},
            "scope",
        ),
        (
            {"kind": "host", "value": "a.example", "action": "allow", "ttl": "soon"},
            "ttl",
        ),
        ({"kind": "host", "value": "a.example", "action": "allow", "ttl": 0}, "ttl"),
        (
            {
                "kind": "host",
                "value": "a.example",
                "action": "allow",
                "ttl": 60,
                "expires_at": "2030-01-01T00:00:00+00:00",
            },
            "ttl",
        ),
        (
            {
                "kind": "host",
                "value": "a.example",
                "action": "allow",
                "expires_at": "2000-01-01T00:00:00+00:00",
            },
            "expires_at",
        ),
        (
            {
                "kind": "host",
                "value": "a.example",
                "action": "allow",
                "expires_at": "2030-01-01T00:00:00",
            },
            "expires_at",
        ),
        ({"kind": "host", "value": 7, "action": "allow"}, "value"),
        ({"kind": "url", "value": "not a url", "action": "deny"}, "value"),
        ({"kind": "host", "value": "a.example", "action": "allow", "id": 3}, "id"),
    ],
)
def test_bad_overrides_name_the_field(
    api: Server, sent: dict[str, Any], field: str
) -> None:
    status, body, _ = api.call("POST", "/api/v1/overrides", sent)
    assert (status, body["field"]) == (400, field), body


def test_bad_override_ids(api: Server) -> None:
    for bad in ("abc", "0", "-1", "1.5", "99999999999999999999999"):
        status, body, _ = api.call("GET", f"/api/v1/overrides/{bad}")
        assert (status, body["field"]) == (400, "id"), bad
    status, body, _ = api.call("PATCH", "/api/v1/overrides/1", {})
    assert (status, body["field"]) == (400, "body")


# -- groups and audit ----------------------------------------------------------------


def test_group_mute_unmute_and_settings(api: Server) -> None:
    add_group(api)
    status, body, _ = api.call("GET", "/api/v1/groups")
    assert status == 200 and body["groups"][0]["jid"] == GROUP
    assert body["groups"][0]["muted"] is False

    status, muted, _ = api.call(
        "POST", f"/api/v1/groups/{GROUP}/mute", {"duration": "2h"}
    )
    assert status == 200 and muted["muted"] is True
    until = datetime.fromisoformat(muted["muted_until"])
    assert timedelta(hours=1.9) < until - datetime.now(UTC) <= timedelta(hours=2)
    status, unmuted, _ = api.call("POST", f"/api/v1/groups/{GROUP}/unmute")
    assert (
        status == 200 and unmuted["muted"] is False and unmuted["muted_until"] is None
    )

    status, changed, _ = api.call(
        "PATCH",
        f"/api/v1/groups/{GROUP}",
        {
            "announce_benign": True,
            "quiet_start": "23",
            "quiet_end": "7:30",
            "timezone": "Europe/Berlin",
        },
    )
    assert status == 200
    assert changed["announce_benign"] is True
    assert (changed["quiet_start"], changed["quiet_end"]) == ("23:00", "07:30")
    assert changed["timezone"] == "Europe/Berlin"
    status, changed, _ = api.call(
        "PATCH", f"/api/v1/groups/{GROUP}", {"quiet_start": None, "quiet_end": None}
    )
    assert (changed["quiet_start"], changed["quiet_end"]) == (None, None)
    assert audit_actions(api) == [
        "group.mute",
        "group.unmute",
        "group.update",
        "group.update",
    ]


@pytest.mark.parametrize(
    ("method", "path", "sent", "status", "field"),
    [
        (
            "POST",
            f"/api/v1/groups/{GROUP}/mute",
            {"duration": "forever"},
            400,
            "duration",
        ),
        ("POST", f"/api/v1/groups/{GROUP}/mute", {"duration": "31d"}, 400, "duration"),
        ("POST", f"/api/v1/groups/{GROUP}/mute", {"duration": True}, 400, "duration"),
        ("POST", f"/api/v1/groups/{GROUP}/unmute", {"now": True}, 400, "now"),
        ("POST", "/api/v1/groups/not-a-jid/mute", {}, 400, "jid"),
        ("POST", "/api/v1/groups/999@g.us/mute", {}, 404, "jid"),
        (
            "PATCH",
            f"/api/v1/groups/{GROUP}",
            {"quiet_start": "23:00"},
            400,
            "quiet_end",
        ),
        (
            "PATCH",
            f"/api/v1/groups/{GROUP}",
            {"quiet_start": "25:00", "quiet_end": "07:00"},
            400,
            "quiet_start",
        ),
        (
            "PATCH",
            f"/api/v1/groups/{GROUP}",
            {"timezone": "Mars/Base"},
            400,
            "timezone",
        ),
        ("PATCH", f"/api/v1/groups/{GROUP}", {"enabled": "yes"}, 400, "enabled"),
        ("PATCH", f"/api/v1/groups/{GROUP}", {"name": "x"}, 400, "name"),
        ("PATCH", f"/api/v1/groups/{GROUP}", {}, 400, "body"),
        ("GET", "/api/v1/audit?limit=0", None, 400, "limit"),
    ],
)
def test_bad_group_requests_name_the_field(
    api: Server, method: str, path: str, sent: Any, status: int, field: str
) -> None:
    add_group(api)
    got, body, _ = api.call(method, path, sent)
    assert (got, body["field"]) == (status, field), body


def test_bodies_that_are_not_json(api: Server) -> None:
    for raw in (b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000, b'{"url": NaN'):
        status, body, _ = api.call("POST", "/api/v1/rescan", raw=raw)
        assert (status, body["field"]) == (400, "body"), raw[:10]


def test_an_oversized_body_is_413(api: Server) -> None:
    status, body, _ = api.call("POST", "/api/v1/overrides", raw=b" " * (65 * 1024))
    assert status == 413 and "error" in body


# -- never a 500 ---------------------------------------------------------------

_SEGMENT = st.text(
    string.ascii_letters + string.digits + "-._~%@:!$&'()*+,;=", max_size=30
)
_PATHS = st.one_of(
    st.sampled_from(
        [
            "/api/v1/status",
            "/api/v1/scans",
            "/api/v1/rescan",
            "/api/v1/overrides",
            "/api/v1/groups",
            "/api/v1/audit",
            f"/api/v1/groups/{GROUP}",
            f"/api/v1/groups/{GROUP}/mute",
            f"/api/v1/groups/{GROUP}/unmute",
            "/api/v1/overrides/1",
        ]
    ),
    _SEGMENT.map(lambda s: f"/api/v1/overrides/{s}"),
    _SEGMENT.map(lambda s: f"/api/v1/scans/{s}"),
    _SEGMENT.map(lambda s: f"/api/v1/groups/{s}/mute"),
    _SEGMENT.map(lambda s: f"/api/v1/groups/{s}"),
    st.lists(_SEGMENT, min_size=1, max_size=4).map(lambda p: "/api/v1/" + "/".join(p)),
)
_QUERIES = st.dictionaries(
    st.sampled_from(["limit", "before", "scope", "include_expired", "x"]),
    st.text(string.ascii_letters + string.digits + "-_=", max_size=20),
    max_size=3,
).map(lambda q: "&".join(f"{k}={v}" for k, v in q.items()))
_FIELDS = [
    "url",
    "scope",
    "kind",
    "value",
    "action",
    "reason",
    "expires_at",
    "ttl",
    "duration",
    "enabled",
    "announce_benign",
    "quiet_start",
    "quiet_end",
    "timezone",
]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "2h",
            "0s",
            "1d12h",
            "global",
            GROUP,
            "url",
            "host",
            "domain",
            "allow",
            "deny",
            "23:00",
            "24:00",
            "Europe/Berlin",
            "2030-01-01T00:00:00Z",
            "https://x.example/",
            "hxxps://x[.]example",
            "xn--",
            "a..b",
            "-",
            "99999999999999999999",
        ]
    ),
    st.lists(st.integers(), max_size=2),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_BODIES = st.one_of(
    st.none(),
    st.binary(max_size=200),
    _JSON.map(lambda v: json.dumps(v).encode()),
    # Mostly objects of known fields, so that the values reach the checks
    # behind the field names.
    *[
        st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=5).map(
            lambda v: json.dumps(v).encode()
        )
    ]
    * 4,
)


_ENDPOINTS = st.sampled_from(
    [
        ("POST", "/api/v1/rescan"),
        ("POST", "/api/v1/overrides"),
        ("PATCH", "/api/v1/overrides/1"),
        ("POST", f"/api/v1/groups/{GROUP}/mute"),
        ("POST", f"/api/v1/groups/{GROUP}/unmute"),
        ("PATCH", f"/api/v1/groups/{GROUP}"),
    ]
)
_FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _seed(api: Server) -> None:
    if not hasattr(api, "seeded"):
        add_group(api)
        add_verdicts(api, 3)
        api.call(
            "POST",
            "/api/v1/overrides",
            {"kind": "host", "value": "a.example", "action": "deny"},
        )
        api.seeded = True  # type: ignore[attr-defined]


def _no_500(api: Server, method: str, target: str, body: bytes | None) -> None:
    status, answer, _ = api.call(method, target, raw=body)
    assert status < 500, (status, answer)
    if status >= 400:
        assert isinstance(answer.get("error"), str)
        assert isinstance(answer.get("field"), str) or status in (404, 405, 413)


@_FUZZ
@given(_ENDPOINTS, _BODIES)
def test_no_body_gets_a_500(
    api: Server, endpoint: tuple[str, str], body: bytes | None
) -> None:
    _seed(api)
    _no_500(api, *endpoint, body)


@_FUZZ
@given(st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]), _PATHS, _QUERIES)
def test_no_path_or_query_gets_a_500(
    api: Server, method: str, path: str, query: str
) -> None:
    _seed(api)
    _no_500(api, method, f"{path}?{query}" if query else path, None)
