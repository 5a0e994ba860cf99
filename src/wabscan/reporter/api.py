"""The control API, served under ``/api/v1/`` on the reporter's socket.

Every request carries ``Authorization: Bearer <token>``; the token is read
from ``reporter.token_file`` or the systemd credential ``control-token``
(``$CREDENTIALS_DIRECTORY/control-token``) and compared in constant time.
Without a usable token the API stays off: every call answers 503 with what
to fix, and the unit logs it once at start, while replies keep flowing (an
unconfigured API must not stop the warnings).

Every error is a 4xx JSON body ``{"error": "...", "field": "..."}`` naming
the field at fault; a request is never answered with a 500. Every change is
written to the audit log with the actor ``api``, in the same transaction as
the change. docs/control-api.md has a curl example for every endpoint.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import unquote

import redis
import trio
from sqlite_utils import Database

from wabscan import __version__, queue, storage
from wabscan.config import Config
from wabscan.errors import InputError
from wabscan.http import Request, Response, Router, json_response
from wabscan.jobs import KIND_RESCAN, ScanJob
from wabscan.links import refang
from wabscan.reporter import groups, ledger
from wabscan.reporter.policy import link_hash
from wabscan.scanner.canonical import InvalidURL, canonicalize
from wabscan.serial import SerialDatabase
from wabscan.storage import format_time, utc_now

log = logging.getLogger(__name__)

T = TypeVar("T")

PREFIX: Final = "/api/v1"
ACTOR: Final = "api"
MIN_TOKEN: Final = 16
MAX_TTL: Final = timedelta(days=366)
MAX_MUTE: Final = timedelta(days=30)
DEFAULT_MUTE: Final = "1h"
REDIS_TIMEOUT: Final = 3.0

_JID: Final = re.compile(r"^[0-9A-Za-z._-]{1,64}@g\.us$")
_SCAN_ID: Final = re.compile(r"^[0-9a-f]{16}$")
_DURATION: Final = re.compile(r"^(?:(\d{1,6})([smhdw]))+$")
_DURATION_PART: Final = re.compile(r"(\d{1,6})([smhdw])")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# The consumer group of each stream, for queue depths.
_STREAM_GROUPS: Final = (
    (queue.SCAN, "scanner"),
    (queue.VERDICT, "reporter"),
    (queue.OUTBOX, "bridge"),
)


class Invalid(Exception):
    """A request the API refuses: answered ``status`` with the field named."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Token:
    """The control token, or why there is none."""

    value: str | None
    problem: str = ""


def load_token(config: Config) -> Token:
    """Read the control token from ``reporter.token_file`` or the systemd
    credential; a missing, unreadable or short token disables the API."""
    if config.reporter.token_file:
        path = Path(config.reporter.token_file)
    elif os.environ.get("CREDENTIALS_DIRECTORY"):
        path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / "control-token"
    else:
        return Token(
            None,
            "no control token: set reporter.token_file or pass the credential "
            "control-token (LoadCredential=control-token:...)",
        )
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        return Token(None, f"cannot read the control token {path}: {exc}")
    if len(value) < MIN_TOKEN:
        return Token(
            None, f"the control token in {path} is shorter than {MIN_TOKEN} characters"
        )
    return Token(value)


def parse_duration(value: object, field: str, limit: timedelta) -> timedelta:
    """A duration from ``"90s"``, ``"30m"``, ``"2h"``, ``"1d12h"``, ``"1w"`` or a
    whole number of seconds, between one second and ``limit``."""
    if isinstance(value, bool):
        raise Invalid(field, 'expected a duration like "2h" or a number of seconds')
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and _DURATION.match(value.strip().lower()):
        seconds = sum(
            int(number) * _UNIT_SECONDS[unit]
            for number, unit in _DURATION_PART.findall(value.strip().lower())
        )
    else:
        raise Invalid(field, 'expected a duration like "2h" or a number of seconds')
    if not 1 <= seconds <= limit.total_seconds():
        raise Invalid(field, f"must be between 1 second and {limit.days} days")
    return timedelta(seconds=seconds)


