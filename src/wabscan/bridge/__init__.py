"""The bridge unit: the WhatsApp session, inbound messages, the outbox sender.

WhatsApp's own types stop in this package. ``events`` turns neonize's
protobufs into the small frozen values below it; ``whatsapp`` holds the
neonize session and is the only module that imports neonize at run time;
``local`` is the stand-in transport for tests, the demo and soak runs. Both
transports hand :class:`~wabscan.bridge.events.InboundMessage` values to the
same inbound path, and send what the outbox path gives them. docs/bridge.md
describes the guarantees (what is durable when, what WhatsApp re-delivers).
"""
