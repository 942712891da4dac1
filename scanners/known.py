"""Known-grant matching: recognise secrets the broker issued, whatever their format.

The broker fingerprints every secret it issues (HMAC-SHA256 under its fingerprint key, hex, first
32 chars — exactly :class:`broker.secrets.Fingerprinter`) and feeds the fingerprint here with the
grant, task and agent it belongs to. The scanner extracts candidate tokens from text, fingerprints
them under the same key and looks them up. The index never holds a secret, only fingerprints.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Protocol

# characters a broker-issued secret is made of: Vault/OpenBao tokens, urlsafe tokens, base64 keys,
# generated database passwords. Anything else (space, quotes, :, @, ?, &, ,) delimits a candidate.
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_\-+/=.~]{12,}")
_SPLIT_RE: Final = re.compile(r"[=/.]")
MIN_CANDIDATE: Final = 12
MAX_CANDIDATE: Final = 4096


class _Revealable(Protocol):
    def reveal(self) -> str: ...


def fingerprint(key: bytes, value: str) -> str:
    """HMAC-SHA256 of ``value`` under ``key``, hex, first 32 chars (= broker.secrets.Fingerprinter)."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class GrantMatch:
    """The grant a broker-issued secret belongs to."""

    grant_id: str
    task_id: str
    agent: str


def iter_candidates(text: str, lengths: frozenset[int] | None = None) -> Iterator[tuple[int, int]]:
    """Spans of substrings that could be a whole issued secret.

    A maximal run of token characters, the run without trailing dots, and its pieces split at
    ``=``, ``/`` and ``.`` (``password=SECRET``, ``/v1/path/SECRET``, ``SECRET.``). With ``lengths``
    only candidates of those lengths are produced (the index knows its secrets' lengths).
    """
    min_len = min(lengths) if lengths else MIN_CANDIDATE
    for m in _TOKEN_RE.finditer(text):
        start, end = m.span()
        if end - start < min_len:
            continue  # no piece of a shorter run can be as long as the shortest issued secret
        spans = {(start, end)}
        run = m.group()
        stripped = run.rstrip(".")
        if len(stripped) != len(run):
            spans.add((start, start + len(stripped)))
        if _SPLIT_RE.search(run):
            pos = start
            for piece in _SPLIT_RE.split(run):
                if len(piece) >= MIN_CANDIDATE:
                    spans.add((pos, pos + len(piece)))
                pos += len(piece) + 1
            # value after the first '=' keeps its own '=', '/' and '.' (base64, hvs. tokens)
            eq = run.find("=")
            if 0 <= eq < len(run) - MIN_CANDIDATE:
                spans.add((start + eq + 1, end))
                spans.add((start + eq + 1, start + len(stripped)))
            dot = run.find("/")
            if dot >= 0:
                last = run.rfind("/")
                spans.add((start + last + 1, end))
        for s, e in spans:
            n = e - s
            if MIN_CANDIDATE <= n <= MAX_CANDIDATE and (lengths is None or n in lengths):
                yield s, e


class KnownSecretIndex:
    """Thread-safe map fingerprint -> :class:`GrantMatch` for the secrets the broker issued."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("fingerprint key must be at least 32 bytes")
        self._key = key
        self._lock = threading.Lock()
        self._by_fp: dict[str, GrantMatch] = {}
        self._length_of: dict[str, int | None] = {}
        self._length_count: Counter[int | None] = Counter()  # kept incrementally: O(1) per add/remove
        self._lengths: frozenset[int] | None = frozenset()

    def __repr__(self) -> str:
        return f"KnownSecretIndex(size={len(self)}, key=**********)"

    def __len__(self) -> int:
        return len(self._by_fp)

    def fingerprint(self, value: str) -> str:
        return fingerprint(self._key, value)

    def add(self, fp: str, match: GrantMatch, *, length: int | None = None) -> None:
        """Register a stored fingerprint. ``length`` (of the secret) narrows candidate extraction;
        without it every candidate is fingerprinted."""
        if not re.fullmatch(r"[0-9a-f]{32}", fp):
            raise ValueError("fingerprint must be 32 lowercase hex characters")
        with self._lock:
            if fp in self._length_of:
                self._forget_length(fp)
            self._by_fp[fp] = match
            self._length_of[fp] = length
            self._length_count[length] += 1
            self._recompute()

    def add_secret(self, secret: str | _Revealable, match: GrantMatch) -> str:
        """Fingerprint and register a secret at issuance; returns the fingerprint."""
        raw = secret if isinstance(secret, str) else secret.reveal()
        fp = self.fingerprint(raw)
        self.add(fp, match, length=len(raw))
        return fp

    def remove(self, fp: str) -> None:
        with self._lock:
            if fp in self._by_fp:
                self._forget_length(fp)
                del self._by_fp[fp]
                del self._length_of[fp]
            self._recompute()

    def remove_grant(self, grant_id: str) -> None:
        with self._lock:
            for fp in [f for f, m in self._by_fp.items() if m.grant_id == grant_id]:
                self._forget_length(fp)
                del self._by_fp[fp]
                del self._length_of[fp]
            self._recompute()

    def _forget_length(self, fp: str) -> None:
        length = self._length_of[fp]
        self._length_count[length] -= 1
        if self._length_count[length] <= 0:
            del self._length_count[length]

    def _recompute(self) -> None:
        # distinct lengths are few (token formats), so this is cheap whatever the index size
        lengths = self._length_count.keys()
        self._lengths = None if None in lengths else frozenset(x for x in lengths if x is not None)

    def entries(self) -> list[tuple[str, GrantMatch, int | None]]:
        """A snapshot of ``(fingerprint, match, secret length or None)``."""
        with self._lock:
            return [(fp, m, self._length_of.get(fp)) for fp, m in self._by_fp.items()]

    def lookup(self, fp: str) -> GrantMatch | None:
        return self._by_fp.get(fp)

    def find(self, text: str) -> list[tuple[int, int, str, GrantMatch]]:
        """``(start, end, fingerprint, match)`` for every issued secret found in ``text``."""
        by_fp, lengths = self._by_fp, self._lengths  # snapshot: dict reads are atomic
        if not by_fp:
            return []
        out: list[tuple[int, int, str, GrantMatch]] = []
        seen: set[tuple[int, int]] = set()
        for s, e in iter_candidates(text, lengths):
            if (s, e) in seen:
                continue
            seen.add((s, e))
            fp = fingerprint(self._key, text[s:e])
            match = by_fp.get(fp)
            if match is not None:
                out.append((s, e, fp, match))
        return out