Handler = Callable[[Request], Awaitable[Response]]


class ControlAPI:
    """The API's handlers over the reporter's database and Redis.

    Args:
        store: the reporter's database.
        client: a Redis client (for queue depths and rescans).
        config: the configuration (URL limits, token location).
        token: the control token (see :func:`load_token`).
        groups_changed: called after a group's settings change, so that the
            reporter re-judges its deferred replies at once (an unmute
            releases them).
    """

    def __init__(
        self,
        store: SerialDatabase,
        client: redis.Redis,
        config: Config,
        token: Token,
        groups_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.client = client
        self.config = config
        self.token = token
        self.groups_changed = groups_changed
        self.started_at = time.time()
        self.scans = queue.Producer(client, queue.SCAN)
        self.routes = Router()
        for method, path, handler in (
            ("GET", "status", self.status),
            ("GET", "scans", self.list_scans),
            ("GET", "scans/{id}", self.get_scan),
            ("POST", "rescan", self.rescan),
            ("GET", "overrides", self.list_overrides),
            ("POST", "overrides", self.add_override),
            ("GET", "overrides/{id}", self.get_override),
            ("PATCH", "overrides/{id}", self.update_override),
            ("DELETE", "overrides/{id}", self.delete_override),
            ("GET", "groups", self.list_groups),
            ("PATCH", "groups/{jid}", self.update_group),
            ("POST", "groups/{jid}/mute", self.mute),
            ("POST", "groups/{jid}/unmute", self.unmute),
            ("GET", "audit", self.audit),
        ):
            self.routes.add(method, f"{PREFIX}/{path}", handler)

    def install(self, router: Router) -> None:
        """Serve the API on ``router`` (the unit's, beside /healthz).

        Every path under the prefix goes through the token check first, so an
        unknown route is a 401 to a caller without the token, not a map of
        what exists.
        """
        for depth in ("{a}", "{a}/{b}", "{a}/{b}/{c}"):
            for method in ("GET", "POST", "PATCH", "DELETE", "PUT"):
                router.add(method, f"{PREFIX}/{depth}", self.handle)

    async def handle(self, request: Request) -> Response:
        """Check the token, route the request, turn refusals into 4xx."""
        if self.token.value is None:
            return _error(503, "token", f"control API disabled: {self.token.problem}")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), self.token.value.encode()
        ):
            response = _error(401, "authorization", "missing or wrong bearer token")
            response.headers["www-authenticate"] = 'Bearer realm="wabscan"'
            return response
        try:
            return await self.routes(request)
        except Invalid as exc:
            return _error(exc.status, exc.field, exc.message)
        except InputError as exc:  # from storage: "override kind: ..."
            return _error(400, exc.where.removeprefix("override "), exc.what)
        except sqlite3.OperationalError as exc:
            log.warning("api-database-busy path=%s error=%r", request.path, str(exc))
            return _error(503, "database", "the database is busy; try again")

    # -- status and scans ------------------------------------------------------

    async def status(self, request: Request) -> Response:
        _query(request)
        counts = await self.store.run(_counts, utc_now())
        try:
            with trio.fail_after(REDIS_TIMEOUT):
                queues: dict[str, Any] = await queue.call(_depths, self.client)
        except (*queue.UNAVAILABLE, trio.TooSlowError) as exc:
            queues = {"error": f"Redis unavailable: {exc.__class__.__name__}"}
        return json_response(
            {
                "unit": "reporter",
                "uptime_seconds": round(time.time() - self.started_at, 1),
                "versions": {
                    "wabscan": __version__,
                    "schema": counts.pop("schema_version"),
                    "scanner_model": counts.pop("scanner_model"),
                },
                "queues": queues,
                "counts": counts,
            }
        )

    async def list_scans(self, request: Request) -> Response:
        query = _query(request, "limit", "before")
        limit = _int(query, "limit", 50, 1, 200)
        before = _cursor(query["before"]) if "before" in query else None
        rows = await self.store.run(_scans, limit + 1, before)
        page = rows[:limit]
        following = (
            _make_cursor(page[-1]["scanned_at"], page[-1]["canonical"])
            if len(rows) > limit
            else None
        )
        return json_response({"scans": page, "next": following})

    async def get_scan(self, request: Request) -> Response:
        _query(request)
        scan_id = request.params["id"]
        if not _SCAN_ID.match(scan_id):
            raise Invalid("id", "expected the 16 hexadecimal digits of a scan id")
        scan = await self.store.run(_scan, scan_id)
        if scan is None:
            raise Invalid("id", f"no scan {scan_id}", 404)
        return json_response(scan)

    async def rescan(self, request: Request) -> Response:
        _query(request)
        body = _body(request, {"url": (str,)}, required=("url",))
        url = refang(body["url"].strip())
        try:
            canonical = canonicalize(url).url
        except InvalidURL as exc:
            raise Invalid("url", str(exc)) from None
        job = ScanJob(
            job=f"rescan/{uuid.uuid4().hex}",
            kind=KIND_RESCAN,
            group="",
            message="",
            sender="",
            url=url,
            index=0,
            count=1,
            at=format_time(utc_now()),
        )
        try:
            with trio.fail_after(REDIS_TIMEOUT):
                await self.scans.add_many([job.to_fields()])
        except (*queue.UNAVAILABLE, trio.TooSlowError):
            raise Invalid(
                "redis", "Redis is unavailable; the rescan was not queued", 503
            ) from None
        await self.store.run(
            _audited, "scan.rescan", {"job": job.job}, lambda db: (True, url)
        )
        log.info("api-rescan job=%s scan=%s", job.job, link_hash(canonical))
        answer = {"job": job.job, "url": url, "id": link_hash(canonical)}
        return json_response({**answer, "status": "queued"}, 202)

    # -- overrides -------------------------------------------------------------

    async def list_overrides(self, request: Request) -> Response:
        query = _query(request, "include_expired", "scope")
        include = _flag(query, "include_expired")
        scope = query.get("scope")
        if scope is not None:
            _scope(scope)
        rows = await self.store.run(
            storage.list_overrides, include_expired=include, scope=scope
        )
        return json_response({"overrides": [_override(o) for o in rows]})

    async def add_override(self, request: Request) -> Response:
        _query(request)
        body = _body(
            request,
            {
                "scope": (str,),
                "kind": (str,),
                "value": (str,),
                "action": (str,),
                "reason": (str,),
                "expires_at": (str, type(None)),
                "ttl": (str, int),
            },
            required=("kind", "value", "action"),
        )
        scope = _scope(body.get("scope", storage.GLOBAL_SCOPE))
        value = body["value"]
        if body["kind"] == "url":
            # The scanner compares URL overrides with the canonical form.
            try:
                value = canonicalize(refang(value.strip())).url
            except InvalidURL as exc:
                raise Invalid("value", str(exc)) from None
        now = utc_now()
        expires = _expiry(body, now)

        def add(db: Database) -> tuple[storage.Override, str]:
            override = storage.add_override(
                db,
                scope=scope,
                kind=body["kind"],
                value=value,
                action=body["action"],
                created_by=ACTOR,
                reason=body.get("reason", ""),
                expires_at=expires if isinstance(expires, datetime) else None,
                now=now,
            )
            return override, str(override.id)

        override = await self.store.run(_audited, "override.add", body, add)
        log.info("api-override-add id=%d action=%s", override.id, override.action)
        return json_response(_override(override), 201)

    async def get_override(self, request: Request) -> Response:
        _query(request)
        override_id = _id(request)
        override = await self.store.run(storage.get_override, override_id)
        if override is None:
            raise Invalid("id", f"no override {override_id}", 404)
        return json_response(_override(override))

    async def update_override(self, request: Request) -> Response:
        _query(request)
        override_id = _id(request)
        body = _body(
            request,
            {
                "action": (str,),
                "reason": (str,),
                "expires_at": (str, type(None)),
                "ttl": (str, int),
            },
        )
        if not body:
            raise Invalid("body", "nothing to change")
        changes: dict[str, Any] = {
            "action": body.get("action"),
            "reason": body.get("reason"),
        }
        expires = _expiry(body, utc_now())
        if not isinstance(expires, _Keep):
            changes["expires_at"] = expires

        def update(db: Database) -> tuple[storage.Override | None, str]:
            override = storage.update_override(db, override_id, **changes)
            return override, str(override_id)

        override = await self.store.run(_audited, "override.update", body, update)
        if override is None:
            raise Invalid("id", f"no override {override_id}", 404)
        return json_response(_override(override))

    async def delete_override(self, request: Request) -> Response:
        _query(request)
        override_id = _id(request)

        def delete(db: Database) -> tuple[bool, str]:
            return storage.delete_override(db, override_id), str(override_id)

        if not await self.store.run(_audited, "override.delete", {}, delete):
            raise Invalid("id", f"no override {override_id}", 404)
        return json_response({"deleted": override_id})

    # -- groups and audit ------------------------------------------------------

    async def list_groups(self, request: Request) -> Response:
        _query(request)
        rows = await self.store.run(groups.list_groups)
        now = utc_now()
        return json_response({"groups": [_group(row, now) for row in rows]})

    async def mute(self, request: Request) -> Response:
        _query(request)
        jid = _jid(request)
        body = _body(request, {"duration": (str, int)})
        duration = parse_duration(
            body.get("duration", DEFAULT_MUTE), "duration", MAX_MUTE
        )
        until = utc_now() + duration

        def mute(db: Database) -> tuple[bool, str]:
            return groups.set_muted_until(db, jid, until), jid

        detail = {"until": format_time(until), "seconds": int(duration.total_seconds())}
        return await self._group_change("group.mute", jid, detail, mute)

    async def unmute(self, request: Request) -> Response:
        _query(request)
        jid = _jid(request)
        _body(request, {})

        def unmute(db: Database) -> tuple[bool, str]:
            return groups.set_muted_until(db, jid, None), jid

        return await self._group_change("group.unmute", jid, {}, unmute)

    async def update_group(self, request: Request) -> Response:
        _query(request)
        jid = _jid(request)
        body = _body(
            request,
            {
                "enabled": (bool,),
                "announce_benign": (bool,),
                "quiet_start": (str, type(None)),
                "quiet_end": (str, type(None)),
                "timezone": (str, type(None)),
            },
        )
        if not body:
            raise Invalid("body", "nothing to change")
        changes = dict(body)
        if ("quiet_start" in body) != ("quiet_end" in body) or (
            body.get("quiet_start") is None
        ) != (body.get("quiet_end") is None):
            raise Invalid("quiet_end", "set quiet_start and quiet_end together")
        for field in ("quiet_start", "quiet_end"):
            if body.get(field) is not None:
                try:
                    changes[field] = groups.parse_clock(body[field]).strftime("%H:%M")
                except ValueError as exc:
                    raise Invalid(field, str(exc)) from None
        if body.get("timezone") is not None:
            try:
                groups.zone_named(body["timezone"])
            except ValueError as exc:
                raise Invalid("timezone", str(exc)) from None

        def update(db: Database) -> tuple[bool, str]:
            return groups.update_group(db, jid, changes), jid

        return await self._group_change("group.update", jid, changes, update)

    async def audit(self, request: Request) -> Response:
        query = _query(request, "limit")
        limit = _int(query, "limit", 50, 1, 500)
        entries = await self.store.run(storage.list_audit, limit)
        return json_response({"entries": entries})

    async def _group_change(
        self,
        action: str,
        jid: str,
        detail: dict[str, Any],
        change: Callable[[Database], tuple[bool, str]],
    ) -> Response:
        found = await self.store.run(_audited, action, detail, change)
        if not found:
            raise Invalid("jid", f"no group {jid}", 404)
        record = await self.store.run(groups.group_record, jid)
        assert record is not None
        log.info("api-%s group=%s", action.replace(".", "-"), jid)
        self.groups_changed()
        return json_response(_group(record, utc_now()))


