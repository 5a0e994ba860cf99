"""The lexical model: how phishing-like a URL's text is, with no network.

A logistic regression over two kinds of features, both computed from the URL
string alone:

* a few dozen counts and flags (lengths, digits, hyphens, subdomain depth, an
  IP host, punycode, suspicious words and brand names by position...), and
* hashed tokens and character n-grams of the host and the path, so that
  pieces such as ``-secure``, ``.xyz`` or ``/wp-includes/`` carry weight
  without the model keeping a list of domains.

``tools/train_lexical.py`` trains it with this module's own feature code and
writes ``wabscan/data/lexical-model.bin``; ``docs/lexical-model.md`` gives the
figures measured on held-out data and how to retrain. Inference is pure
Python: the weights sit in one ``array('f')`` and a score is a sum of the
weights its features hash to.

Example::

    model = LexicalModel.load()
    if model.probability(url) >= MALICIOUS_AT:
        ...
"""

from __future__ import annotations

import gzip
import json
import math
import operator
import os
import re
import struct
import sys
from array import array
from hashlib import blake2b
from importlib import resources
from itertools import repeat
from typing import Any, Final
from zlib import crc32

# Operating points, read off the held-out evaluation that
# tools/train_lexical.py prints (docs/lexical-model.md, "Thresholds"); a
# score >= the threshold is that level. SUSPICIOUS_AT is the lowest cut that
# keeps false positives under 2 % of bare popular homepages and under 15 % of
# benign deep links; MALICIOUS_AT the lowest under 0.2 % and 5 %, because a
# lexical score alone should rarely be enough to warn a whole group.
SUSPICIOUS_AT: Final = 0.40
MALICIOUS_AT: Final = 0.95

# Bumped whenever the feature code changes meaning; a model file trained with
# another version is refused rather than silently mis-scored.
FEATURE_VERSION: Final = 1

_MAGIC: Final = b"WABSLEX1"
_DEFAULT_RESOURCE: Final = "lexical-model.bin"

# Fixed seeds per namespace keep the same token in two places (``paypal`` in
# the subdomain and ``paypal`` in the path) in separate buckets.
NAMESPACES: Final = ("hg", "sub", "reg", "tld", "pt", "pg", "ext", "qk")
_SEEDS: Final = {ns: crc32(f"wabscan-lexical/{ns}".encode()) for ns in NAMESPACES}
_NAMESPACE_LABELS: Final = {
    "hg": "host 4-gram",
    "sub": "subdomain token",
    "reg": "domain-name token",
    "tld": "top-level domain",
    "pt": "path token",
    "pg": "path 4-gram",
    "ext": "file extension",
    "qk": "query key",
}

# Suspicious words are matched as substrings: phishing kits glue them
# together (``secureloginverify``), so token equality would miss most.
_SUSPICIOUS_WORDS: Final = [
    "login",
    "logon",
    "signin",
    "verif",
    "secure",
    "account",
    "update",
    "wallet",
    "confirm",
    "passw",
    "webscr",
    "banking",
    "billing",
    "suspend",
    "unlock",
    "recover",
    "validat",
    "authent",
    "authoriz",
    "support",
    "invoice",
    "payment",
    "customer",
    "restore",
    "unusual",
    "security",
    "credential",
    "reactivat",
    "airdrop",
    "claim",
    "bonus",
    "gift",
    "prize",
]

# Brands that phishing most often imitates. Long names match as substrings
# (``paypal-resolution``); short ones only as whole tokens, so ``ups`` does not
# fire inside ``groups``.
_LONG_BRANDS: Final = [
    "paypal",
    "apple",
    "icloud",
    "itunes",
    "microsoft",
    "office365",
    "outlook",
    "hotmail",
    "onedrive",
    "sharepoint",
    "google",
    "gmail",
    "facebook",
    "instagram",
    "whatsapp",
    "netflix",
    "amazon",
    "dropbox",
    "docusign",
    "adobe",
    "linkedin",
    "twitter",
    "yahoo",
    "chase",
    "wellsfargo",
    "bankofamerica",
    "santander",
    "barclays",
    "natwest",
    "lloyds",
    "fedex",
    "royalmail",
    "auspost",
    "steam",
    "discord",
    "roblox",
    "binance",
    "coinbase",
    "metamask",
    "blockchain",
    "trustwallet",
    "kraken",
    "telegram",
    "verizon",
    "comcast",
    "xfinity",
    "mastercard",
    "americanexpress",
    "tiktok",
    "spotify",
    "walmart",
]
_SHORT_BRANDS: Final = frozenset(
    b"ebay dhl usps ups hsbc citi irs hmrc att aol meta".split()
)

