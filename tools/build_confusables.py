"""Derive wabscan's compact confusable-skeleton table from Unicode's data.

The scanner needs one fact per character: which ASCII letter or digit it can
pass for. The full Unicode confusables table (as packaged by
confusable-homoglyphs) costs about 18 MB of RSS to load, a third of the
scanner's budget, so this script reduces it once to a small JSON map that
ships in the package.

Run: .venv/bin/pip install confusable-homoglyphs &&
     .venv/bin/python tools/build_confusables.py
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from confusable_homoglyphs import confusables

TARGET = Path(__file__).resolve().parents[1] / "src/wabscan/data/confusables.json"
ASCII = set(string.ascii_lowercase + string.digits)


def main() -> None:
    table: dict[str, str] = {}
    for char, glyphs in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        for glyph in glyphs:
            target = glyph["c"].lower()
            if target and all(c in ASCII for c in target):
                table[char] = target
                break
    TARGET.write_text(
        json.dumps(dict(sorted(table.items())), ensure_ascii=False, indent=0) + "\n",
        encoding="utf-8",
    )
    print(f"{len(table)} characters -> {TARGET}")


if __name__ == "__main__":
    main()
