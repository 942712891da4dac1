"""The scanning engine: a Hyperscan keyword prefilter, then each rule's regex only where it hit.

1. One Hyperscan database holds every rule's keywords (literal, case-insensitive) and prefilter
   regexes. A single pass over the text reports ``(keyword, offset)`` hits.
2. For each hit, the rules owning that keyword run their Python regex on the hit's line (or a
   bounded window for multi-line rules / very long lines), at most once per rule and window.
3. Candidates pass the rule's entropy, checksum and allow filters; overlapping candidates keep the
   higher-priority rule; broker-issued secrets (``KnownSecretIndex``) are matched exactly.

A :class:`Finding` carries the span of the *whole* secret, a keyed fingerprint and a masked form;
never the secret itself.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import os
import re
import secrets as _stdlib_secrets
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Final

import hyperscan

from scanners.checksums import CHECKS, shannon_entropy
from scanners.known import GrantMatch, KnownSecretIndex, fingerprint
from scanners.redact import labels_for, mask, redact_text
from scanners.rules import GLOBAL_ALLOW, Rule, Severity, load_rules

KNOWN_RULE_ID: Final = "broker-issued-secret"
ALLOW_MARKER: Final = "nhi-broker: allow"
LONG_LINE: Final = 4096
_EXCERPT_CONTEXT: Final = 60

__all__ = ["Finding", "GrantMatch", "ScanResult", "Scanner", "default_scanner", "scan_text_async"]


@dataclass(frozen=True, slots=True)
class Finding:
    """A detected secret. ``start``/``end`` span the whole secret; ``line``/``column`` are 1-based."""

    rule_id: str
    description: str
    severity: Severity
    start: int
    end: int
    line: int
    column: int
    fingerprint: str
    masked: str
    excerpt: str
    path: str | None = None
    grant: GrantMatch | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id, "description": self.description, "severity": self.severity.value,
            "span": [self.start, self.end], "line": self.line, "column": self.column,
            "fingerprint": self.fingerprint, "redacted": self.masked, "excerpt": self.excerpt,
            "path": self.path,
            "grant": None if self.grant is None else {
                "grant_id": self.grant.grant_id, "task_id": self.grant.task_id,
                "agent": self.grant.agent},
        }


@dataclass(frozen=True, slots=True)
class ScanResult:
    findings: tuple[Finding, ...]
    redacted_text: str


@dataclass(slots=True)
class _Candidate:
    rule: Rule | None
    start: int
    end: int
    grant: GrantMatch | None = None
    fp: str | None = None


class Scanner:
    """Compile once, scan many times (thread-safe: Hyperscan scratch space is per thread)."""

    def __init__(self, rules: Sequence[Rule] | None = None, *, key: bytes | None = None,
                 known: KnownSecretIndex | None = None, honor_allow_comments: bool = False) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules) if rules is not None else load_rules()
        if key is not None and len(key) < 32:
            raise ValueError("fingerprint key must be at least 32 bytes")
        self._key = key if key is not None else _stdlib_secrets.token_bytes(32)
        self.known = known
        self.honor_allow_comments = honor_allow_comments
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
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs),
                         flags=flags)
        self._prefixes = tuple(sorted({k for r in self.rules for k in r.keywords}, key=len))
        self.rules_by_id = {r.id: r for r in self.rules}

    def __repr__(self) -> str:
        return f"Scanner(rules={len(self.rules)}, key=**********)"

    def fingerprint(self, value: str) -> str:
        return fingerprint(self._key, value)

    # -- prefilter ---------------------------------------------------------------------------
    def _hits(self, text: str) -> list[tuple[int, int]]:
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

    # -- candidates --------------------------------------------------------------------------
    def _candidates(self, text: str) -> list[_Candidate]:
        n = len(text)
        out: dict[tuple[str, int, int], _Candidate] = {}
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
                    if self._accept(rule, text[s:e]):
                        out[(rule.id, s, e)] = _Candidate(rule, s, e)
        return list(out.values())

    @staticmethod
    def _accept(rule: Rule, secret: str) -> bool:
        if rule.entropy is not None and shannon_entropy(secret) < rule.entropy:
            return False
        if rule.checksum is not None and not CHECKS[rule.checksum](secret):
            return False
        if rule.global_allow and GLOBAL_ALLOW.search(secret):
            return False
        return not any(a.search(secret) for a in rule.allow)

    @staticmethod
    def _resolve_overlaps(cands: list[_Candidate]) -> list[_Candidate]:
        """Among overlapping rule candidates keep the higher priority (then the longer span)."""
        cands.sort(key=lambda c: (c.start, -c.end))
        kept: list[_Candidate] = []
        cluster: list[_Candidate] = []
        cluster_end = -1

        def flush() -> None:
            chosen: list[_Candidate] = []
            for c in sorted(cluster, key=lambda c: (-(c.rule.priority if c.rule else 100),
                                                    -(c.end - c.start))):
                if all(c.end <= k.start or c.start >= k.end for k in chosen):
                    chosen.append(c)
            kept.extend(chosen)

        for c in cands:
            if cluster and c.start >= cluster_end:
                flush()
                cluster = []
            cluster.append(c)
            cluster_end = max(cluster_end, c.end) if len(cluster) > 1 else c.end
        if cluster:
            flush()
        kept.sort(key=lambda c: c.start)
        return kept

    # -- public ------------------------------------------------------------------------------
    def scan(self, text: str, *, path: str | None = None) -> list[Finding]:
        """Every secret in ``text``, in order of position."""
        cands = self._resolve_overlaps(self._candidates(text)) if text else []
        if self.known is not None and len(self.known):
            by_span = {(c.start, c.end): c for c in cands}
            for s, e, fp, match in self.known.find(text):
                existing = by_span.get((s, e))
                if existing is not None:
                    existing.grant = match
                else:
                    cands.append(_Candidate(None, s, e, grant=match, fp=fp))
            cands.sort(key=lambda c: c.start)
        return self._findings(text, cands, path)

    def scan_and_redact(self, text: str) -> ScanResult:
        findings = self.scan(text)
        return ScanResult(tuple(findings), redact_text(text, findings))

    def _findings(self, text: str, cands: list[_Candidate], path: str | None) -> list[Finding]:
        raw: list[Finding] = []
        line, pos = 1, 0
        for c in cands:
            line += text.count("\n", pos, c.start)
            pos = c.start
            line_start = text.rfind("\n", 0, c.start) + 1
            if self.honor_allow_comments and c.grant is None and self._allowed(text, line_start):
                continue
            secret = text[c.start:c.end]
            if c.rule is not None:
                rid, desc, sev = c.rule.id, c.rule.description, c.rule.severity
                masked = mask(secret, c.rule.keywords)
            else:
                rid, sev = KNOWN_RULE_ID, Severity.CRITICAL
                desc = "Secret issued by the broker"
                masked = mask(secret, self._prefixes)
            if c.grant is not None:
                sev = Severity.CRITICAL
            raw.append(Finding(rid, desc, sev, c.start, c.end, line, c.start - line_start + 1,
                               c.fp or self.fingerprint(secret), masked, "", path, c.grant))

        if not raw:
            return raw
        labels = labels_for(raw)
        starts = [f.start for f in raw]
        out = []
        for f in raw:
            out.append(replace(f, excerpt=_excerpt(text, f, raw, starts, labels)))
        return out

    @staticmethod
    def _allowed(text: str, line_start: int) -> bool:
        line_end = text.find("\n", line_start)
        if ALLOW_MARKER in text[line_start: line_end if line_end >= 0 else len(text)]:
            return True
        if line_start == 0:
            return False
        prev_start = text.rfind("\n", 0, line_start - 1) + 1
        return ALLOW_MARKER in text[prev_start:line_start]


def _excerpt(text: str, f: Finding, all_f: list[Finding], starts: list[int],
             labels: dict[str, str]) -> str:
    """The finding's line around the secret, every secret in it replaced by its label."""
    line_start = f.start - f.column + 1
    line_end = text.find("\n", f.start)
    line_end = len(text) if line_end < 0 else line_end
    lo = max(line_start, f.start - _EXCERPT_CONTEXT)
    hi = min(line_end, max(f.end, f.start + 1) + _EXCERPT_CONTEXT) if f.end <= line_end else line_end
    parts: list[str] = []
    pos = lo
    first = max(0, bisect.bisect_left(starts, lo - 65536) - 1)
    for g in all_f[first:]:
        if g.start >= hi:
            break
        if g.end <= pos:
            continue
        parts.append(text[pos:max(pos, g.start)])
        parts.append(labels[g.fingerprint])
        pos = max(pos, g.end)
    if pos < hi:
        parts.append(text[pos:hi])
    body = "".join(parts).strip()
    return ("…" if lo > line_start else "") + body + ("…" if hi < line_end else "")


@functools.lru_cache(maxsize=1)
def default_scanner() -> Scanner:
    """The process-wide scanner: rules compiled once at first use.

    The fingerprint key comes from ``NHI_BROKER_FINGERPRINT_KEY`` (hex, >= 32 bytes) so findings'
    fingerprints match the broker's grant fingerprints; without it a random per-process key is used.
    The API attaches its known-grant index with ``default_scanner().known = index``.
    """
    raw = os.environ.get("NHI_BROKER_FINGERPRINT_KEY")
    key = bytes.fromhex(raw) if raw else None
    return Scanner(key=key)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                                       thread_name_prefix="nhi-scan")
        return _POOL


async def scan_text_async(scanner: Scanner, text: str) -> ScanResult:
    """Scan and redact in a worker thread so the event loop never blocks on a large message."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), scanner.scan_and_redact, text)


def scan_many(scanner: Scanner, texts: Iterable[str]) -> list[list[Finding]]:
    return [scanner.scan(t) for t in texts]
