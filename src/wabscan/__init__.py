"""wabscan: a self-hosted link scanner for WhatsApp groups."""

__version__ = "0.1.0"
