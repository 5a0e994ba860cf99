"""What each import costs a unit in resident memory, one after the other.

    /tmp/wabscan-bench-venv/bin/python benchmarks/imports.py [MODULE ...]

Imports the modules in the order given (by default the libraries a unit
loads, then wabscan's own modules, ending with the reporter's service) in
this one process, and prints the RSS each one added and the total. Run it
with the clean venv of benchmarks/summary.py: in the development venv
sqlite-utils also pulls in numpy. Later modules share what earlier ones
loaded, so the order decides where a shared dependency is counted.
"""

from __future__ import annotations

import importlib
import sys

DEFAULT = (
    "trio",
    "redis",
    "sqlite3",
    "sqlite_utils",
    "prometheus_client",
    "sdnotify",
    "click",
    "h11",
    "wabscan.cli",
    "wabscan.service",
    "wabscan.reporter.service",
)


def rss_mb() -> float:
    # Not wabscan.soak.rss_mb: importing it would load, before the first
    # measurement, much of what this measures.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    modules = sys.argv[1:] or DEFAULT
    print(f"{'interpreter':28} {rss_mb():6.1f} MB")
    for name in modules:
        before = rss_mb()
        try:
            importlib.import_module(name)
        except ImportError as exc:
            sys.exit(f"imports.py: cannot import {name}: {exc}")
        after = rss_mb()
        print(f"{name:28} +{after - before:5.1f} MB  total {after:5.1f}")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "rich")
    print(f"rich loaded: {'yes' if loaded else 'no'}")


if __name__ == "__main__":
    main()
