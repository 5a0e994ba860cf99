"""The WhatsApp transport: neonize's sync client in a thread, events handed to trio.

This is the only module that imports neonize at run time (importing it
starts the Go runtime and costs 40-50 MB, FIELD-NOTES), and only when
``bridge.transport = "whatsapp"``.

How the pieces meet (measured behaviour in FIELD-NOTES):

- ``NewClient.connect()`` blocks for the life of the connection, so it runs
  in a daemon thread of its own. Offline it raises ``NeonizeError`` within
  0.05 s; against a host that never answers it blocks about 10 s; there is
  no retry inside it, and whatsmeow reconnects by itself only after a
  connection that once worked drops.
- neonize calls the event handlers one after another on its own thread. A
  message handler translates the event there (pure, ``events``), then waits
  in ``trio.from_thread.run`` until the inbound path has made the jobs
  durable. neonize queues up to 100 events behind it (a Go channel), and
  whatsmeow sends a message's receipt once the event is queued, not once
  the bridge has it: docs/bridge.md says what that means after a crash. When
  the bridge is slow the queue fills and whatsmeow stops reading, which is
  the back-pressure wanted. An exception in a handler would be printed and
  swallowed by ctypes, so every handler catches and logs its own.
- A connection cycle ends when ``connect()`` returns or raises, or when a
  session event calls for a new client (keep-alives failing, a connect
  failure, the stream replaced). Each failed cycle leaks about 185 KB and a
  file descriptor inside neonize, so after ``bridge.max_reconnects`` failed
  cycles in a row (with exponential back-off) the transport raises
  :class:`~wabscan.bridge.transport.SessionLost` and systemd restarts the
  unit with a fresh process.
- ``stop()`` can block about 8 s while a dial hangs: it is called from a
  daemon thread, and waited for at most :data:`STOP_WAIT` seconds.
- A logged-out session (WhatsApp deletes it) or an outdated client are not
  retried: the state says what the operator must do, /healthz answers 503,
  and the unit stays up. A missing session is noticed without connecting
  (no device row in the session store); the transport then checks every
  :data:`PAIRING_POLL` seconds whether ``wabscan login`` made one.

neonize 0.5.2's ``send_message`` takes no message id (its Go side builds
whatsmeow's ``SendRequestExtra`` without one), so this transport cannot
make a resend after a crash harmless: ``custom_ids`` is False and the outbox
does not resend a reply left in doubt (docs/bridge.md).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import trio

from wabscan.bridge import events
from wabscan.bridge.events import InboundMessage, jid_string
from wabscan.bridge.session import Session, SessionState
from wabscan.bridge.transport import (
    InboundSink,
    RecentMessages,
    SendFailed,
    SessionLost,
)
from wabscan.config import Config

log = logging.getLogger(__name__)

STOP_WAIT: Final = 10.0  # stop() blocks ~8 s on a hanging dial (FIELD-NOTES)
PAIRING_POLL: Final = 10.0
ADMIN_TTL: Final = 60.0  # group admins are looked up at most once a minute
BACKOFF_MAX: Final = 60.0
# How long a client may stay "connecting" before the cycle counts as failed:
# a first dial takes at most ~10 s against a host that never answers
# (FIELD-NOTES), and whatsmeow's own reconnects wait 2 s longer each time
# (0, 2, 4... s), so this allows about ten of them.
RECONNECT_GRACE: Final = 120.0
# A handler waiting longer than this means the trio side is stuck (a locked
# database, say): the inbound loop stops beating and the watchdog restarts
# the unit.
HANDLER_STUCK: Final = 60.0
# A planned stop waits for neonize's queue of events (up to 100) to empty:
# until no event arrived for DRAIN_IDLE seconds, at most DRAIN_MAX (below
# the unit's STOP_GRACE of 5 s).
DRAIN_IDLE: Final = 0.3
DRAIN_MAX: Final = 3.0
_DIGITS: Final = re.compile(r"[0-9]{6,}")
# Errors from WhatsApp after which resending cannot help.
_PERMANENT: Final = ("forbidden", "not-authorized", "403", "item-not-found", "404")


def redact(text: str) -> str:
    """neonize's error text with long digit runs (phone numbers, in JIDs)
    masked, for the journal."""
    return _DIGITS.sub("…", text)


def session_file(config: Config) -> Path:
    """The whatsmeow session store: ``bridge.session_file`` or
    ``<state_dir>/whatsapp-session.sqlite3``."""
    if config.bridge.session_file:
        return Path(config.bridge.session_file)
    return config.state_path / "whatsapp-session.sqlite3"


def is_paired(path: Path) -> bool:
    """Whether the session store holds a device (a paired session), read
    without neonize and without creating the file."""
    if not path.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            row = conn.execute("SELECT count(*) FROM whatsmeow_device").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return bool(row and row[0])


def import_neonize() -> None:
    """Import neonize and quieten it: its import calls ``basicConfig`` at
    INFO (FIELD-NOTES), and whatsmeow's log lines carry JIDs."""
    import neonize  # noqa: F401

    for name in ("neonize", "whatsmeow", "Whatsmeow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # It warns at every connect that ffmpeg is missing; the bridge sends no
    # media, so that is noise in the journal.
    logging.getLogger("neonize.utils.ffmpeg").setLevel(logging.ERROR)


class WhatsAppTransport:
    """The bridge's connection to WhatsApp through neonize.

    Args:
        config: the configuration (session file, ``bridge.max_reconnects``).
    """

    name = "whatsapp"
    custom_ids = False

    def __init__(self, config: Config) -> None:
        import_neonize()
        self.path = session_file(config)
        self.max_reconnects = config.bridge.max_reconnects
        self.recent: RecentMessages[Any] = RecentMessages()
        self.client: Any = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._sink: InboundSink | None = None
        self._session: Session | None = None
        self._admins: dict[str, tuple[float, frozenset[str]]] = {}
        self._in_flight: dict[int, float] = {}
        self._last_event = 0.0
        self._cycle_end = trio.Event()
        self._cycle_outcome = ""
        self._cycle_connected = False

    # -- receiving ---------------------------------------------------------

    async def run(
        self,
        sink: InboundSink,
        session: Session,
        stopping: trio.Event,
        beat: Callable[[], None],
    ) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._sink = sink
        self._session = session
        failures = 0
        lost: SessionLost | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._beat_loop, stopping, beat)
            while not stopping.is_set():
                paired = await trio.to_thread.run_sync(is_paired, self.path)
                if not paired:
                    if session.state is not SessionState.NEEDS_PAIRING:
                        log.warning("session-missing path=%s", self.path)
                    session.set(SessionState.NEEDS_PAIRING, "no session")
                    await _wait(stopping, PAIRING_POLL)
                    continue

                session.set(
                    SessionState.CONNECTING,
                    f"attempt {failures + 1} of {self.max_reconnects + 1}",
                )
                outcome = await self._cycle(stopping)
                if outcome == "stopped":
                    break
                if outcome == "operator":
                    # Outdated: nothing a new attempt can change; wait to be
                    # stopped. Logged out: whatsmeow deleted the session;
                    # poll for the one `wabscan login` will make.
                    if session.state is SessionState.CLIENT_OUTDATED:
                        await stopping.wait()
                    await _wait(stopping, PAIRING_POLL)
                    failures = 0
                    continue
                failures = 1 if self._cycle_connected else failures + 1
                session.reconnects = failures
                if failures > self.max_reconnects:
                    lost = SessionLost(
                        f"WhatsApp connection failed {failures} times in a row"
                    )
                    break
                delay = min(2.0**failures, BACKOFF_MAX)
                log.warning(
                    "session-retry failures=%d of=%d in=%ss",
                    failures,
                    self.max_reconnects,
                    delay,
                )
                await _wait(stopping, delay)
            nursery.cancel_scope.cancel()
        await self._stop_client()
        if lost is not None:
            # Raised outside the nursery, so that callers see SessionLost
            # itself rather than an exception group.
            raise lost

    async def _cycle(self, stopping: trio.Event) -> str:
        """One client from connect to its end: ``stopped``, ``operator`` (a
        state only a person can fix) or ``lost``."""
        from neonize.client import NewClient

        self._cycle_end = trio.Event()
        self._cycle_outcome = ""
        self._cycle_connected = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        client = NewClient(str(self.path))
        self._register(client)
        self.client = client
        self._admins.clear()

        finished = trio.Event()
        error: list[BaseException] = []
        token = trio.lowlevel.current_trio_token()

        def connect() -> None:
            try:
                client.connect()
            except BaseException as exc:  # reported on the trio side
                error.append(exc)
            finally:
                with contextlib.suppress(trio.RunFinishedError):
                    trio.from_thread.run_sync(finished.set, trio_token=token)

        threading.Thread(target=connect, name="neonize-connect", daemon=True).start()
        async with trio.open_nursery() as nursery:

            async def watch(event: trio.Event, outcome: str) -> None:
                await event.wait()
                if not self._cycle_outcome:
                    self._cycle_outcome = outcome
                nursery.cancel_scope.cancel()

            async def watch_reconnect() -> None:
                # whatsmeow reconnects by itself after a drop; when it has
                # not managed within RECONNECT_GRACE, the cycle counts as
                # failed, so that a long outage ends in a restart.
                session = self._session
                while True:
                    await trio.sleep(5.0)
                    if (
                        session is not None
                        and session.state is SessionState.CONNECTING
                        and time.time() - session.since > RECONNECT_GRACE
                    ):
                        log.warning("session-stuck state=connecting")
                        self._cycle_outcome = self._cycle_outcome or "lost"
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(watch, stopping, "stopped")
            nursery.start_soon(watch, finished, "lost")
            nursery.start_soon(watch, self._cycle_end, "lost")
            nursery.start_soon(watch_reconnect)

        if error:
            log.warning(
                "connect-failed error=%s detail=%r",
                error[0].__class__.__name__,
                redact(str(error[0]))[:200],
            )
        if not finished.is_set():
            if self._cycle_outcome == "stopped":
                await self._drain(client)
            await self._stop_client()
            with trio.move_on_after(STOP_WAIT):
                await finished.wait()
            if not finished.is_set():
                log.warning("neonize-stop-slow waited=%ss", STOP_WAIT)
        self.client = None
        return self._cycle_outcome or "lost"

    async def _drain(self, client: Any) -> None:
        """Before a planned stop: disconnect, then let neonize hand over the
        events it already queued. ``stop()`` cancels the loop that delivers
        them, and whatsmeow sent their receipts when it queued them, so
        WhatsApp would not deliver them again (docs/bridge.md)."""
        await trio.to_thread.run_sync(
            _disconnect_quietly, client, abandon_on_cancel=True
        )
        with trio.move_on_after(DRAIN_MAX):
            while self._in_flight or time.monotonic() - self._last_event < DRAIN_IDLE:
                await trio.sleep(0.05)
        log.info("neonize-drained in_flight=%d", len(self._in_flight))

    async def _stop_client(self) -> None:
        client = self.client
        if client is None:
            return
        # stop() can block ~8 s on a hanging dial: never on the event loop,
        # and never joined (the unit's stop timeout covers it).
        threading.Thread(target=_stop_quietly, args=(client,), daemon=True).start()

    def _register(self, client: Any) -> None:
        from neonize.events import (
            ClientOutdatedEv,
            ConnectedEv,
            ConnectFailureEv,
            DisconnectedEv,
            JoinedGroupEv,
            KeepAliveRestoredEv,
            KeepAliveTimeoutEv,
            LoggedOutEv,
            MessageEv,
            PairStatusEv,
            QREv,
            StreamReplacedEv,
            TemporaryBanEv,
        )

        client.event(MessageEv)(self._on_message)
        client.event(JoinedGroupEv)(self._on_joined)
        for kind in (
            ConnectedEv,
            DisconnectedEv,
            LoggedOutEv,
            ClientOutdatedEv,
            KeepAliveTimeoutEv,
            KeepAliveRestoredEv,
            ConnectFailureEv,
            StreamReplacedEv,
            TemporaryBanEv,
            PairStatusEv,
            QREv,
        ):
            client.event(kind)(self._on_session_event)
        # Without a session the client would print a QR code on the journal:
        # pairing is `wabscan login`'s job, so the code is dropped here and
        # the QR event ends the cycle (state logged-out-needs-pairing).
        client.event.qr(lambda _client, _code: None)

    # The handlers below run on neonize's thread.

    def _on_message(self, client: Any, event: Any) -> None:
        try:
            message = events.translate_message(event, self._pn_for_lid)
            if message is None:
                return
            trio.from_thread.run(self._accept, message, event, trio_token=self._token)
        except trio.RunFinishedError:
            log.warning("message-dropped reason=stopping")
        except Exception as exc:
            log.exception("message-handler-failed error=%s", exc.__class__.__name__)

    def _on_joined(self, client: Any, event: Any) -> None:
        try:
            joined = events.translate_joined(event)
            if joined is None or self._sink is None:
                return
            trio.from_thread.run(self._sink.joined, joined, trio_token=self._token)
        except trio.RunFinishedError:
            pass
        except Exception as exc:
            log.exception("join-handler-failed error=%s", exc.__class__.__name__)

    def _on_session_event(self, client: Any, event: Any) -> None:
        try:
            translated = events.translate_session(event)
            if translated is not None:
                trio.from_thread.run_sync(
                    self._session_event, translated, trio_token=self._token
                )
        except trio.RunFinishedError:
            pass
        except Exception as exc:
            log.exception("session-handler-failed error=%s", exc.__class__.__name__)

    def _pn_for_lid(self, lid: str) -> str:
        from neonize.proto.Neonize_pb2 import JID

        client = self.client
        if client is None:
            return ""
        user, _, server = lid.partition("@")
        try:
            found = client.get_pn_from_lid(JID(User=user, Server=server))
        except Exception:
            return ""
        return jid_string(found)

    # The methods below run on the trio thread.

    async def _accept(self, message: InboundMessage, event: Any) -> None:
        key = id(event)
        self._in_flight[key] = self._last_event = time.monotonic()
        try:
            if not message.edited:
                self.recent.put(message.group, message.message_id, _quotable(event))
            assert self._sink is not None
            await self._sink.accept([message])
        finally:
            self._in_flight.pop(key, None)

    def _session_event(self, event: events.SessionEvent) -> None:
        session = self._session
        if session is None:
            return
        transition = session.apply(event)
        log.info(
            "session-event kind=%s detail=%s state=%s",
            event.kind,
            event.detail,
            transition.state.value,
        )
        if event.kind == events.CONNECTED:
            self._cycle_connected = True
        if transition.stop:
            self._cycle_outcome = "operator"
            self._cycle_end.set()
        elif transition.restart:
            self._cycle_outcome = "lost"
            self._cycle_end.set()

    async def _beat_loop(self, stopping: trio.Event, beat: Callable[[], None]) -> None:
        while not stopping.is_set():
            now = time.monotonic()
            if not any(
                now - started > HANDLER_STUCK for started in self._in_flight.values()
            ):
                beat()
            await _wait(stopping, 1.0)

    # -- sending -----------------------------------------------------------

    async def send(self, group: str, text: str, *, quote: str, message_id: str) -> str:
        client = self.client
        if client is None:
            raise SendFailed("not connected")
        quoted = self.recent.get(group, quote) if quote else None

        def send_now() -> str:
            from neonize.exc import NeonizeError
            from neonize.proto.Neonize_pb2 import JID

            user, _, server = group.partition("@")
            to = JID(User=user, Server=server or events.GROUP_SERVER)
            try:
                if quoted is not None:
                    built = client.build_reply_message(text, quoted)
                    response = client.send_message(to, built)
                else:
                    response = client.send_message(to, text)
            except NeonizeError as exc:
                detail = redact(str(exc))[:200]
                permanent = any(mark in detail.lower() for mark in _PERMANENT)
                raise SendFailed(detail, permanent=permanent) from None
            return str(response.ID)

        return await trio.to_thread.run_sync(send_now, abandon_on_cancel=True)

    async def is_admin(self, group: str, sender_jid: str, sender_pn: str) -> bool:
        cached = self._admins.get(group)
        if cached is None or time.monotonic() - cached[0] > ADMIN_TTL:
            admins = await trio.to_thread.run_sync(
                self._group_admins, group, abandon_on_cancel=True
            )
            if admins is None:
                return False
            cached = (time.monotonic(), admins)
            self._admins[group] = cached
        return bool({sender_jid, sender_pn} & cached[1] - {""})

    def _group_admins(self, group: str) -> frozenset[str] | None:
        from neonize.proto.Neonize_pb2 import JID

        client = self.client
        if client is None:
            return None
        user, _, server = group.partition("@")
        try:
            info = client.get_group_info(JID(User=user, Server=server))
        except Exception as exc:
            log.warning(
                "group-info-failed group=%s error=%s", group, exc.__class__.__name__
            )
            return None
        admins: set[str] = set()
        for participant in info.Participants:
            if participant.IsAdmin or participant.IsSuperAdmin:
                for jid in (participant.JID, participant.LID, participant.PhoneNumber):
                    admins.add(jid_string(jid))
        return frozenset(admins - {""})


def _quotable(event: Any) -> Any:
    """What ``build_reply_message`` needs to quote a message: its info (id,
    chat, sender) and a body to show in the quote. The body is cut to its
    first 300 characters of text: a photo's event carries its thumbnail, and
    4,096 of those would take tens of MB of the bridge's 100 MB budget."""
    slim = type(event)()
    slim.Info.CopyFrom(event.Info)
    slim.Message.conversation = events.message_text(event.Message)[:300]
    return slim


def _disconnect_quietly(client: Any) -> None:
    try:
        client.disconnect()
    except Exception as exc:
        log.warning("neonize-disconnect-failed error=%s", exc.__class__.__name__)


def _stop_quietly(client: Any) -> None:
    try:
        client.stop()
    except Exception as exc:
        log.warning("neonize-stop-failed error=%s", exc.__class__.__name__)


async def _wait(stopping: trio.Event, seconds: float) -> None:
    with trio.move_on_after(seconds):
        await stopping.wait()
