"""A small HTTP/1.1 server on trio, over h11, for /healthz, /metrics and the
control API.

Each service serves only a handful of routes to operators and Prometheus, so
a full web framework would cost more memory than the reporter's whole budget.
h11 does the protocol; this module does connections, limits and routing.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11
import trio

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
IDLE_TIMEOUT = 30.0
READ_CHUNK = 16 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class HTTPError(Exception):
    """Raise from a handler to answer with a JSON error: ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data, ensure_ascii=False).encode() + b"\n")


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    """Routes by method and path pattern; ``{name}`` segments become params."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, list[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, pattern.strip("/").split("/"), handler))

    async def __call__(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        allowed: list[str] = []
        for method, pattern, handler in self._routes:
            params = _match(pattern, parts)
            if params is None:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            routed = Request(
                request.method,
                request.path,
                request.query,
                request.headers,
                request.body,
                params,
            )
            return await handler(routed)
        if allowed:
            response = error_response(405, f"method {request.method} not allowed")
            response.headers["allow"] = ", ".join(sorted(set(allowed)))
            return response
        return error_response(404, f"no such resource: {request.path}")


def _match(pattern: list[str], parts: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(parts):
        return None
    params: dict[str, str] = {}
    for want, got in zip(pattern, parts, strict=True):
        if want.startswith("{") and want.endswith("}"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def listeners_from(sockets: list[socket.socket]) -> list[trio.SocketListener]:
    return [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in sockets]


async def serve(
    listeners: list[trio.SocketListener],
    handler: Handler,
    *,
    max_body: int = MAX_BODY,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP on the listeners until cancelled."""

    async def connection(stream: trio.abc.Stream) -> None:
        try:
            await _serve_connection(stream, handler, max_body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(trio.serve_listeners, connection, [listener])
        task_status.started()


async def _serve_connection(
    stream: trio.abc.Stream, handler: Handler, max_body: int
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    while True:
        try:
            with trio.fail_after(IDLE_TIMEOUT):
                request = await _read_request(stream, conn, max_body)
        except trio.TooSlowError:
            return
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                status = exc.error_status_hint
                await _send(stream, conn, error_response(status, f"bad request: {exc}"))
            return
        if request is None:
            return
        if isinstance(request, Response):  # refused before the handler ran
            await _send(stream, conn, request)
            return

        try:
            response = await handler(request)
        except HTTPError as exc:
            response = error_response(exc.status, exc.message)
        except Exception:
            log.exception(
                "http-handler-failed method=%s path=%s", request.method, request.path
            )
            response = error_response(500, "internal error; see the service's journal")
        await _send(stream, conn, response)

        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return


async def _read_request(
    stream: trio.abc.Stream, conn: h11.Connection, max_body: int
) -> Request | Response | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(READ_CHUNK)
            conn.receive_data(bytes(data))
            if not data and head is None:
                return None
            continue
        if isinstance(event, h11.ConnectionClosed):
            return None
        if isinstance(event, h11.Request):
            head = event
            length = _content_length(event)
            if length is not None and length > max_body:
                return error_response(413, f"request body over {max_body} bytes")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body:
                return error_response(413, f"request body over {max_body} bytes")
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            target = urlsplit(head.target.decode("latin-1"))
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in head.headers
            }
            return Request(
                method=head.method.decode("ascii"),
                path=target.path or "/",
                query=dict(parse_qsl(target.query)),
                headers=headers,
                body=bytes(body),
            )


def _content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send(
    stream: trio.abc.Stream, conn: h11.Connection, response: Response
) -> None:
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        *response.headers.items(),
    ]
    if conn.their_state is not h11.DONE:
        # We answered before reading the whole request: say we will close.
        headers.append(("connection", "close"))
    data = conn.send(h11.Response(status_code=response.status, headers=headers))
    data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
