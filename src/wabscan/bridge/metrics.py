"""The bridge's Prometheus metrics, in one place so every part counts alike."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from wabscan.bridge.session import SessionState


class BridgeMetrics:
    """Counters and gauges of the bridge unit, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "wabscan_bridge_messages",
            "Group messages read, by what the bridge did with them",
            ["outcome"],
            registry=registry,
        )
        self.links = Counter(
            "wabscan_bridge_links_queued",
            "Scan jobs handed on (to Redis or the spool)",
            registry=registry,
        )
        self.spooled = Counter(
            "wabscan_bridge_spooled",
            "Stream entries kept in SQLite because Redis refused them",
            registry=registry,
        )
        self.replayed = Counter(
            "wabscan_bridge_spool_replayed",
            "Spooled entries added to Redis later",
            registry=registry,
        )
        self.spool_depth = Gauge(
            "wabscan_bridge_spool_depth",
            "Entries waiting in the spool",
            registry=registry,
        )
        self.replies = Counter(
            "wabscan_bridge_replies_sent",
            "Replies sent to WhatsApp, by kind",
            ["kind"],
            registry=registry,
        )
        self.replies_skipped = Counter(
            "wabscan_bridge_replies_skipped",
            "Outbox entries not sent: already sent, in doubt after a crash, "
            "or malformed",
            ["reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "wabscan_bridge_rate_limited",
            "Times a reply had to wait for a rate limit",
            ["scope"],
            registry=registry,
        )
        self.session_state = Gauge(
            "wabscan_bridge_session_state",
            "The WhatsApp session's state (1 for the current one)",
            ["state"],
            registry=registry,
        )
        for state in SessionState:
            self.session_state.labels(state.value).set(0)

    def set_session_state(self, state: SessionState) -> None:
        for each in SessionState:
            self.session_state.labels(each.value).set(1 if each is state else 0)
