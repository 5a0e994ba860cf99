"""One table of wabscan's performance goals: measure, goal, measured, met?

    .venv/bin/python benchmarks/summary.py [--python PYTHON] [--quick]

Runs, as subprocesses under one interpreter, the benchmarks that carry the
goals of issues 2 and 3, and reads the rows they print:

- benchmarks/pipeline.py: the whole appliance (Redis and the three units,
  local transport, local checks only): links/s through the pipeline in a
  burst, message-to-reply latency at 100 links/s, RSS of each process
  under that load;
- benchmarks/local_verdicts.py: the scanner's local verdicts on one core,
  and a scanner-like process' RSS with every shared feed loaded (needs the
  shared data, ../shared/data).

Memory must be measured as the appliance runs: without numpy, which
sqlite-utils imports when it is installed (about 17 MB more per process)
and which the development venv has. So by default this creates (once) a
clean venv, /tmp/wabscan-bench-venv, with ``pip install -e`` of this
checkout and nothing else, and measures with its interpreter. ``--python``
picks another; the table says which was used and whether it has numpy.

The pipeline benchmark runs the local WhatsApp transport, which never
imports neonize; the WhatsApp transport does, and its Go runtime stays
resident. So the table adds what importing neonize costs (measured here, in
the same interpreter) to the bridge and the appliance, as estimates.

The development machines are shared, two cores, and often busy: the table
prints the load average before and after, and a figure from a busy machine
says as much about the machine as about wabscan.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLEAN_VENV = Path("/tmp/wabscan-bench-venv")
DATA = REPO.parent / "shared" / "data"


@dataclass(frozen=True)
class Goal:
    """One row: where its figure comes from, and what it must be.

    ``row`` is the start of the benchmark's output line; ``part`` picks one
    of the figures it prints as ``a/b/c``; ``most`` is True for an upper
    bound (memory, latency), False for a lower one (throughput).
    """

    measure: str
    bench: str
    row: str
    part: int
    limit: float
    most: bool
    unit: str


GOALS = (
    Goal(
        "appliance RSS under load, 4 processes",
        "pipeline",
        "RSS appliance, idle / under load",
        1,
        200,
        True,
        "MB",
    ),
    Goal(
        "links/s through the pipeline (burst)",
        "pipeline",
        "links/s through the pipeline",
        0,
        1000,
        False,
        "links/s",
    ),
    Goal(
        "message to reply p50, 100 links/s",
        "pipeline",
        "bridge -> outbox ms at",
        0,
        20,
        True,
        "ms",
    ),
    Goal(
        "message to reply p95, 100 links/s",
        "pipeline",
        "bridge -> outbox ms at",
        1,
        100,
        True,
        "ms",
    ),
    Goal(
        "scanner local verdicts, one core",
        "local_verdicts",
        "links/s, one core, cold host cache",
        0,
        3000,
        False,
        "links/s",
    ),
    Goal(
        "scanner RSS with all feeds (peak)",
        "local_verdicts",
        "scanner RSS with all feeds",
        1,
        60,
        True,
        "MB",
    ),
    *(
        Goal(
            f"{name} RSS under load",
            "pipeline",
            f"RSS {name}, idle / under load",
            1,
            limit,
            True,
            "MB",
        )
        for name, limit in (
            ("bridge", 100),
            ("scanner", 60),
            ("reporter", 45),
            ("redis", 32),
        )
    ),
)
# Printed without a goal, to put the goal rows in context.
CONTEXT = (
    ("post to outbox p50/p95/p99 ms (+ transport poll)", "pipeline", "post -> outbox"),
    (
        "scanner local verdicts, warm host cache",
        "local_verdicts",
        "links/s, one core, warm",
    ),
    ("RSS idle/under load: appliance", "pipeline", "RSS appliance, idle / under load"),
)


def clean_python(venv: Path) -> Path:
    """The interpreter of a venv with wabscan and its runtime dependencies
    only (made on first use: a few minutes, and network for pip)."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making a clean venv in {venv} (once)...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-e", str(REPO)], check=True
        )
    return python


def describe(python: Path) -> str:
    probe = (
        "import importlib.util, platform, sys; "
        "print(platform.python_version(), "
        "'numpy present (+17 MB a process)' "
        "if importlib.util.find_spec('numpy') else 'no numpy')"
    )
    out = subprocess.run(
        [str(python), "-c", probe], check=True, capture_output=True, text=True
    )
    return f"{python} (Python {out.stdout.strip()})"


