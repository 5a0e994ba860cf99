"""The bridge unit: the WhatsApp session, the inbound path and the outbox sender.

Run as ``run_unit("bridge", config, main)`` (``wabscan bridge``). Three
loops in one nursery, each beating the watchdog while it makes progress:

- ``inbound``: the transport receiving (neonize's thread handing events to
  trio, or the local transport polling its file), each message made durable
  before the transport is told it was taken;
- ``spool``: entries Redis refused, added to it in order once it is back;
- ``outbox``: replies from the ``outbox`` stream, sent at most once.

Readiness. ``READY=1`` is sent once the session is connected, or once it is
in a state only an operator can change (logged out and waiting for
``wabscan login``, or a client WhatsApp calls outdated): withholding it then
would make systemd kill and restart the unit at its start timeout, a crash
loop that cannot fix either. /healthz answers 503 in those states and
``STATUS=`` says what to do. While connecting, the unit is not ready;
``TimeoutStartSec`` must cover ``bridge.max_reconnects`` attempts.

Stopping. On SIGTERM the transport stops receiving (neonize's client is
stopped, so WhatsApp keeps what was not yet delivered), the outbox finishes
the reply in hand, and everything else stays pending in Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import trio

from wabscan import queue
from wabscan.bridge import groups
from wabscan.bridge.events import InboundMessage
from wabscan.bridge.inbound import Inbound
from wabscan.bridge.local import LocalTransport, transport_file
from wabscan.bridge.metrics import BridgeMetrics
from wabscan.bridge.outbox import CONSUMER, GROUP, OutboxSender
from wabscan.bridge.session import (
    WAITING_FOR_OPERATOR,
    Session,
    SessionState,
    status_line,
)
from wabscan.bridge.spool import Spool
from wabscan.bridge.transport import SessionLost, Transport
from wabscan.config import Config
from wabscan.errors import ConfigError
from wabscan.privacy import load_author_key
from wabscan.serial import SerialDatabase
from wabscan.service import Unit
from wabscan.storage import utc_now

log = logging.getLogger(__name__)

LOOPS = ("inbound", "spool", "outbox")


def make_transport(config: Config) -> Transport:
    """The transport the configuration names.

    Raises:
        ConfigError: ``bridge.transport`` is neither ``whatsapp`` nor ``local``.
    """
    kind = config.bridge.transport
    if kind == "local":
        return LocalTransport(transport_file(config))
    if kind == "whatsapp":
        from wabscan.bridge.whatsapp import WhatsAppTransport

        return WhatsAppTransport(config)
    raise ConfigError(
        config.source, f"bridge.transport: {kind!r} is not 'whatsapp' or 'local'"
    )


class BridgeUnit:
    """The parts of one running bridge, wired together."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        config = unit.config
        self.metrics = BridgeMetrics(unit.registry)
        self.transport = make_transport(config)
        self.session = Session(self.transport.name, on_change=self._session_changed)
        self.shared = SerialDatabase.open(config.database_path)
        # No retries on either client: a refused XADD spools at once, and a
        # retried XREADGROUP could move entries behind our back (FIELD-NOTES).
        self.spool = Spool(
            self.shared, queue.connect(config.redis_url, consumer=True), self.metrics
        )
        self.inbound = Inbound(
            config,
            self.shared,
            self.spool,
            load_author_key(config),
            self.metrics,
            self._is_admin,
            lambda: self.session.state.value,
        )
        self.outbox = OutboxSender(
            config.bridge,
            self.shared,
            queue.Consumer(
                queue.connect(config.redis_url, consumer=True),
                queue.OUTBOX,
                GROUP,
                CONSUMER,
            ),
            self.transport,
            self.session,
            self.metrics,
        )
        self._announced = False
        self.lost: SessionLost | None = None
        self.metrics.set_session_state(self.session.state)
        unit.health.details["session"] = self.session.describe()
        unit.health.problem("session", status_line(self.session.state))

    async def run(self) -> None:
        unit = self.unit
        for name in LOOPS:
            unit.notifier.register(name)
        await self.shared.run(groups.prune_commands, utc_now() - timedelta(days=7))
        await self.spool.start()
        unit.status(status_line(self.session.state, "starting"))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive, nursery.cancel_scope)
                nursery.start_soon(
                    self.spool.replay_loop, unit.stopping, self._beater("spool")
                )
                nursery.start_soon(
                    self.outbox.run, unit.stopping, self._beater("outbox")
                )
        finally:
            if self.lost is None:
                self.session.set(SessionState.STOPPED)
            close = getattr(self.transport, "close", None)
            if close is not None:
                close()
            self.shared.close()
            log.info(
                "bridge-stopped replies_sent=%d spool_depth=%d",
                self.outbox.sent,
                self.spool.depth,
            )
        if self.lost is not None:
            raise self.lost

    async def _receive(self, scope: trio.CancelScope) -> None:
        try:
            await self.transport.run(
                self.inbound, self.session, self.unit.stopping, self._beater("inbound")
            )
        except SessionLost as exc:
            # Raised again below, outside this nursery: the unit exits
            # non-zero and systemd starts a fresh process.
            log.error("session-lost reason=%r", str(exc))
            self.lost = exc
            scope.cancel()

    def _beater(self, name: str) -> Callable[[], None]:
        notifier = self.unit.notifier

        def beat() -> None:
            notifier.beat(name)

        return beat

    async def _is_admin(self, message: InboundMessage) -> bool:
        return await self.transport.is_admin(
            message.group, message.sender_jid, message.sender_pn
        )

    def _session_changed(self, session: Session) -> None:
        unit = self.unit
        state = session.state
        self.metrics.set_session_state(state)
        unit.health.details["session"] = session.describe()
        line = status_line(state, session.detail)
        if session.healthy:
            unit.health.clear("session")
        else:
            unit.health.problem("session", line)
        alarming = (
            state in WAITING_FOR_OPERATOR or state is SessionState.TEMPORARILY_BANNED
        )
        log.log(
            logging.WARNING if alarming else logging.INFO,
            "session state=%s detail=%r",
            state.value,
            session.detail,
        )
        if not self._announced and (session.healthy or state in WAITING_FOR_OPERATOR):
            self._announced = True
            unit.ready(line)
        else:
            unit.status(line)


async def main(unit: Unit) -> None:
    """The bridge unit's main function, for ``run_unit("bridge", ...)``."""
    await BridgeUnit(unit).run()
