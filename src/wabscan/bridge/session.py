"""The WhatsApp session's state, as an operator sees it in /healthz and STATUS=.

``next_state`` is the whole policy, a pure function of the current state and
one :class:`~wabscan.bridge.events.SessionEvent`; :class:`Session` keeps the
current state and tells the unit (health, status line, metrics) when it
changes. The transport decides what to do about a transition (stop the
client, start a new one).

The states an operator acts on are the ones only a person can fix: a
session logged out (WhatsApp deletes it; ``wabscan login`` makes a new one)
and a client WhatsApp calls outdated (405: upgrade neonize). The bridge
stays up in both, answers /healthz with 503 and says what to do in its
status line, instead of restarting into the same answer again and again.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from wabscan.bridge import events


class SessionState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    NEEDS_PAIRING = "logged-out-needs-pairing"
    CLIENT_OUTDATED = "client-outdated"
    TEMPORARILY_BANNED = "temporarily-banned"
    STOPPED = "stopped"


# States that no reconnect can leave: the operator has to act.
WAITING_FOR_OPERATOR: Final = frozenset(
    {SessionState.NEEDS_PAIRING, SessionState.CLIENT_OUTDATED}
)

# whatsmeow sends a keep-alive every 20-30 s, waits 10 s for the answer and
# reports each failure; it reconnects by itself only after three minutes
# without one. Three failures in a row (90-120 s) is when the bridge stops
# trusting the connection and starts a new client: a silent dead connection
# was one of the failures of the system this replaces (FIELD-NOTES).
KEEPALIVE_FAILURES_BEFORE_RESTART: Final = 3


@dataclass(frozen=True, slots=True)
class Transition:
    """What an event does to the session.

    Attributes:
        state: the state after the event.
        restart: the current client is to be dropped and a new one started
            (counted against ``bridge.max_reconnects``).
        stop: the current client is to be stopped and none started until
            the operator acts (or, for pairing, until a session appears).
    """

    state: SessionState
    restart: bool = False
    stop: bool = False


def next_state(state: SessionState, event: events.SessionEvent) -> Transition:
    """The session's state after ``event``."""
    kind = event.kind
    if kind in (events.LOGGED_OUT, events.PAIRING):
        return Transition(SessionState.NEEDS_PAIRING, stop=True)
    if kind == events.CLIENT_OUTDATED:
        return Transition(SessionState.CLIENT_OUTDATED, stop=True)
    if state in WAITING_FOR_OPERATOR:
        return Transition(state)
    if kind == events.CONNECTED:
        return Transition(SessionState.CONNECTED)
    if kind == events.TEMPORARY_BAN:
        return Transition(SessionState.TEMPORARILY_BANNED)
    if kind == events.KEEPALIVE_RESTORED:
        return Transition(
            SessionState.CONNECTED if state is SessionState.CONNECTING else state
        )
    if kind == events.KEEPALIVE_TIMEOUT:
        if event.count >= KEEPALIVE_FAILURES_BEFORE_RESTART:
            return Transition(SessionState.CONNECTING, restart=True)
        return Transition(state)
    if kind in (events.CONNECT_FAILED, events.STREAM_REPLACED):
        return Transition(SessionState.CONNECTING, restart=True)
    if kind in (events.DISCONNECTED, events.PAIRED):
        # whatsmeow reconnects by itself after a drop; after pairing the
        # login process holds the new session until it exits.
        return Transition(SessionState.CONNECTING)
    return Transition(state)


def status_line(state: SessionState, detail: str = "") -> str:
    """What ``systemctl status`` shows for a state (STATUS=)."""
    if state is SessionState.NEEDS_PAIRING:
        return (
            "logged out of WhatsApp: run `wabscan login` (or `wabscan login "
            "--phone NUMBER`) to pair; the bridge picks the session up by itself"
        )
    if state is SessionState.CLIENT_OUTDATED:
        return (
            "WhatsApp rejected this client as outdated (405): upgrade wabscan "
            "(its neonize), then restart the bridge"
        )
    if state is SessionState.TEMPORARILY_BANNED:
        return f"temporarily banned by WhatsApp ({detail or 'no reason given'})"
    if state is SessionState.CONNECTING:
        return f"connecting to WhatsApp{f' ({detail})' if detail else ''}"
    if state is SessionState.STOPPED:
        return "stopped"
    return f"connected{f' ({detail})' if detail else ' to WhatsApp'}"


Listener = Callable[["Session"], None]


@dataclass
class Session:
    """The current state, with when it began and the reconnects spent.

    Args:
        transport: ``whatsapp`` or ``local``, shown in /healthz.
        on_change: called after every change of state (on the trio thread).
    """

    transport: str
    on_change: Listener | None = None
    state: SessionState = SessionState.CONNECTING
    detail: str = ""
    since: float = field(default_factory=time.time)
    reconnects: int = 0
    keepalive_failures: int = 0

    def apply(self, event: events.SessionEvent) -> Transition:
        """Feed one event; returns what the transport must do about it."""
        if event.kind == events.KEEPALIVE_TIMEOUT:
            self.keepalive_failures = event.count
        elif event.kind in (events.KEEPALIVE_RESTORED, events.CONNECTED):
            self.keepalive_failures = 0
        transition = next_state(self.state, event)
        self.set(transition.state, event.detail)
        return transition

    def set(self, state: SessionState, detail: str = "") -> None:
        changed = state is not self.state or detail != self.detail
        if state is SessionState.CONNECTED:
            self.reconnects = 0
        if state is not self.state:
            self.since = time.time()
        self.state = state
        self.detail = detail
        if changed and self.on_change is not None:
            self.on_change(self)

    @property
    def healthy(self) -> bool:
        return self.state is SessionState.CONNECTED

    def describe(self) -> dict[str, Any]:
        """The ``session`` object of /healthz."""
        return {
            "state": self.state.value,
            "transport": self.transport,
            "since": round(self.since, 3),
            "reconnects": self.reconnects,
            "keepalive_failures": self.keepalive_failures,
            "detail": self.detail,
        }
