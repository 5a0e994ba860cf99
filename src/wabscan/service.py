"""The shell every wabscan unit runs in.

A unit is a trio program with one main function. This module gives it its
sockets (systemd's, or its own), ``/healthz`` and ``/metrics`` on them,
sd_notify with a progress-gated watchdog, and an orderly stop: on SIGTERM the
unit's ``stopping`` event is set, its loops finish the batch they hold and
return, and whatever is still running after ``STOP_GRACE`` seconds is
cancelled (work in flight is then handed back through Redis, unacknowledged).
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    generate_latest,
)

from wabscan import __version__
from wabscan.config import Config
from wabscan.http import Request, Response, Router, json_response, listeners_from, serve
from wabscan.systemd import Notifier, bind_address, listen_sockets

log = logging.getLogger(__name__)

# Below every unit's TimeoutStopSec (the shortest is 10 s), so that a unit
# always exits on its own before systemd sends SIGKILL.
STOP_GRACE = 5.0


@dataclass
class Health:
    """What /healthz says: ``starting``, ``ready`` or ``degraded``, and why."""

    state: str = "starting"
    problems: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def problem(self, key: str, text: str) -> None:
        self.problems[key] = text

    def clear(self, key: str) -> None:
        self.problems.pop(key, None)

    @property
    def ok(self) -> bool:
        return self.state == "ready" and not self.problems

    def to_dict(self) -> dict[str, Any]:
        state = "degraded" if self.state == "ready" and self.problems else self.state
        return {"state": state, "problems": self.problems, **self.details}


@dataclass
class Unit:
    """One running service, as its main function sees it."""

    name: str
    config: Config
    notifier: Notifier
    registry: CollectorRegistry
    router: Router
    health: Health = field(default_factory=Health)
    stopping: trio.Event = field(default_factory=trio.Event)
    started_at: float = field(default_factory=time.time)
    _status_at: float = float("-inf")

    def ready(self, status: str) -> None:
        self.health.state = "ready"
        self.notifier.ready(status)
        log.info("ready unit=%s status=%r", self.name, status)

    def status(self, status: str, *, every: float = 0.0) -> None:
        """Update ``STATUS=``; with ``every``, at most once per that many seconds
        (counters change per batch, systemctl status needs no more)."""
        now = time.monotonic()
        if every and now - self._status_at < every:
            return
        self._status_at = now
        self.notifier.status(status)


Main = Callable[[Unit], Awaitable[None]]


def unit_sockets(name: str, config: Config) -> list[socket.socket]:
    """The sockets handed over by systemd, or bound from ``listen.<name>``."""
    passed = listen_sockets()
    if passed:
        return [sock for socks in passed.values() for sock in socks]
    address = getattr(config.listen, name)
    return [bind_address(address)]


def run_unit(name: str, config: Config, main: Main) -> None:
    """Run a unit until it stops; exits non-zero when its main raises."""
    trio.run(_run, name, config, main)


async def _run(name: str, config: Config, main: Main) -> None:
    registry = CollectorRegistry()
    Gauge(
        "wabscan_build_info", "wabscan version", ["version", "unit"], registry=registry
    ).labels(__version__, name).set(1)
    unit = Unit(name, config, Notifier(), registry, Router())
    unit.router.add("GET", "/healthz", _healthz(unit))
    unit.router.add("GET", "/metrics", _metrics(unit))
    listeners = listeners_from(unit_sockets(name, config))

    async with trio.open_nursery() as nursery:
        await nursery.start(serve, listeners, unit.router)
        nursery.start_soon(unit.notifier.watchdog_loop)
        nursery.start_soon(_stop_on_signal, unit, nursery.cancel_scope)
        try:
            await main(unit)
        finally:
            nursery.cancel_scope.cancel()
    log.info("stopped unit=%s", name)


async def _stop_on_signal(unit: Unit, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info(
                "stopping unit=%s signal=%s", unit.name, signal.Signals(signum).name
            )
            unit.notifier.stopping()
            unit.status("stopping")
            unit.stopping.set()
            break
    # The loops see `stopping`, finish their batch and return; past the grace
    # period whatever remains is cancelled.
    await trio.sleep(STOP_GRACE)
    log.warning("stop-forced unit=%s after=%ss", unit.name, STOP_GRACE)
    scope.cancel()


def _healthz(unit: Unit) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        body = {
            "unit": unit.name,
            "version": __version__,
            "uptime_seconds": round(time.time() - unit.started_at, 1),
            **unit.health.to_dict(),
        }
        return json_response(body, 200 if unit.health.ok else 503)

    return handler


def _metrics(unit: Unit) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        # FIELD-NOTES: a large registry costs ~17 ms to render; keep it off
        # the event loop.
        body = await trio.to_thread.run_sync(generate_latest, unit.registry)
        return Response(200, body, CONTENT_TYPE_LATEST)

    return handler
