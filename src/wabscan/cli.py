"""The ``wabscan`` command line.

Every command reads and writes plain values through the same functions the
services use; this module only parses arguments and renders output. Errors a
user can fix are :class:`~wabscan.errors.WabscanError` and end as one line on
stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from wabscan import __version__
from wabscan.config import Config, load_config
from wabscan.errors import InputError, WabscanError
from wabscan.verdict import Level, Verdict

LEVEL_STYLE = {
    Level.BENIGN: "green",
    Level.SUSPICIOUS: "yellow",
    Level.MALICIOUS: "bold red",
}


class Context:
    """What every command shares: the configuration, loaded on first use."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help="Configuration file (default: $WABSCAN_CONFIG, /etc/wabscan/wabscan.toml).",
)
@click.version_option(__version__, prog_name="wabscan")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Check the links posted in WhatsApp groups."""
    ctx.obj = Context(config_path)


@cli.command()
@click.argument("urls", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per link.")
@pass_context
def scan(ctx: Context, urls: tuple[str, ...], as_json: bool) -> None:
    """Judge one or more links with local checks only."""
    from wabscan.links import extract_links

    with _scanner(ctx.config) as scanner:
        rows: list[dict[str, Any]] = []
        for given in urls:
            found = extract_links(given, max_url_length=ctx.config.links.max_url_length)
            targets = [link.url for link in found.links] or [given]
            for target in targets:
                rows.append(_scan_one(scanner, target))
    _render(rows, as_json, chat=False)
    invalid = [row for row in rows if row.get("error")]
    if invalid:
        first = invalid[0]
        click.echo(
            f"wabscan: {_clip(first['url'])}: {first['error']}"
            + (f" (and {len(invalid) - 1} more)" if len(invalid) > 1 else ""),
            err=True,
        )
        sys.exit(2)


@cli.command("scan-chat")
@click.argument("export", metavar="EXPORT")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per link.")
@click.option(
    "--show-authors", is_flag=True, help="Show names instead of keyed hashes."
)
@pass_context
def scan_chat(ctx: Context, export: str, as_json: bool, show_authors: bool) -> None:
    """Find and judge every link in a WhatsApp "Export chat" file (.txt or .zip)."""
    from rich.console import Console

    from wabscan.chatexport import parse_chat
    from wabscan.links import extract_links
    from wabscan.privacy import author_hash, load_author_key

    chat = parse_chat(export)
    key = None if show_authors else load_author_key(ctx.config)
    limits = ctx.config.links
    err = Console(stderr=True)
    rows: list[dict[str, Any]] = []
    with _scanner(ctx.config) as scanner:
        for message in chat.messages:
            if message.system or not message.text:
                continue
            found = extract_links(
                message.text,
                max_links=limits.max_per_message,
                max_url_length=limits.max_url_length,
            )
            if found.dropped_over_cap or found.dropped_too_long:
                err.print(
                    f"{export}:{message.line}: skipped {found.dropped_over_cap} "
                    f"link(s) over the cap of {limits.max_per_message} and "
                    f"{found.dropped_too_long} over {limits.max_url_length} "
                    "characters",
                    highlight=False,
                )
            author = message.author or ""
            if key is not None and author:
                author = author_hash(key, author)
            for link in found.links:
                row = _scan_one(scanner, link.url)
                row.update(
                    time=message.time.isoformat(sep=" ", timespec="minutes"),
                    author=author,
                    line=message.line,
                )
                rows.append(row)
    _render(rows, as_json, chat=True, show_authors=show_authors)
    if not as_json:
        counts = {level: 0 for level in Level}
        for row in rows:
            if "verdict" in row:
                counts[Level(row["verdict"])] += 1
        Console(stderr=True).print(
            f"{len(chat.messages)} messages, {len(rows)} links: "
            + ", ".join(f"{n} {level.value}" for level, n in counts.items()),
            highlight=False,
        )


@cli.group()
def feeds() -> None:
    """Import and list the feeds of known-bad (and allowed) sites."""


@feeds.command("import")
@click.argument("file", metavar="FILE")
@click.option("--source", required=True, help="Name of this feed, e.g. phishing-db.")
@click.option(
    "--category",
    type=click.Choice(
        [
            "phishing",
            "malware",
            "suspicious",
            "free-hosting",
            "dynamic-dns",
            "parking",
            "allow",
        ]
    ),
    default="phishing",
    show_default=True,
    help="What the listed sites are.",
)
@pass_context
def feeds_import(ctx: Context, file: str, source: str, category: str) -> None:
    """Import (or re-import) a feed file: domains, URLs, host/path entries,
    hosts-file or adblock lines, JSON lists, or rank,domain CSV."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from wabscan.feeds import import_feed
    from wabscan.storage import open_database

    db = open_database(ctx.config.database_path)
    err = Console(stderr=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task(f"importing {source}", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        # The absolute path: the maintenance timer re-reads the file from
        # another working directory.
        path = os.path.abspath(file)
        result = import_feed(db, path, source, category, progress=report)
    click.echo(
        f"{source}: {result.added} added, {result.removed} removed, "
        f"{result.unchanged} unchanged, {result.skipped} skipped"
    )
    if result.skipped and result.first_skipped_lines:
        lines = ", ".join(str(n) for n in result.first_skipped_lines)
        err.print(
            f"{file}: skipped lines that are not entries: {lines}", highlight=False
        )


@feeds.command("list")
@pass_context
def feeds_list(ctx: Context) -> None:
    """Show the imported feeds."""
    from rich.console import Console
    from rich.table import Table

    from wabscan.feeds import list_sources
    from wabscan.storage import open_database

    table = Table("source", "category", "entries", "imported", "file")
    for row in list_sources(open_database(ctx.config.database_path)):
        table.add_row(
            row["name"],
            row["category"],
            str(row["entries"]),
            row["imported_at"],
            row["path"],
        )
    Console().print(table)


@feeds.command("remove")
@click.argument("source")
@pass_context
def feeds_remove(ctx: Context, source: str) -> None:
    """Remove a feed and all its entries."""
    from wabscan.feeds import remove_source
    from wabscan.storage import open_database

    removed = remove_source(open_database(ctx.config.database_path), source)
    if removed is None:
        raise InputError(source, "no feed of that name")
    click.echo(f"{source}: removed {removed} entries")


def _unit_command(name: str, module: str, summary: str) -> None:
    @cli.command(name, help=summary)
    @pass_context
    def command(ctx: Context) -> None:
        import importlib

        from wabscan.logs import setup_logging
        from wabscan.service import run_unit

        config = ctx.config
        # Import first: neonize configures logging at import (FIELD-NOTES).
        unit = importlib.import_module(module)
        setup_logging(name)
        try:
            run_unit(name, config, unit.main)
        except Exception:
            # For the journal: the whole story, then a non-zero exit so that
            # systemd's Restart=on-failure takes over.
            logging.getLogger("wabscan").critical(
                "crashed unit=%s", name, exc_info=True
            )
            sys.exit(1)


_unit_command(
    "scanner",
    "wabscan.scanner.service",
    "Run the scanner unit (scan jobs in, verdicts out).",
)
_unit_command(
    "reporter",
    "wabscan.reporter.service",
    "Run the reporter unit (reply policy and control API).",
)
_unit_command("bridge", "wabscan.bridge.service", "Run the WhatsApp bridge unit.")


@cli.command()
@pass_context
def maintenance(ctx: Context) -> None:
    """Retention purge, feed refresh, SQLite optimise and online backup."""
    from wabscan.logs import setup_logging
    from wabscan.maintenance import run_maintenance

    setup_logging("maintenance")
    report = run_maintenance(ctx.config)
    if report.failed:
        raise WabscanError(f"maintenance: failed steps: {', '.join(report.failed)}")


@cli.command()
@click.option(
    "--chat", "chat_file", metavar="EXPORT", help="Replay this chat export instead."
)
@click.option("--verbose", is_flag=True, help="Show the units' logs afterwards.")
def demo(chat_file: str | None, verbose: bool) -> None:
    """Run the whole appliance on a sample group conversation and show it,
    with the bot's replies (local WhatsApp transport, nothing leaves the
    machine)."""
    from wabscan.demo import run_demo

    run_demo(Path(chat_file) if chat_file else None, verbose=verbose)


@cli.command()
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Same seed, same traffic."
)
@click.option(
    "--duration", default="10m", show_default=True, help="90s, 10m, 6h or 3d."
)
@click.option(
    "--rate", type=float, default=20.0, show_default=True, help="Messages a second."
)
@click.option("--groups", type=int, default=12, show_default=True)
@click.option("--chaos", is_flag=True, help="kill -9 the units (and Redis) in turn.")
@click.option(
    "--chaos-every", default="60s", show_default=True, help="Mean time between kills."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("soak-report"),
    show_default=True,
    help="Where soak.json and soak.png go.",
)
@click.option("--no-limits", is_flag=True, help="No memory cgroups, even as root.")
@click.option("--keep-state", is_flag=True, help="Keep the run's database and logs.")
@click.option("--drain-timeout", default="3m", show_default=True)
def soak(
    seed: int,
    duration: str,
    rate: float,
    groups: int,
    chaos: bool,
    chaos_every: str,
    out: Path,
    no_limits: bool,
    keep_state: bool,
    drain_timeout: str,
) -> None:
    """Drive the whole appliance with seeded group traffic and account for
    every link and reply (docs/soak.md). Exit status 1 if anything was lost
    or doubled."""
    from wabscan.soak import options_from, run_interactive

    options = options_from(
        seed=seed,
        duration=duration,
        rate=rate,
        groups=groups,
        chaos=chaos,
        chaos_every=chaos_every,
        out=out,
        limits=not no_limits,
        keep_state=keep_state,
        drain_timeout=drain_timeout,
    )
    raise click.exceptions.Exit(run_interactive(options))


@cli.command("soak-compare")
@click.argument("first", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("second", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def soak_compare(first: Path, second: Path) -> None:
    """Two soak reports (soak.json) side by side."""
    from wabscan.soak import compare_files

    click.echo(compare_files(first, second))


@cli.command("run")
@click.option(
    "--transport",
    type=click.Choice(["whatsapp", "local"]),
    default=None,
    help="WhatsApp transport (default: the configuration's bridge.transport).",
)
@pass_context
def run_all(ctx: Context, transport: str | None) -> None:
    """Run Redis and the three units on this machine without systemd, their
    logs interleaved and labelled (Ctrl-C stops them)."""
    import dataclasses
    import signal
    import threading

    from wabscan.demo import write_config
    from wabscan.supervise import LocalAppliance

    config = ctx.config
    state = config.state_path
    state.mkdir(parents=True, exist_ok=True)
    appliance = LocalAppliance(state, state / "run.toml", log=sys.stderr)
    settings = dataclasses.asdict(config)
    settings.pop("source", None)
    settings.update(state_dir=str(state), redis_url=appliance.redis_url)
    if transport:
        settings["bridge"]["transport"] = transport
    write_config(appliance.config_file, settings)
    addresses = dataclasses.asdict(config.listen)

    if appliance.redis_running():
        raise InputError(
            str(state), "another wabscan run is using this state directory"
        )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        appliance.start(addresses=addresses)
    except OSError as exc:
        appliance.stop()
        raise InputError("listen", f"cannot bind a unit's socket: {exc}") from None
    except BaseException:
        appliance.stop()
        raise
    click.echo(
        "wabscan: running "
        + ", ".join(f"{unit} on {addresses[unit]}" for unit in appliance.children)
        + f"; state in {state}; Ctrl-C stops",
        err=True,
    )
    try:
        stop.wait()
    finally:
        appliance.stop()


@cli.command()
@click.option("--phone", metavar="NUMBER", help="Pair with a code instead of a QR.")
@click.option("--force", is_flag=True, help="Replace an existing session.")
@pass_context
def login(ctx: Context, phone: str | None, force: bool) -> None:
    """Link this appliance to a WhatsApp account (QR code or pairing code)."""
    from wabscan.bridge.login import login as pair

    path = pair(ctx.config, phone, force=force)
    click.echo(f"paired; session stored in {path}")


@cli.group("local-transport")
def local_transport() -> None:
    """Play group members on the local transport (tests, demo, soak)."""


@local_transport.command("send")
@click.option("--group", required=True, help="Group name or JID.")
@click.option("--sender", required=True, help="Sender's number or JID.")
@click.option("--admin", is_flag=True, help="The sender is a group admin.")
@click.option("--name", default="", help="The sender's display name.")
@click.argument("text")
@pass_context
def local_transport_send(
    ctx: Context, group: str, sender: str, admin: bool, name: str, text: str
) -> None:
    """Post TEXT in a group as a member; prints the message id."""
    from wabscan.bridge.local import local_send

    click.echo(local_send(ctx.config, group, sender, text, admin=admin, name=name))


@local_transport.command("sent")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
@pass_context
def local_transport_sent(ctx: Context, as_json: bool) -> None:
    """Show what the bot sent."""
    from wabscan.bridge.local import local_sent

    text = local_sent(ctx.config, as_json=as_json)
    if text:
        click.echo(text)


@contextmanager
def _scanner(config: Config) -> Iterator[Any]:
    from wabscan.scanner.engine import Scanner
    from wabscan.storage import open_database

    db = open_database(config.database_path)
    try:
        yield Scanner.from_database(db)
    finally:
        db.close()


def _scan_one(scanner: Any, url: str) -> dict[str, Any]:
    from wabscan.scanner.canonical import InvalidURL

    try:
        verdict: Verdict = scanner.scan(url)
    except InvalidURL as exc:
        return {"url": url, "error": str(exc)}
    row = verdict.to_dict()
    row.pop("signals")
    return row


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _safe(text: str) -> str:
    """Text from a chat or a URL, fit for a terminal: control characters (a
    crafted contact name could carry ESC sequences) become visible escapes,
    and rich markup is escaped."""
    from rich.markup import escape

    cleaned = "".join(
        ch if ch == "\n" or unicodedata.category(ch) != "Cc" else f"\\x{ord(ch):02x}"
        for ch in text
    )
    return escape(cleaned)


def _render(
    rows: list[dict[str, Any]], as_json: bool, chat: bool, show_authors: bool = False
) -> None:
    # rich is imported where it is used: the units start through this module
    # and never print a table (about 2 MB less in each).
    from rich.console import Console
    from rich.table import Table

    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    console = Console()
    table = Table(show_lines=False, expand=False)
    if chat:
        table.add_column("time", no_wrap=True)
        table.add_column("author", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("score", justify="right")
    # Reasons go under the link rather than in a column of their own, so the
    # table stays readable on an 80-column terminal.
    table.add_column("link and reasons", overflow="fold", ratio=1)
    for row in rows:
        # Eight hex digits tell a chat's members apart; --json has all 16.
        author = row.get("author", "")
        short = author[:8] if not show_authors and len(author) == 16 else author
        cells = [row.get("time", ""), _safe(short)] if chat else []
        if "error" in row:
            cells += [
                "[red]invalid[/]",
                "",
                f"{_safe(_clip(row['url']))}\n{row['error']}",
            ]
        else:
            level = Level(row["verdict"])
            reasons = "\n".join(f"[dim]· {_safe(r)}[/]" for r in row["reasons"])
            cells += [
                f"[{LEVEL_STYLE[level]}]{level.value}[/]",
                f"{row['score']:.0f}",
                f"{_safe(row['url'])}\n{reasons}",
            ]
        table.add_row(*cells)
    console.print(table)


def main() -> None:
    """Entry point: run the CLI and turn user errors into one line."""
    try:
        cli.main(prog_name="wabscan", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("wabscan: aborted", err=True)
        sys.exit(130)
    except WabscanError as exc:
        click.echo(f"wabscan: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
        # A bug, not a user error: still one line, with how to see more.
        if os.environ.get("WABSCAN_DEBUG"):
            raise
        click.echo(
            f"wabscan: internal error: {exc.__class__.__name__}: {exc} "
            "(set WABSCAN_DEBUG=1 for the traceback)",
            err=True,
        )
        sys.exit(70)
