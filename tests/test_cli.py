"""The command line as a user runs it: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "family-group.txt"


def wabscan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "COLUMNS": "100",
    }
    env.pop("WABSCAN_CONFIG", None)
    env.pop("WABSCAN_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "wabscan", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_scan_prints_one_json_object_per_link(tmp_path: Path) -> None:
    result = wabscan(
        tmp_path,
        "scan",
        "--json",
        "hxxps://paypa1-secure[.]com/login",
        "https://en.wikipedia.org/wiki/Phishing?utm_source=x",
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["canonical"] for r in rows] == [
        "https://paypa1-secure.com/login",
        "https://en.wikipedia.org/wiki/Phishing",
    ]
    assert rows[0]["verdict"] in ("suspicious", "malicious")
    assert rows[1]["verdict"] == "benign"
    for row in rows:
        assert set(row) >= {"url", "canonical", "verdict", "score", "reasons"}


def test_scan_chat_hashes_authors_unless_asked(tmp_path: Path) -> None:
    hashed = wabscan(tmp_path, "scan-chat", "--json", str(SAMPLE))
    named = wabscan(tmp_path, "scan-chat", "--json", "--show-authors", str(SAMPLE))
    assert hashed.returncode == named.returncode == 0
    rows = [json.loads(line) for line in hashed.stdout.splitlines()]
    names = [json.loads(line)["author"] for line in named.stdout.splitlines()]
    assert len(rows) == 13
    assert "Tom" in names
    assert all(len(r["author"]) == 16 and r["author"] not in names for r in rows)
    # The same person gets the same pseudonym within an installation.
    assert len({r["author"] for r in rows}) == len(set(names))
    assert all({"time", "line"} <= set(r) for r in rows)


def test_scan_chat_reads_the_zip_whatsapp_makes(tmp_path: Path) -> None:
    export = tmp_path / "WhatsApp Chat with Family.zip"
    with zipfile.ZipFile(export, "w") as archive:
        archive.write(SAMPLE, "WhatsApp Chat with Family.txt")
        archive.writestr("IMG-20240303-WA0014.jpg", b"\xff\xd8\xff")
    result = wabscan(tmp_path, "scan-chat", "--json", str(export))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 13


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: d / "missing.txt", ["missing.txt"]),
        (lambda d: d, ["is a directory"]),
        (lambda d: _write(d / "blob.txt", b"\x00\x01\x02binary"), ["blob.txt"]),
        (lambda d: _write(d / "notes.txt", b"hello\nworld\n"), ["not a WhatsApp"]),
        (lambda d: _write(d / "x.zip", b"PK\x03\x04broken"), ["x.zip"]),
    ],
)
def test_scan_chat_refuses_bad_files_in_one_line(tmp_path: Path, make, words) -> None:
    target = make(tmp_path)
    one_line_error(wabscan(tmp_path, "scan-chat", str(target)), *words)


def test_feeds_import_twice_changes_nothing(tmp_path: Path) -> None:
    feed = _write(
        tmp_path / "list.txt", b"# made up\nevil-example.test\nbad.example/x\n"
    )
    first = wabscan(tmp_path, "feeds", "import", str(feed), "--source", "mine")
    again = wabscan(tmp_path, "feeds", "import", str(feed), "--source", "mine")
    assert first.returncode == again.returncode == 0
    assert "2 added" in first.stdout
    assert "0 added, 0 removed, 2 unchanged" in again.stdout
    flagged = wabscan(tmp_path, "scan", "--json", "http://www.evil-example.test/")
    assert json.loads(flagged.stdout)["verdict"] == "malicious"


def test_bad_configuration_is_named(tmp_path: Path) -> None:
    config = _write(tmp_path / "wabscan.toml", b"[bridge]\ntransport = 3\n")
    result = wabscan(tmp_path, "--config", str(config), "scan", "https://example.com/")
    one_line_error(result, "wabscan.toml", "bridge.transport")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_passwords_in_links_are_never_shown_or_stored(tmp_path: Path) -> None:
    result = wabscan(tmp_path, "scan", "--json", "https://admin:hunter2@bank.example/")
    assert "hunter2" not in result.stdout
    assert json.loads(result.stdout)["url"] == "https://admin@bank.example/"


def test_control_characters_in_a_chat_cannot_reach_the_terminal(tmp_path: Path) -> None:
    chat = _write(
        tmp_path / "chat.txt",
        b"01/02/2024, 10:00 - Evil\x1b[2J: see https://example.com/\n",
    )
    result = wabscan(tmp_path, "scan-chat", "--show-authors", str(chat))
    assert result.returncode == 0, result.stderr
    assert "\x1b[2J" not in result.stdout
    assert "\\x1b" in result.stdout


def test_an_unparseable_link_is_a_one_line_error_too(tmp_path: Path) -> None:
    result = wabscan(tmp_path, "scan", "garbage")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "wabscan: garbage: URL 'garbage' has no scheme such as https://"
    )


def test_soak_refuses_a_bad_duration_in_one_line(tmp_path: Path) -> None:
    result = wabscan(
        tmp_path, "soak", "--duration", "ten minutes", "--out", str(tmp_path)
    )
    one_line_error(result, "--duration", "10m")
    assert not (tmp_path / "soak.json").exists()


def test_soak_compare_prints_two_reports_side_by_side(tmp_path: Path) -> None:
    def report(seed: int, lost: int) -> Path:
        path = tmp_path / f"r{seed}.json"
        body = {
            "run": {"seed": seed, "duration_s": 600, "shape": {"rate": 20}},
            "accounting": {"balanced": lost == 0, "replies_lost": lost},
        }
        path.write_text(json.dumps(body))
        return path

    result = wabscan(tmp_path, "soak-compare", str(report(1, 0)), str(report(2, 3)))
    assert result.returncode == 0, result.stderr
    assert "same traffic: no" in result.stdout
    assert any(
        line.split()[-3:] == ["0", "3", "+3.0"]
        for line in result.stdout.splitlines()
        if line.startswith("replies lost")
    ), result.stdout


@pytest.mark.parametrize(
    ("content", "words"),
    [("{not json", ("bad.json", "not a soak report")), ("[1, 2]", ("bad.json",))],
)
def test_soak_compare_names_a_file_that_is_not_a_report(
    tmp_path: Path, content: str, words: tuple[str, ...]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = wabscan(tmp_path, "soak-compare", str(bad), str(bad))
    one_line_error(result, *words)