# Second-level labels under which a country code sells names (``co.uk``,
# ``com.br``). A stand-in for the Public Suffix List, which costs about 6 us a
# lookup and several MB: the model needs a good guess of where the registered
# name starts, not an exact one, and training used the same guess.
_SECOND_LEVEL: Final = frozenset(
    b"co com net org gov edu ac or ne go gob gouv mil nic ltd plc sch nom info "
    b"biz web gen firm in".split()
)

# Everything below works on the URL's UTF-8 bytes: counting with
# bytes.translate and hashing slices is several times faster than walking
# a str character by character, and it is what the 20,000 URLs/s goal needs.
_URL_RE: Final = re.compile(
    rb"(?:([A-Za-z][A-Za-z0-9+.\-]*):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?", re.S
)
_IPV4_RE: Final = re.compile(rb"\d{1,3}(?:\.\d{1,3}){3}")
_HEX_HOST_RE: Final = re.compile(rb"0x[0-9a-f]{1,8}")
_TOKEN_RE: Final = re.compile(rb"[a-z0-9]+")
_HOST_TOKEN_RE: Final = re.compile(rb"[^.\-]+")
_LONG_TOKEN_RE: Final = re.compile(rb"[a-z0-9]{21,}")
_LONG_HOST_TOKEN_RE: Final = re.compile(rb"[^.\-]{21,}")
_EXT_RE: Final = re.compile(rb"\.([a-z0-9]{1,5})$")
_QUERY_KEY_RE: Final = re.compile(rb"(?:^|&)([^=&]{1,20})")


