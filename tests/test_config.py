"""The configuration file: defaults, errors naming the key, and the docs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wabscan.config import Config, load_config
from wabscan.errors import ConfigError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wabscan.toml"
    path.write_text(text)
    return path


def test_values_are_read_and_defaults_kept(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, 'state_dir = "/srv/w"\n[bridge]\ntransport = "local"\n')
    )
    assert config.state_dir == "/srv/w"
    assert config.bridge.transport == "local"
    assert config.bridge.group_rate_per_minute == 4.0
    assert config.database_path == Path("/srv/w/wabscan.sqlite3")


def test_an_integer_is_accepted_for_a_float(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[bridge]\ngroup_rate_per_minute = 10\n"))
    assert config.bridge.group_rate_per_minute == 10.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n", "colour: unknown setting"),
        ("[bridge]\ntransport = 3\n", "bridge.transport: expected a string"),
        ("[links]\nmax_per_message = -1\n", "links.max_per_message: expected a non"),
        (
            "[reporter]\nannounce_benign = 1\n",
            "announce_benign: expected true or false",
        ),
        ("bridge = 2\n", "bridge: expected a table"),
        ("[bridge\n", "not valid TOML"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_an_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.toml")


def test_every_key_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    config = Config()
    for top in dataclasses.fields(config):
        if top.name == "source":
            continue
        value = getattr(config, top.name)
        if dataclasses.is_dataclass(value):
            assert f"## `[{top.name}]`" in text, top.name
            for inner in dataclasses.fields(value):
                assert f"| `{inner.name}` |" in text, f"{top.name}.{inner.name}"
        else:
            assert f"| `{top.name}` |" in text, top.name


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:", "host:70000", ":80"])
def test_listen_addresses_are_checked(tmp_path: Path, address: str) -> None:
    path = write(tmp_path, f'[listen]\nbridge = "{address}"\n')
    with pytest.raises(ConfigError, match=r"listen\.bridge"):
        load_config(path)


@pytest.mark.parametrize("address", ["127.0.0.1:0", "[::1]:9471", "unix:/run/w.sock"])
def test_good_listen_addresses_pass(tmp_path: Path, address: str) -> None:
    assert load_config(write(tmp_path, f'[listen]\nbridge = "{address}"\n'))
