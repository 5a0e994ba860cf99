"""The configuration file: one TOML file shared by every unit and the CLI.

Looked up in this order: ``--config``, ``$WABSCAN_CONFIG``,
``/etc/wabscan/wabscan.toml``; without any, the defaults below apply, with the
state kept under ``$XDG_STATE_HOME/wabscan`` so that the command line works on
a laptop with no set-up. Every key is documented in docs/configuration.md.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from wabscan.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/wabscan/wabscan.toml")


@dataclass
class LinkLimits:
    max_per_message: int = 20
    max_url_length: int = 2048


@dataclass
class CacheSettings:
    """Seconds a verdict stays in the Redis cache, by level.

    Malicious verdicts are kept longest: they rarely turn benign, and a
    re-scan costs the same as the first. Benign ones are kept shortest, so a
    site compromised after it was first seen is caught within hours.
    """

    ttl_benign: int = 6 * 3600
    ttl_suspicious: int = 24 * 3600
    ttl_malicious: int = 7 * 24 * 3600


@dataclass
class Listen:
    """Where a service binds when systemd does not hand it a socket."""

    bridge: str = "127.0.0.1:9471"
    scanner: str = "127.0.0.1:9472"
    reporter: str = "127.0.0.1:9473"


@dataclass
class BridgeSettings:
    # "whatsapp" (neonize) or "local" (the stand-in transport for tests/demo).
    transport: str = "whatsapp"
    local_transport_dir: str = ""
    session_file: str = ""  # default: <state_dir>/whatsapp-session.sqlite3
    scan_on_join: bool = False  # scan before an admin says "!wabscan enable"
    group_rate_per_minute: float = 4.0
    global_rate_per_minute: float = 20.0
    reply_jitter_seconds: float = 2.0
    max_reconnects: int = 5


@dataclass
class ReporterSettings:
    announce_benign: bool = False
    repeat_window_seconds: int = 6 * 3600
    token_file: str = ""  # default: $CREDENTIALS_DIRECTORY/control-token


@dataclass
class Retention:
    scans_days: int = 90
    audit_days: int = 365


@dataclass
class Config:
    state_dir: str = ""
    database: str = ""  # default: <state_dir>/wabscan.sqlite3
    redis_url: str = "unix:///run/wabscan-redis/redis.sock"
    # Key for hashing sender ids; default: $CREDENTIALS_DIRECTORY/author-key,
    # else <state_dir>/author-key, created on first use.
    author_key_file: str = ""
    links: LinkLimits = field(default_factory=LinkLimits)
    cache: CacheSettings = field(default_factory=CacheSettings)
    listen: Listen = field(default_factory=Listen)
    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    reporter: ReporterSettings = field(default_factory=ReporterSettings)
    retention: Retention = field(default_factory=Retention)
    source: str = "<defaults>"

    @property
    def state_path(self) -> Path:
        if self.state_dir:
            return Path(self.state_dir)
        if os.environ.get("STATE_DIRECTORY"):  # set by systemd's StateDirectory=
            return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
        base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        return Path(base) / "wabscan"

    @property
    def database_path(self) -> Path:
        return (
            Path(self.database)
            if self.database
            else self.state_path / "wabscan.sqlite3"
        )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the configuration, falling back to defaults when there is no file.

    Raises:
        ConfigError: the file named explicitly is missing, is not TOML, or has
            an unknown key or a value of the wrong type (the message names the
            key, e.g. ``wabscan.toml: bridge.transport: expected a string``).
    """
    explicit = path or os.environ.get("WABSCAN_CONFIG")
    candidate = Path(explicit) if explicit else SYSTEM_CONFIG
    if not candidate.exists():
        if explicit:
            raise ConfigError(str(candidate), "configuration file not found")
        return Config()

    try:
        data = tomllib.loads(candidate.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(candidate), f"cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(candidate), f"not valid TOML: {exc}") from None

    config: Config = _build(Config, data, str(candidate), "")
    config.source = str(candidate)
    for name in ("bridge", "scanner", "reporter"):
        _check_address(getattr(config.listen, name), str(candidate), f"listen.{name}")
    return config


def _check_address(address: str, where: str, name: str) -> None:
    """``host:port`` (``[v6]:port``; port 0 picks a free one) or ``unix:PATH``."""
    if address.startswith("unix:") and len(address) > len("unix:"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(
            where, f"{name}: expected host:port or unix:/path, got {address!r}"
        )


def _build(cls: Any, data: dict[str, Any], where: str, prefix: str) -> Any:
    known = {f.name: f for f in fields(cls) if f.name != "source"}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(where, f"{name}: unknown setting")
        default = getattr(cls(), key)
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(where, f"{name}: expected a table [{name}]")
            values[key] = _build(type(default), value, where, f"{name}.")
        else:
            values[key] = _coerce(value, default, where, name)
    return cls(**values)


def _coerce(value: Any, default: Any, where: str, name: str) -> Any:
    # bool is a subclass of int: check it first so `true` is not a number.
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(where, f"{name}: expected true or false")
    if isinstance(default, float) and isinstance(value, int | float):
        if isinstance(value, bool) or value < 0:
            raise ConfigError(where, f"{name}: expected a non-negative number")
        return float(value)
    if isinstance(default, int) and isinstance(value, int):
        if isinstance(value, bool) or value < 0:
            raise ConfigError(where, f"{name}: expected a non-negative whole number")
        return value
    if isinstance(default, str) and isinstance(value, str):
        return value
    kind = type(default).__name__.replace("str", "string").replace("int", "number")
    raise ConfigError(where, f"{name}: expected a {kind}")