# -- request reading -------------------------------------------------------------


class _Keep:
    """An expiry left as it is (neither ``expires_at`` nor ``ttl`` given)."""


def _error(status: int, field: str, message: str) -> Response:
    return json_response({"error": f"{field}: {message}", "field": field}, status)


def _query(request: Request, *known: str) -> dict[str, str]:
    for name in sorted(request.query):
        if name not in known:
            raise Invalid(name, "unknown query parameter")
    return request.query


def _int(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise Invalid(name, f"expected a whole number from {low} to {high}")
    return int(text)


def _flag(query: dict[str, str], name: str) -> bool:
    text = query.get(name, "false").lower()
    if text not in ("true", "false", "1", "0"):
        raise Invalid(name, "expected true or false")
    return text in ("true", "1")


def _body(
    request: Request,
    fields: dict[str, tuple[type, ...]],
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The JSON object in the body, with only known fields of the right types.

    An empty body is an empty object, for endpoints whose fields are optional.
    """
    if not request.body.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(request.body.decode("utf-8"))
        except UnicodeDecodeError:
            raise Invalid("body", "not UTF-8 text") from None
        except RecursionError:
            raise Invalid("body", "JSON nested too deeply") from None
        except ValueError as exc:
            raise Invalid("body", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Invalid("body", "expected a JSON object")
    for name, value in data.items():
        if name not in fields:
            known = ", ".join(fields) or "none"
            raise Invalid(name, f"unknown field (known: {known})")
        types = fields[name]
        # bool is an int to Python, not to a JSON schema.
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            raise Invalid(name, f"expected {_type_names(types)}")
    for name in required:
        if name not in data:
            raise Invalid(name, "required")
    return data


def _type_names(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", bool: "true or false"}
    return " or ".join(names.get(t, "null") for t in types)


def _expiry(body: dict[str, Any], now: datetime) -> datetime | _Keep | None:
    if "expires_at" in body and "ttl" in body:
        raise Invalid("ttl", "give expires_at or ttl, not both")
    if "ttl" in body:
        return now + parse_duration(body["ttl"], "ttl", MAX_TTL)
    if "expires_at" not in body:
        return _Keep()
    if body["expires_at"] is None:
        return None
    try:
        moment = datetime.fromisoformat(body["expires_at"])
    except ValueError:
        raise Invalid("expires_at", "expected an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise Invalid("expires_at", "needs a time zone, e.g. 2025-01-01T00:00:00Z")
    if moment <= now:
        raise Invalid("expires_at", "is in the past")
    if moment - now > MAX_TTL:
        raise Invalid("expires_at", f"is more than {MAX_TTL.days} days away")
    return moment


def _id(request: Request) -> int:
    text = request.params["id"]
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 2**63:
        raise Invalid("id", "expected a positive whole number")
    return int(text)


def _jid(request: Request) -> str:
    jid = unquote(request.params["jid"])
    if not _JID.match(jid):
        raise Invalid("jid", "expected a group JID like 120363000000000000@g.us")
    return jid


def _scope(scope: str) -> str:
    if scope != storage.GLOBAL_SCOPE and not _JID.match(scope):
        raise Invalid("scope", 'expected "global" or a group JID')
    return scope


def _make_cursor(scanned_at: str, canonical: str) -> str:
    raw = json.dumps([scanned_at, canonical], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _cursor(text: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError):
        value = None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, str) for v in value)
    ):
        raise Invalid("before", 'not a cursor from a previous page\'s "next"')
    return value[0], value[1]


# -- database calls (in worker threads) -------------------------------------------


def _audited(
    db: Database,
    action: str,
    detail: dict[str, Any],
    change: Callable[[Database], tuple[T, str]],
) -> T:
    """Make a change and record it in the audit log, in one transaction.

    ``change`` returns its result and the target to log (an override's id is
    known only once it is made); a None or False result (nothing there to
    change) is not logged.
    """
    with storage.transaction(db):
        result, target = change(db)
        if result is not None and result is not False:
            storage.append_audit(db, ACTOR, action, target, detail)
        return result


def _counts(db: Database, now: datetime) -> dict[str, Any]:
    def one(sql: str, *params: Any) -> Any:
        return db.execute(sql, params).fetchone()[0]

    def by(sql: str) -> dict[str, int]:
        return {str(key): int(n) for key, n in db.execute(sql).fetchall()}

    stamp = format_time(now)
    return {
        "schema_version": storage.schema_version(db),
        "scanner_model": one(
            "SELECT model_version FROM verdicts ORDER BY scanned_at DESC LIMIT 1"
        ),
        "verdicts": by("SELECT level, count(*) FROM verdicts GROUP BY level"),
        "scans_last_24h": one(
            "SELECT count(*) FROM verdicts WHERE scanned_at >= ?",
            format_time(now - timedelta(days=1)),
        ),
        "groups": one("SELECT count(*) FROM groups"),
        "groups_enabled": one("SELECT count(*) FROM groups WHERE enabled"),
        "groups_muted": one("SELECT count(*) FROM groups WHERE muted_until > ?", stamp),
        "overrides_active": one(
            "SELECT count(*) FROM overrides WHERE expires_at IS NULL OR expires_at > ?",
            stamp,
        ),
        "messages_waiting": one(
            "SELECT count(*) FROM (SELECT 1 FROM reporter_parts"
            " GROUP BY group_id, message_id, batch)"
        ),
        "replies": by("SELECT status, count(*) FROM replies GROUP BY status"),
    }


def _depths(client: redis.Redis) -> dict[str, dict[str, int]]:
    return {
        stream.split(":")[-1]: queue.depth_sync(client, stream, group)
        for stream, group in _STREAM_GROUPS
    }


_SCAN_COLUMNS: Final = (
    "canonical, url, level, score, reasons, model_version, scanned_at,"
    " first_seen_at, scan_count"
)


def _scan_row(row: tuple[Any, ...]) -> dict[str, Any]:
    canonical, url, level, score, reasons, model, scanned, first, count = row
    return {
        "id": link_hash(canonical),
        "canonical": canonical,
        "url": url,
        "verdict": level,
        "score": score,
        "reasons": json.loads(reasons),
        "model_version": model,
        "scanned_at": scanned,
        "first_seen_at": first,
        "scan_count": count,
    }


def _scans(db: Database, limit: int, before: tuple[str, str] | None) -> list[Any]:
    where = " WHERE (scanned_at, canonical) < (?, ?)" if before else ""
    rows = db.execute(
        f"SELECT {_SCAN_COLUMNS} FROM verdicts{where}"
        " ORDER BY scanned_at DESC, canonical DESC LIMIT ?",
        (*(before or ()), limit),
    ).fetchall()
    return [_scan_row(row) for row in rows]


def _scan(db: Database, scan_id: str) -> dict[str, Any] | None:
    def canonical() -> str | None:
        row = db.execute(
            "SELECT canonical FROM scan_ids WHERE id = ?", (scan_id,)
        ).fetchone()
        return str(row[0]) if row else None

    found = canonical()
    if found is None and ledger.index_scans(db):
        found = canonical()
    if found is None:
        return None
    row = db.execute(
        f"SELECT {_SCAN_COLUMNS}, signals FROM verdicts WHERE canonical = ?", (found,)
    ).fetchone()
    if row is None:
        return None
    scan = _scan_row(row[:-1])
    scan["signals"] = json.loads(row[-1])
    seen = db.execute(
        "SELECT count(*), count(DISTINCT group_id), max(seen_at) FROM sightings"
        " WHERE canonical = ?",
        (found,),
    ).fetchone()
    scan["sightings"] = {"messages": seen[0], "groups": seen[1], "last_at": seen[2]}
    return scan


# -- responses ---------------------------------------------------------------------


def _override(override: storage.Override) -> dict[str, Any]:
    return {
        "id": override.id,
        "scope": override.scope,
        "kind": override.kind,
        "value": override.value,
        "action": override.action,
        "reason": override.reason,
        "created_by": override.created_by,
        "created_at": override.created_at,
        "expires_at": override.expires_at,
    }


def _group(record: dict[str, Any], now: datetime) -> dict[str, Any]:
    muted = record["muted_until"]
    return {**record, "muted": bool(muted) and muted > format_time(now)}
