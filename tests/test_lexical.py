"""The lexical model: the shipped file loads, scores safely and ranks sensibly.

Every URL here is made up; none comes from the training data.
"""

from __future__ import annotations

import gzip
import json
import math
import struct
from functools import cache
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wabscan.scanner import lexical
from wabscan.scanner.lexical import (
    MALICIOUS_AT,
    SUSPICIOUS_AT,
    LexicalModel,
    ModelFormatError,
)

PHISHY = (
    "http://paypal.com.secure-login-verify.xyz/account/update",
    "http://192.168.4.7/bank/login.php",
)
HOMEPAGES = ("https://www.wikipedia.org/", "https://github.com/")


@cache
def model() -> LexicalModel:
    return LexicalModel.load()


def _raw_file() -> bytes:
    data = resources.files("wabscan").joinpath("data", "lexical-model.bin").read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _split(raw: bytes) -> tuple[dict[str, object], bytes]:
    (n,) = struct.unpack_from("<I", raw, len(lexical._MAGIC))
    start = len(lexical._MAGIC) + 4
    return json.loads(raw[start : start + n]), raw[start + n :]


def _join(meta: dict[str, object], weights: bytes) -> bytes:
    header = json.dumps(meta).encode()
    return lexical._MAGIC + struct.pack("<I", len(header)) + header + weights


def test_packaged_model_loads_and_has_a_version() -> None:
    m = model()
    assert m.version.startswith("lex-") and len(m.version) == 4 + 16
    assert LexicalModel.load().version == m.version  # same file, same id
    assert 0.0 < SUSPICIOUS_AT < MALICIOUS_AT < 1.0


def test_python_inference_matches_training_side_values() -> None:
    # The training script computes these with numpy over its sparse matrix
    # and stores them in the file; pure-Python inference must agree.
    m = model()
    assert len(m.reference) >= 5
    for url, expected in m.reference:
        assert m.probability(url) == pytest.approx(expected, abs=1e-9), url


def test_phishy_urls_rank_above_plain_homepages() -> None:
    m = model()
    lowest_phishy = min(m.probability(u) for u in PHISHY)
    highest_homepage = max(m.probability(u) for u in HOMEPAGES)
    assert lowest_phishy > highest_homepage


def test_top_features_explain_towards_phishing() -> None:
    m = model()
    top = m.top_features("http://192.168.4.7/bank/login.php", n=3)
    assert 0 < len(top) <= 3
    assert all(isinstance(name, str) and weight > 0 for name, weight in top)
    assert [w for _, w in top] == sorted((w for _, w in top), reverse=True)
    assert any("IP address" in name for name, _ in top)
    assert m.top_features(PHISHY[0], n=0) == []


def test_contributions_add_up_to_the_logit() -> None:
    # Explanations must account for the score: the shares differ from the
    # logit by the same constant for every URL.
    m = model()
    offsets = [
        m.logit(u) - sum(w for _, w in m.contributions(u)) for u in PHISHY + HOMEPAGES
    ]
    assert max(offsets) - min(offsets) < 1e-6


def test_hashing_is_stable_across_processes() -> None:
    # crc32 with a per-namespace seed, never the salted built-in hash():
    # the shipped weights depend on these exact buckets.
    assert lexical.bucket("pt", b"login", 18) == 178_955
    assert lexical.bucket("hg", b"payp", 18) == 59_924


def test_refuses_files_it_cannot_use() -> None:
    meta, weights = _split(_raw_file())
    with pytest.raises(ModelFormatError, match="not a wabscan lexical model"):
        LexicalModel(b"not a model")
    with pytest.raises(ModelFormatError, match="feature version"):
        LexicalModel(_join({**meta, "feature_version": -1}, weights))
    with pytest.raises(ModelFormatError, match="expected"):
        LexicalModel(_join(meta, weights[:-4]))


def test_version_follows_the_weights() -> None:
    meta, weights = _split(_raw_file())
    changed = bytearray(weights)
    changed[0] ^= 0x01
    original = LexicalModel(_join(meta, weights))
    other = LexicalModel(_join(meta, bytes(changed)))
    assert original.version != other.version


_HOSTS = st.from_regex(r"[a-z0-9\-]{1,20}(\.[a-z0-9\-]{1,12}){0,4}", fullmatch=True)
_URLISH = st.builds(
    "{}://{}{}/{}{}".format,
    st.sampled_from(["http", "https", "ftp", "HTTP", ""]),
    st.one_of(
        st.just(""), st.just("user@"), st.text(max_size=5).map(lambda s: s + "@")
    ),
    st.one_of(_HOSTS, st.just("[::1]:8080"), st.just("10.0.0.1"), st.text(max_size=30)),
    st.text(max_size=200),
    st.one_of(st.just(""), st.text(max_size=80).map(lambda s: "?" + s)),
)


@given(st.one_of(st.text(max_size=400), _URLISH))
def test_probability_is_a_probability_for_any_string(url: str) -> None:
    m = model()
    p = m.probability(url)
    assert 0.0 <= p <= 1.0 and not math.isnan(p)
    top = m.top_features(url, n=3)
    assert len(top) <= 3 and all(w > 0 for _, w in top)


@given(st.text(alphabet=st.characters(), min_size=0, max_size=50))
def test_surrogates_and_controls_do_not_raise(junk: str) -> None:
    m = model()
    assert 0.0 <= m.probability(f"http://{junk}.com/{junk}?{junk}") <= 1.0
