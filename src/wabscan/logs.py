"""Logging for operators who read ``journalctl -u wabscan-<unit>``.

One event a line: a stable first word, then ``key=value`` details. Under
systemd (``$JOURNAL_STREAM`` set) each line starts with an sd-daemon priority
prefix (``<3>``, ``<4>``...) so that ``journalctl -p warning`` filters work,
and carries no timestamp (the journal adds its own). Elsewhere lines carry a
time, the level and the unit's name, for ``wabscan run``'s interleaved view.
"""

from __future__ import annotations

import logging
import os
import sys

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        # Every line of a multi-line record (a traceback) keeps the priority.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def setup_logging(unit: str, level: str = "INFO") -> None:
    """Configure the root logger for one unit; call after ``import neonize``
    (which calls ``logging.basicConfig`` at import)."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s %(levelname)-7s {unit}: %(message)s", "%H:%M:%S"
            )
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries that log request lines or payloads stay at warning.
    for noisy in ("whatsmeow", "neonize", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
