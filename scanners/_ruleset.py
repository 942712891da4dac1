"""The broker's own rules as one Hyperscan keyword prefilter + per-rule Python regexes.

1. One Hyperscan database holds every rule's keywords (literal, case-insensitive) and prefilter
   regexes. A single pass over the text reports ``(keyword, offset)`` hits.
2. For each hit, the rules owning that keyword run their Python regex on the hit's line (or a
   bounded window for multi-line rules / very long lines), at most once per rule and window.
3. Candidates pass the rule's entropy, checksum and allow filters.

The compiled database is cached on disk (``hs-<hash>.db`` under the cache directory), keyed by a
hash of every rule's keywords and prefilters and the Hyperscan version, so a changed rule compiles
a new database and an unchanged one loads in milliseconds. The cache is used only in a directory
owned by this user and not writable by others.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import hyperscan

from scanners.checksums import CHECKS, shannon_entropy
from scanners.rules import GLOBAL_ALLOW, Rule

LONG_LINE: Final = 4096


@dataclass(frozen=True, slots=True)
class RuleCandidate:
    rule: Rule
    start: int
    end: int


def rules_hash(rules: Sequence[Rule]) -> str:
    """What the Hyperscan database depends on (keywords, prefilters, order) + the library version."""
    doc = [[r.id, list(r.keywords), list(r.prefilter)] for r in rules]
    raw = json.dumps([getattr(hyperscan, "__version__", "?"), doc], sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def _safe_dir(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


class RuleSet:
    """Compile once, match many times (thread-safe: Hyperscan scratch space is per thread)."""

    def __init__(self, rules: Sequence[Rule], *, cache_dir: os.PathLike[str] | str | None = None) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self._local = threading.local()
        exprs: list[bytes] = []
        flags: list[int] = []
        self._hit_rules: list[tuple[int, ...]] = []
        self._hit_len: list[int] = []
        by_keyword: dict[str, list[int]] = {}
        for i, rule in enumerate(self.rules):
            for kw in rule.keywords:
                by_keyword.setdefault(kw, []).append(i)
        for kw, idxs in by_keyword.items():
            exprs.append(re.escape(kw).encode())
            flags.append(hyperscan.HS_FLAG_CASELESS)
            self._hit_rules.append(tuple(idxs))
            self._hit_len.append(len(kw))
        for i, rule in enumerate(self.rules):
            for pf in rule.prefilter:
                exprs.append(pf.encode())
                flags.append(0)
                self._hit_rules.append((i,))
                self._hit_len.append(0)
        self.cache_status = "none"
        self._db: hyperscan.Database | None = None
        if exprs:
            self._db = self._load_or_compile(exprs, flags, cache_dir)

    def _load_or_compile(
        self, exprs: list[bytes], flags: list[int], cache_dir: os.PathLike[str] | str | None
    ) -> hyperscan.Database:
        cache_file: Path | None = None
        if cache_dir is not None:
            d = Path(cache_dir)
            with contextlib.suppress(OSError):
                d.mkdir(parents=True, exist_ok=True, mode=0o700)
            if _safe_dir(d):
                cache_file = d / f"hs-{rules_hash(self.rules)}.db"
                if cache_file.is_file():
                    try:
                        db = hyperscan.loadb(cache_file.read_bytes(), hyperscan.HS_MODE_BLOCK)
                        self.cache_status = "loaded"
                        return db
                    except (OSError, hyperscan.error):
                        self.cache_status = "corrupt"
            else:
                self.cache_status = "bypassed"
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
        if cache_file is not None:
            try:
                fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".hs-")
                with os.fdopen(fd, "wb") as fh:
                    fh.write(hyperscan.dumpb(db))
                os.replace(tmp, cache_file)
                self.cache_status = "stored"
            except OSError:
                self.cache_status = "bypassed"
        return db

    def _hits(self, text: str) -> list[tuple[int, int]]:
        if self._db is None:
            return []
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        hits: list[tuple[int, int]] = []
        append = hits.append

        def on_match(idx: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
            append((idx, to))

        # non-ASCII characters become '?' so byte offsets equal character offsets
        data = text.encode("ascii", "replace")
        self._db.scan(data, match_event_handler=on_match, scratch=scratch)
        return hits

    def candidates(self, text: str) -> list[RuleCandidate]:
        n = len(text)
        out: dict[tuple[str, int, int], RuleCandidate] = {}
        done: dict[int, tuple[int, int]] = {}  # rule index -> last window
        rules = self.rules
        for idx, end in self._hits(text):
            kw_start = end - self._hit_len[idx] if self._hit_len[idx] else max(0, end - 64)
            line_start = text.rfind("\n", 0, kw_start) + 1
            line_end = text.find("\n", end)
            if line_end < 0:
                line_end = n
            long_line = line_end - line_start > LONG_LINE
            for ri in self._hit_rules[idx]:
                rule = rules[ri]
                if rule.window:
                    ws, we = line_start, min(n, end + rule.window)
                elif long_line:
                    ws, we = max(line_start, kw_start - 512), min(line_end, end + 2048)
                else:
                    ws, we = line_start, line_end
                last = done.get(ri)
                if last is not None and last[0] <= kw_start and end + 1024 <= last[1]:
                    continue
                if last is not None and last == (ws, we):
                    continue
                done[ri] = (ws, we)
                for m in rule.pattern.finditer(text, ws, we):
                    s, e = rule.secret_span(m)
                    if e <= s or (rule.id, s, e) in out:
                        continue
                    if accept(rule, text[s:e]):
                        out[(rule.id, s, e)] = RuleCandidate(rule, s, e)
        return list(out.values())


def accept(rule: Rule, secret: str) -> bool:
    if rule.entropy is not None and shannon_entropy(secret) < rule.entropy:
        return False
    if rule.checksum is not None and not CHECKS[rule.checksum](secret):
        return False
    if rule.global_allow and GLOBAL_ALLOW.search(secret):
        return False
    return not any(a.search(secret) for a in rule.allow)
