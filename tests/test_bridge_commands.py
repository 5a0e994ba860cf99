"""The admin command parser: total (never raises), and exact on good input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wabscan.bridge.commands import (
    DEFAULT_MUTE,
    HELP_TEXT,
    NAMES,
    Command,
    CommandError,
    format_duration,
    parse_command,
    parse_duration,
)


@settings(deadline=None)  # first call compiles links' patterns: 1 s seen
@given(st.text())
def test_any_text_gives_a_command_an_error_or_none(text: str) -> None:
    result = parse_command(text)
    assert result is None or isinstance(result, Command | CommandError)


@settings(deadline=None)  # first call compiles links' patterns: 1 s seen
@given(
    st.sampled_from(NAMES),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80),
)
def test_commands_with_any_argument_never_raise(name: str, argument: str) -> None:
    result = parse_command(f"!wabscan {name} {argument}")
    assert isinstance(result, Command | CommandError)
    if isinstance(result, Command):
        assert result.name == name


@settings(deadline=None)  # first call compiles links' patterns: 1 s seen
@given(st.text())
def test_text_not_starting_with_the_prefix_is_not_a_command(text: str) -> None:
    if not text.strip().casefold().startswith("!wabscan"):
        assert parse_command(text) is None


@settings(deadline=None)  # first call compiles links' patterns: 1 s seen
@given(st.text(max_size=200))
def test_errors_never_echo_what_was_typed(argument: str) -> None:
    # An argument may be a link; echoing it would make WhatsApp link it.
    result = parse_command(f"!wabscan mute {argument}")
    if not isinstance(result, CommandError):
        return
    # One fixed answer to any duration it cannot read, whatever was typed.
    fixed = parse_command("!wabscan mute never")
    assert isinstance(fixed, CommandError)
    assert result.message == fixed.message
    # A word of that answer ("days") typed as the argument is no echo.
    typed = argument.strip()
    if len(typed) > 3 and typed not in fixed.message:
        assert typed not in result.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!wabscan", Command("help")),
        ("  !WABSCAN   help  ", Command("help")),
        ("!wabscan help me please", Command("help")),
        ("!wabscan status", Command("status")),
        ("!wabscan enable", Command("enable")),
        ("!wabscan Disable", Command("disable")),
        ("!wabscan unmute", Command("unmute")),
        ("!wabscan mute", Command("mute", duration=DEFAULT_MUTE)),
        ("!wabscan mute 30m", Command("mute", duration=timedelta(minutes=30))),
        ("!wabscan mute 2h", Command("mute", duration=timedelta(hours=2))),
        ("!wabscan mute 1d", Command("mute", duration=timedelta(days=1))),
        ("!wabscan mute 90 minutes", Command("mute", duration=timedelta(minutes=90))),
        ("!wabscan mute 1h30m", Command("mute", duration=timedelta(minutes=90))),
        ("!wabscan quiet 22-07", Command("quiet", quiet=("22:00", "07:00"))),
        ("!wabscan quiet 22:30-6:45", Command("quiet", quiet=("22:30", "06:45"))),
        ("!wabscan quiet 0 - 24", Command("quiet", quiet=("00:00", "00:00"))),
        ("!wabscan quiet off", Command("quiet", quiet=None)),
        (
            "!wabscan check hxxps://evil[.]example/login",
            Command("check", url="https://evil.example/login"),
        ),
        ("!wabscan check evil-shop.com", Command("check", url="http://evil-shop.com")),
    ],
)
def test_well_formed_commands(text: str, expected: Command) -> None:
    if expected.quiet == ("00:00", "00:00"):
        # start == end is no quiet period at all: refused.
        assert isinstance(parse_command(text), CommandError)
        return
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "!wabscan frobnicate",
        "!wabscan enable now",
        "!wabscan mute forever",
        "!wabscan mute 0m",
        "!wabscan mute 31d",
        "!wabscan mute 5x",
        "!wabscan quiet 25-07",
        "!wabscan quiet 22",
        "!wabscan quiet 10:61-11",
        "!wabscan check",
        "!wabscan check not a link",
    ],
)
def test_malformed_commands_explain_the_usage(text: str) -> None:
    result = parse_command(text)
    assert isinstance(result, CommandError)
    assert result.message


def test_unknown_command_lists_the_commands() -> None:
    result = parse_command("!wabscan frobnicate")
    assert isinstance(result, CommandError) and HELP_TEXT in result.message


@pytest.mark.parametrize(
    "text", ["hello !wabscan enable", "!wabscanenable", "wabscan enable", ""]
)
def test_not_addressed_to_wabscan(text: str) -> None:
    assert parse_command(text) is None


@given(
    st.integers(min_value=0, max_value=29),
    st.integers(min_value=0, max_value=23),
    st.integers(min_value=0, max_value=59),
)
def test_compound_durations_read_back(days: int, hours: int, minutes: int) -> None:
    text = "".join(
        f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m")) if n
    )
    if not text:
        return
    duration = timedelta(days=days, hours=hours, minutes=minutes)
    assert parse_duration(text) == duration
    assert parse_duration(format_duration(duration).replace(" ", "")) == duration