def _trie_pattern(words: list[bytes]) -> bytes:
    """One regex for many literal words, factored by common prefix.

    Python's re tries the branches of "a|b|c" one after another at every
    position; factoring them as a trie made the word search about 2.5 times
    faster on benchmark URLs, and it is one pass for brands and words alike.
    """
    trie: dict[int, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[-1] = {}  # end of a word

    def build(node: dict[int, Any]) -> bytes:
        branches = [
            re.escape(bytes([ch])) + build(child)
            for ch, child in sorted(node.items())
            if ch != -1
        ]
        if not branches:
            return b""
        body = (
            branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
        )
        if -1 in node:
            return b"(?:" + body + b")?" if len(branches) == 1 else body + b"?"
        return body

    return build(trie)


_SUSPICIOUS_SET: Final = frozenset(w.encode() for w in _SUSPICIOUS_WORDS)
_LONG_BRAND_SET: Final = frozenset(w.encode() for w in _LONG_BRANDS)
_WORD_RE: Final = re.compile(_trie_pattern(sorted(_SUSPICIOUS_SET | _LONG_BRAND_SET)))
_DIGITS: Final = b"0123456789"
_UPPER: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Digits are read as 0 in hashed features, so "login2" and "login7", or two
# IP-like hosts, share weights instead of each being memorised.
_ZERO_DIGITS: Final = bytes.maketrans(b"123456789", b"000000000")

# Host and path bytes beyond these are ignored: the rest of a path is mostly
# tracking parameters and encoded payloads, and an attacker-chosen length
# must not set the cost of one score.
_MAX_HOST: Final = 256
_MAX_PATH: Final = 160
_LONG_TOKEN: Final = 20
_SLICES4: Final = tuple(slice(i, i + 4) for i in range(max(_MAX_HOST, _MAX_PATH) + 2))
_LONG_NAMES: Final = tuple(f"<long{i}>".encode() for i in range(6))

DENSE_FEATURES: Final = (
    ("https", "scheme is https"),
    ("url_len", "URL length"),
    ("host_len", "host length"),
    ("path_len", "path length"),
    ("query_len", "query length"),
    ("sub_depth", "subdomain levels"),
    ("host_digits", "digits in host"),
    ("host_hyphens", "hyphens in host"),
    ("ip_host", "host is an IP address"),
    ("punycode", "punycode (xn--) host"),
    ("port", "explicit port"),
    ("userinfo", "'@' before the host"),
    ("at_in_path", "'@' or email in path/query"),
    ("path_depth", "path depth"),
    ("path_digits", "digits in path"),
    ("double_slash", "'//' inside the path"),
    ("query_params", "query parameters"),
    ("reg_len", "registered-name length"),
    ("reg_digits", "digits in registered name"),
    ("bare", "bare homepage"),
    ("www", "www. prefix"),
    ("susp_sub", "suspicious word in subdomain"),
    ("susp_path", "suspicious word in path"),
    ("susp_reg", "suspicious word in registered name"),
    ("brand_sub", "brand name in subdomain"),
    ("brand_path", "brand name in path"),
    ("brand_reg_mixed", "brand name inside another registered name"),
    ("brand_reg", "registered name is a brand"),
    ("long_tokens", "long random-looking path tokens"),
    ("pct", "percent-encoded characters"),
    ("upper", "upper-case share of path"),
    ("tld_len", "top-level-domain length"),
    ("embedded_url", "URL inside the path/query"),
)
N_DENSE: Final = len(DENSE_FEATURES)
# Explanations count the lengths every URL has from the training mean
# ("longer than usual"), and counts, flags and the query (which most URLs
# lack) from zero, so an absent feature never appears as a reason.
_FROM_MEAN: Final = frozenset(
    (
        "url_len",
        "host_len",
        "path_len",
        "reg_len",
        "tld_len",
        "path_depth",
    )
)
# How explanations print a dense value: a yes/no flag by its name alone, a
# log1p-scaled count as the count itself.
_FLAGS: Final = frozenset(
    (
        "https",
        "ip_host",
        "punycode",
        "port",
        "userinfo",
        "at_in_path",
        "bare",
        "double_slash",
        "www",
        "brand_sub",
        "brand_path",
        "brand_reg_mixed",
        "brand_reg",
        "embedded_url",
    )
)
_LOG1P: Final = frozenset(
    (
        "url_len",
        "host_len",
        "path_len",
        "query_len",
        "host_digits",
        "path_digits",
        "pct",
    )
)

# Path length, depth and "bare homepage" move together, and the model splits
# their effect between them with opposite signs; explained one by one, a
# bare homepage would list "short path" as a reason. They are explained as
# one share.
_PATH_SHAPE: Final = frozenset(("path_len", "path_depth", "bare"))

Grams = list[tuple[str, list[bytes]]]


class ModelFormatError(ValueError):
    """The model file is not one this code can use.

    The message says which file and what to do: usually retrain with
    ``tools/train_lexical.py`` or reinstall the package.
    """


def _shape(tokens: list[bytes], text: bytes, long_re: re.Pattern[bytes]) -> list[bytes]:
    # Long tokens are ids, hashes and encoded payloads: their letters never
    # repeat, so only their length says anything. Most URLs have none, and
    # one search of the text they came from is cheaper than a test per token.
    if len(text) <= _LONG_TOKEN or not long_re.search(text):
        return tokens
    return [
        t if len(t) <= _LONG_TOKEN else _LONG_NAMES[min(len(t) // 20, 5)]
        for t in tokens
    ]


def extract(url: str) -> tuple[list[float], Grams]:
    """Compute the features of one URL: the dense vector and the hashed groups.

    This is the single feature code path: training builds its matrix from it
    and inference sums weights over it, so the two cannot drift apart.

    Args:
        url: any string; a canonical ``scheme://host/path?query`` is expected,
            but nothing is required of it.

    Returns:
        ``(dense, grams)``: ``dense`` has ``N_DENSE`` raw (unscaled) values in
        the order of ``DENSE_FEATURES``; ``grams`` pairs each namespace of
        ``NAMESPACES`` with the byte strings to hash in it (an empty list when
        there are none).
    """
    raw = url.encode("utf-8", "surrogatepass")
    m = _URL_RE.match(raw)
    assert m is not None  # every part of the pattern is optional
    scheme, authority, path, query = m.group(1, 2, 3, 4)
    if authority is None:
        # No '//': read the first path segment as the host, so that a bare
        # "example.com/x" is still scored like a URL.
        authority, slash, rest = path.partition(b"/")
        path = slash + rest
    if query is None:
        query = b""

    userinfo = b"@" in authority
    if userinfo:
        authority = authority.rpartition(b"@")[2]
    if authority.startswith(b"["):
        host, _, after = authority[1:].partition(b"]")
        has_port = after.startswith(b":")
        ip_host = True
    else:
        host, colon, _ = authority.partition(b":")
        has_port = bool(colon)
        host = host.lower().rstrip(b".")[:_MAX_HOST]
        ip_host = bool(
            _IPV4_RE.fullmatch(host) or host.isdigit() or _HEX_HOST_RE.fullmatch(host)
        )

    if ip_host:
        sub = reg = tld = b""
        sub_labels: list[bytes] = []
    else:
        labels = host.split(b".")
        tld = labels[-1] if len(labels) > 1 else b""
        if len(labels) >= 3 and len(tld) == 2 and labels[-2] in _SECOND_LEVEL:
            cut = -3
        else:
            cut = -2 if len(labels) >= 2 else -1
        reg = labels[cut]
        sub_labels = labels[:cut]
        sub = b".".join(sub_labels)
    www = bool(sub_labels) and sub_labels[0] == b"www"
    if www:
        sub = sub[4:]
        del sub_labels[0]

    lpath = path.lower()
    lquery = query.lower()
    tail = (lpath + b"?" + lquery if query else lpath)[:_MAX_PATH]
    tail0 = tail.translate(_ZERO_DIGITS)
    path_tokens = _TOKEN_RE.findall(tail0)
    sub0 = sub.translate(_ZERO_DIGITS)
    reg0 = reg.translate(_ZERO_DIGITS)
    sub_tokens = _HOST_TOKEN_RE.findall(sub0)
    reg_tokens = _HOST_TOKEN_RE.findall(reg0)

    sub_words = _WORD_RE.findall(sub)
    tail_words = _WORD_RE.findall(tail)
    reg_words = _WORD_RE.findall(reg)
    brand_reg = reg in _LONG_BRAND_SET or reg in _SHORT_BRANDS
    brand_reg_mixed = not brand_reg and not (
        _LONG_BRAND_SET.isdisjoint(reg_words) and _SHORT_BRANDS.isdisjoint(reg_tokens)
    )
    brand_sub = not (
        _LONG_BRAND_SET.isdisjoint(sub_words) and _SHORT_BRANDS.isdisjoint(sub_tokens)
    )
    brand_path = not (
        _LONG_BRAND_SET.isdisjoint(tail_words) and _SHORT_BRANDS.isdisjoint(path_tokens)
    )
    is_suspicious = _SUSPICIOUS_SET.__contains__

    n_host = len(host)
    n_path = len(path)

    dense = [
        1.0 if scheme is not None and scheme.lower() == b"https" else 0.0,
        math.log1p(len(raw)),
        math.log1p(n_host),
        math.log1p(n_path),
        math.log1p(len(query)),
        min(len(sub_labels), 8),
        math.log1p(n_host - len(host.translate(None, _DIGITS))),
        min(host.count(b"-"), 10),
        1.0 if ip_host else 0.0,
        1.0 if b"xn--" in host else 0.0,
        1.0 if has_port else 0.0,
        1.0 if userinfo else 0.0,
        1.0 if (b"@" in tail or b"%40" in tail) else 0.0,
        min(lpath.count(b"/"), 15),
        math.log1p(len(tail) - len(tail.translate(None, _DIGITS))),
        1.0 if b"//" in path else 0.0,
        min(lquery.count(b"&") + 1, 20) if query else 0,
        min(len(reg), 40),
        min(len(reg) - len(reg.translate(None, _DIGITS)), 10),
        1.0 if lpath in (b"", b"/") and not query else 0.0,
        1.0 if www else 0.0,
        min(sum(map(is_suspicious, sub_words)), 5),
        min(sum(map(is_suspicious, tail_words)), 5),
        min(sum(map(is_suspicious, reg_words)), 5),
        1.0 if brand_sub else 0.0,
        1.0 if brand_path else 0.0,
        1.0 if brand_reg_mixed else 0.0,
        1.0 if brand_reg else 0.0,
        min(len(_LONG_TOKEN_RE.findall(tail)), 10),
        math.log1p(tail.count(b"%")),
        (n_path - len(path.translate(None, _UPPER))) / n_path if n_path else 0.0,
        min(len(tld), 20),
        1.0 if (b"http" in lquery or b"//" in lquery or b"www." in tail) else 0.0,
    ]

    # Host n-grams skip "www.": it says nothing about the site behind it, and
    # half the benign training homepages were rendered with it.
    hb = b"<ip>" if ip_host else b"^" + (host[4:] if www else host) + b"$"
    hb = hb.translate(_ZERO_DIGITS)
    ext = _EXT_RE.search(lpath)
    # max(..., 0): a negative stop would slice from the end of _SLICES4.
    grams: Grams = [
        ("hg", list(map(hb.__getitem__, _SLICES4[: max(len(hb) - 3, 0)])) or [hb]),
        ("sub", _shape(sub_tokens, sub0, _LONG_HOST_TOKEN_RE)),
        ("reg", _shape(reg_tokens, reg0, _LONG_HOST_TOKEN_RE)),
        ("tld", [tld] if tld else []),
        ("pt", _shape(path_tokens, tail0, _LONG_TOKEN_RE)),
        ("pg", list(map(tail0.__getitem__, _SLICES4[: max(len(tail0) - 3, 0)]))),
        ("ext", [ext.group(1)] if ext else []),
        ("qk", _QUERY_KEY_RE.findall(lquery[:_MAX_PATH])),
    ]
    return dense, grams


# 1/sqrt(n) by table. The caps above bound every group below 512 items (at
# most 255 host 4-grams, 157 path 4-grams, 128 host tokens, 80 path tokens or
# query keys), so inference indexes it directly.
_INV_SQRT: Final = (0.0, *(1.0 / math.sqrt(n) for n in range(1, 512)))


def group_scale(n: int) -> float:
    """Weight of one occurrence in a group of ``n`` hashed features.

    Scaling by 1/sqrt(n) keeps a long path from outvoting the host just by
    having more n-grams; training uses the same function.
    """
    return _INV_SQRT[n] if n < 512 else 1.0 / math.sqrt(n)


def bucket(namespace: str, gram: bytes, bits: int) -> int:
    """The weight index a gram of ``namespace`` hashes to (stable across runs)."""
    return crc32(gram, _SEEDS[namespace]) & ((1 << bits) - 1)


class LexicalModel:
    """A trained lexical model, loaded once and shared.

    Attributes:
        version: ``lex-`` and a hash of the model file; it changes whenever the
            weights do, so it can key caches and be stored with a verdict.
        reference: ``(url, probability)`` pairs the training script computed
            with numpy for made-up URLs, to check this inference against.
        meta: the rest of the file's metadata (training figures, thresholds).
    """

    def __init__(self, data: bytes, origin: str = "<bytes>") -> None:
        """Parse a model file's bytes (gzip-compressed or not).

        Raises:
            ModelFormatError: the bytes are not a model of this feature version.
        """
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        if not raw.startswith(_MAGIC):
            raise ModelFormatError(f"{origin}: not a wabscan lexical model file")
        (meta_len,) = struct.unpack_from("<I", raw, len(_MAGIC))
        start = len(_MAGIC) + 4
        meta: dict[str, Any] = json.loads(raw[start : start + meta_len])
        if meta.get("feature_version") != FEATURE_VERSION:
            raise ModelFormatError(
                f"{origin}: trained for feature version "
                f"{meta.get('feature_version')}, this code computes version "
                f"{FEATURE_VERSION}; retrain with tools/train_lexical.py"
            )
        bits = int(meta["bits"])
        weights = array("f")
        weights.frombytes(raw[start + meta_len :])
        if sys.byteorder != "little":
            weights.byteswap()
        if len(weights) != 1 << bits:
            raise ModelFormatError(
                f"{origin}: expected {1 << bits} weights, found {len(weights)}"
            )

        self._bits = bits
        self._mask = (1 << bits) - 1
        self._weights = weights
        self._namespaces: tuple[str, ...] = tuple(meta["namespaces"])
        self._mean: list[float] = [float(v) for v in meta["dense_mean"]]
        self._scale: list[float] = [float(v) for v in meta["dense_scale"]]
        self._dense_w: list[float] = [float(v) for v in meta["dense_weights"]]
        names = [name for name, _ in DENSE_FEATURES]
        if meta.get("dense_names") != names or not (
            len(self._mean) == len(self._scale) == len(self._dense_w) == N_DENSE
        ):
            raise ModelFormatError(
                f"{origin}: its dense features differ from this code's; retrain"
                " with tools/train_lexical.py and bump FEATURE_VERSION"
            )
        # Fold the standardisation into the weights once, so a score costs one
        # multiply-add per dense feature.
        self._folded = [w / s for w, s in zip(self._dense_w, self._scale, strict=True)]
        self._bias = float(meta["bias"]) - sum(
            f * mu for f, mu in zip(self._folded, self._mean, strict=True)
        )
        self._seeds = {ns: _SEEDS[ns] for ns in self._namespaces}
        self._baseline = [
            mu if name in _FROM_MEAN else 0.0
            for (name, _), mu in zip(DENSE_FEATURES, self._mean, strict=True)
        ]
        self.version: str = "lex-" + blake2b(raw, digest_size=8).hexdigest()
        self.reference: list[tuple[str, float]] = [
            (str(u), float(p)) for u, p in meta.get("reference", ())
        ]
        self.meta = meta

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> LexicalModel:
        """Load a model file; without ``path``, the one shipped in the package.

        Raises:
            OSError: the file cannot be read.
            ModelFormatError: it is not a model this code can use.
        """
        if path is None:
            res = resources.files("wabscan").joinpath("data", _DEFAULT_RESOURCE)
            return cls(res.read_bytes(), f"wabscan/data/{_DEFAULT_RESOURCE}")
        with open(path, "rb") as f:
            return cls(f.read(), os.fspath(path))

    def logit(self, url: str) -> float:
        """The model's log-odds of phishing for ``url`` (see ``probability``)."""
        dense, grams = extract(url)
        dot: float = sum(map(operator.mul, self._folded, dense))
        z = self._bias + dot
        # map chains keep the per-gram work in C: hashing, masking and the
        # weight lookup cost about 0.1 us a gram, instead of ~0.3 us in a
        # Python loop.
        weight = self._weights.__getitem__
        mask = repeat(self._mask)
        seeds = self._seeds
        for ns, items in grams:
            if items and ns in seeds:
                hashed = map(operator.and_, map(crc32, items, repeat(seeds[ns])), mask)
                z += _INV_SQRT[len(items)] * sum(map(weight, hashed))
        return z

    def probability(self, url: str) -> float:
        """P(phishing) in [0, 1] for a URL string; never raises for a ``str``.

        Args:
            url: canonical ``scheme://host/path?query`` with a lower-case host.
        """
        z = self.logit(url)
        # Clamp: exp overflows past ~709, and beyond +-40 the answer is 0 or 1.
        if z >= 40.0:
            return 1.0
        if z <= -40.0:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))

    def contributions(self, url: str) -> list[tuple[str, float]]:
        """Every feature's share of the log-odds, named for a person.

        Lengths count from the training mean ("longer than usual"), other dense
        features and all hashed ones from zero, so a feature that is absent is
        never a reason. The shares add up to ``logit(url)`` less a constant.
        """
        dense, grams = extract(url)
        out: list[tuple[str, float]] = []
        path_shape = 0.0
        for (name, label), x, f, ref in zip(
            DENSE_FEATURES, dense, self._folded, self._baseline, strict=True
        ):
            if name in _PATH_SHAPE:
                path_shape += f * (x - ref)
                continue
            if name in _LOG1P:
                label = f"{label} ({round(math.expm1(x))})"
            elif name not in _FLAGS:
                label = f"{label} ({x:.3g})"
            out.append((label, f * (x - ref)))
        values = dict(zip((name for name, _ in DENSE_FEATURES), dense, strict=True))
        shape = (
            "bare homepage"
            if values["bare"]
            else f"{round(math.expm1(values['path_len']))} chars,"
            f" {round(values['path_depth'])} levels"
        )
        out.append((f"path shape ({shape})", path_shape))
        for ns, items in grams:
            seed = self._seeds.get(ns)
            if not items or seed is None:
                continue
            scale = group_scale(len(items))
            merged: dict[bytes, float] = {}
            for g in items:
                w = self._weights[crc32(g, seed) & self._mask]
                merged[g] = merged.get(g, 0.0) + w
            label = _NAMESPACE_LABELS[ns]
            for g, total in merged.items():
                text = g.decode("utf-8", "replace")
                out.append((f"{label} {text!r}", scale * total))
        return out

    def top_features(self, url: str, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` features that pushed ``url`` most towards phishing.

        Returns:
            ``(description, contribution)`` pairs, largest first, contribution
            in log-odds units and always positive; fewer than ``n`` when fewer
            features pushed that way.
        """
        positive = [c for c in self.contributions(url) if c[1] > 0.0]
        positive.sort(key=operator.itemgetter(1), reverse=True)
        return positive[: max(n, 0)]
