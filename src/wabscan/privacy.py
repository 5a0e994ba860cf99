"""Sender ids are never stored or shown as such: they become keyed hashes.

A keyed hash (HMAC-SHA256 under a per-installation secret) lets wabscan tell
one sender from another, and the same sender over time, without a table of
hashes being reversible by hashing every phone number (an unkeyed hash of a
phone number is, since there are only ~10^10 of them).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from wabscan.config import Config
from wabscan.errors import ConfigError

KEY_BYTES = 32


def author_hash(key: bytes, author: str) -> str:
    """A short, stable, keyed pseudonym for a sender (phone JID, name...)."""
    digest = hmac.new(key, author.strip().encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:16]


def load_author_key(config: Config) -> bytes:
    """The installation's hashing key: from the configured file, a systemd
    credential, or ``<state_dir>/author-key``, created on first use.

    Raises:
        ConfigError: the key file exists but cannot be read or is too short.
    """
    if config.author_key_file:
        path = Path(config.author_key_file)
    elif os.environ.get("CREDENTIALS_DIRECTORY"):
        path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / "author-key"
    else:
        path = config.state_path / "author-key"

    if not path.exists() and not config.author_key_file:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two units starting together must not write two keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(KEY_BYTES) + "\n")

    try:
        key = path.read_text(encoding="utf-8").strip().encode()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read the author key: {exc}") from None
    if len(key) < 16:
        raise ConfigError(str(path), "author key is shorter than 16 characters")
    return key