def run_bench(python: Path, name: str, args: list[str]) -> tuple[str, str]:
    """A benchmark's output, and an error note if it failed."""
    started = time.monotonic()
    print(f"running benchmarks/{name}.py {' '.join(args)}...", file=sys.stderr)
    done = subprocess.run(
        [str(python), str(HERE / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    took = time.monotonic() - started
    print(f"  {took:.0f} s, exit {done.returncode}", file=sys.stderr)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        return done.stdout, f"exit {done.returncode}: {tail[0]}"
    return done.stdout, ""


def figure(output: str, row: str) -> str | None:
    """The figure cell of the line that starts with ``row``."""
    for line in output.splitlines():
        if line.startswith(row):
            rest = line[len(row) :]
            # The label may go on (", p50/p95/p99"); the figure is the
            # first cell after a run of spaces.
            match = re.search(r"\s{2,}(\S+)", rest)
            if match:
                return match.group(1)
    return None


def number(cell: str, part: int) -> float | None:
    pieces = cell.split("/")
    if part >= len(pieces):
        return None
    try:
        return float(pieces[part].replace(",", ""))
    except ValueError:
        return None


# The pipeline runs the local transport, which never imports neonize; the
# WhatsApp transport does, and its Go runtime is resident from then on.
WITH_NEONIZE = (
    "appliance RSS under load, 4 processes",
    "bridge RSS under load",
)
NEONIZE_PROBE = """
import logging, sys
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
import wabscan.bridge.service
before = rss()
import neonize.client
logging.disable(logging.CRITICAL)
print(rss() - before)
"""


def neonize_mb(python: Path) -> float | None:
    """What importing neonize adds to a bridge process, MB (None: no neonize)."""
    done = subprocess.run(
        [str(python), "-c", NEONIZE_PROBE], capture_output=True, text=True
    )
    try:
        return float(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return None


def table(
    outputs: dict[str, tuple[str, str]], neonize: float | None
) -> list[list[str]]:
    rows = [["measure", "goal", "measured", "met?"]]
    for goal in GOALS:
        output, error = outputs.get(goal.bench, ("", "not run"))
        cell = figure(output, goal.row)
        value = number(cell, goal.part) if cell else None
        bound = f"{'<' if goal.most else '>='} {goal.limit:,.0f} {goal.unit}"
        if value is None:
            rows.append([goal.measure, bound, error or "no figure", "?"])
            continue
        met = value < goal.limit if goal.most else value >= goal.limit
        rows.append([goal.measure, bound, f"{value:,.0f}", "yes" if met else "NO"])
        if goal.measure in WITH_NEONIZE and neonize is not None:
            value += neonize
            met = value < goal.limit
            rows.append(
                [
                    f"  + neonize ({neonize:.0f} MB, WhatsApp transport; est.)",
                    bound,
                    f"{value:,.0f}",
                    "yes" if met else "NO",
                ]
            )
    for measure, bench, row in CONTEXT:
        output, error = outputs.get(bench, ("", "not run"))
        rows.append([measure, "", figure(output, row) or error or "no figure", ""])
    return rows


def render(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            row[0].ljust(widths[0]),
            row[1].ljust(widths[1]),
            row[2].rjust(widths[2]),
            row[3].ljust(widths[3]),
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python",
        type=Path,
        help=f"interpreter to measure with (default: the clean venv {CLEAN_VENV})",
    )
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data")
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs (10 s, 500 messages)"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="print each benchmark's own output"
    )
    args = parser.parse_args()
    if args.python is not None and not os.access(args.python, os.X_OK):
        parser.error(f"--python {args.python}: not an executable file")

    python = args.python or clean_python(CLEAN_VENV)
    load_before = os.getloadavg()
    pipeline_args = ["--rate", "100"]
    if args.quick:
        pipeline_args += ["--seconds", "10", "--burst", "500"]
    outputs = {"pipeline": run_bench(python, "pipeline", pipeline_args)}
    if (args.data / "urls" / "labelled_train.csv").exists():
        outputs["local_verdicts"] = run_bench(
            python, "local_verdicts", ["--data", str(args.data)]
        )
    else:
        outputs["local_verdicts"] = ("", f"no shared data at {args.data}")
    load_after = os.getloadavg()
    neonize = neonize_mb(python)

    if args.verbose:
        for name, (output, error) in outputs.items():
            print(f"--- benchmarks/{name}.py {error}\n{output}")
    print(f"measured with {describe(python)}")
    print(
        f"{os.cpu_count()} cpus; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after"
    )
    print()
    rows = table(outputs, neonize)
    print(render(rows))
    return 0 if all(r[3] != "NO" for r in rows[1:]) else 1


if __name__ == "__main__":
    sys.exit(main())
