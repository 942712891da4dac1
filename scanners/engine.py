"""The scanner: a maintained pattern engine underneath, the broker's own layers on top.

Layers, in the order a scan runs them:

1. **Pattern rules.** With a :class:`scanners.kingfisher.KingfisherEngine` that is ready: the
   engine's ~490 provider rules, plus the broker's own rules only where the engine lacks coverage
   (the *supplement*, see ``scanners/rules/engine_coverage.yaml``). An engine finding is *named* by
   the broker's own rule set when one of its rules matches the same secret on that line, so rule
   ids, spans and redaction labels stay the broker's (``stripe-live-secret-key``, not the engine's
   id). Without an engine, or before it is ready (its compile takes seconds), the broker's full
   own rule set runs: a scan is never blind while the engine warms up.
2. **Structured and path-aware detectors** (``scanners.structured``): Kubernetes Secret manifests,
   .npmrc/.pypirc/nuget.config/.netrc/docker config auth entries, curl command lines.
3. **Extra detectors** (``scanners.plugins``: detect-secrets plugins, when configured).
4. **Known grants**: every secret the broker issued is matched exactly (HMAC fingerprints),
   whatever the layers above said.

Own rules run as a Hyperscan keyword prefilter, then each rule's regex only where it hit; the
compiled database is cached on disk keyed by a hash of the rules.

A :class:`Finding` carries the span of the *whole* secret, a keyed fingerprint and a masked form;
never the secret itself.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import hashlib
import os
import secrets as _stdlib_secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from scanners._ruleset import RuleCandidate, RuleSet
from scanners.checksums import CHECKS
from scanners.coverage import supplement_ids
from scanners.known import GrantMatch, KnownSecretIndex, fingerprint
from scanners.redact import labels_for, mask, redact_text
from scanners.rules import GLOBAL_ALLOW, Confidence, Rule, Severity, load_rules
from scanners.structured import Detection, detect_binary, detect_text

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from scanners.kingfisher import EngineMatch, KingfisherEngine
    from scanners.plugins import ExtraDetector

KNOWN_RULE_ID: Final = "broker-issued-secret"
ALLOW_MARKER: Final = "nhi-broker: allow"
ALLOW_FILE_MARKER: Final = "nhi-broker: allow-file"
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
    confidence: Confidence = Confidence.MEDIUM
    validation: str | None = None  # the provider's answer, only with ``scan --validate``

    def to_dict(self) -> dict[str, Any]:
        body = {
            "rule": self.rule_id,
            "description": self.description,
            "severity": self.severity.value,
            "confidence": self.confidence.value,
            "span": [self.start, self.end],
            "line": self.line,
            "column": self.column,
            "fingerprint": self.fingerprint,
            "redacted": self.masked,
            "excerpt": self.excerpt,
            "path": self.path,
            "grant": None
            if self.grant is None
            else {"grant_id": self.grant.grant_id, "task_id": self.grant.task_id, "agent": self.grant.agent},
        }
        if self.validation is not None:
            body["validation"] = self.validation
        return body


@dataclass(frozen=True, slots=True)
class ScanResult:
    findings: tuple[Finding, ...]
    redacted_text: str
    engine_ready: bool = True  # False: the maintained engine was still compiling (own rules ran)


@dataclass(slots=True)
class _Candidate:
    rule_id: str
    description: str
    severity: Severity
    confidence: Confidence
    priority: int
    start: int
    end: int
    prefixes: tuple[str, ...] = ()
    grant: GrantMatch | None = None
    fp: str | None = None


def _from_rule(c: RuleCandidate) -> _Candidate:
    r = c.rule
    return _Candidate(r.id, r.description, r.severity, r.confidence, r.priority, c.start, c.end, r.keywords)


def _from_detection(d: Detection) -> _Candidate:
    return _Candidate(d.rule_id, d.description, d.severity, d.confidence, 30, d.start, d.end)


_ENGINE_SEVERITY: Final = {"high": Severity.HIGH, "medium": Severity.HIGH, "low": Severity.MEDIUM}


class Scanner:
    """Compile once, scan many times (thread-safe)."""

    def __init__(
        self,
        rules: Sequence[Rule] | None = None,
        *,
        key: bytes | None = None,
        known: KnownSecretIndex | None = None,
        honor_allow_comments: bool = False,
        engine: KingfisherEngine | None = None,
        supplement: Iterable[str] | None = None,
        structured: bool = True,
        min_confidence: Confidence = Confidence.LOW,
        extra: Sequence[ExtraDetector] = (),
        cache_dir: os.PathLike[str] | str | None = None,
    ) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules) if rules is not None else load_rules()
        if key is not None and len(key) < 32:
            raise ValueError("fingerprint key must be at least 32 bytes")
        self._key = key if key is not None else _stdlib_secrets.token_bytes(32)
        self.known = known
        self.honor_allow_comments = honor_allow_comments
        self.structured = structured
        self.min_confidence = min_confidence
        self.extra = tuple(extra)
        self.engine = engine
        self.own = RuleSet(self.rules, cache_dir=cache_dir)
        self.supplement: RuleSet | None = None
        if engine is not None:
            if supplement is None:
                supplement = supplement_ids(self.rules)
            keep = set(supplement)
            self.supplement = RuleSet([r for r in self.rules if r.id in keep], cache_dir=cache_dir)
        self._prefixes = tuple(sorted({k for r in self.rules for k in r.keywords}, key=len))
        self._checksum_rules = tuple(r for r in self.rules if r.checksum is not None)
        self.rules_by_id = {r.id: r for r in self.rules}

    def __repr__(self) -> str:
        return f"Scanner(rules={len(self.rules)}, engine={self.engine!r}, key=**********)"

    def fingerprint(self, value: str) -> str:
        return fingerprint(self._key, value)

    @property
    def engine_ready(self) -> bool:
        """True when no engine is configured or it is compiled (the full layer stack runs)."""
        return self.engine is None or self.engine.ready

    # -- layers ------------------------------------------------------------------------------
    def _pattern_candidates(self, text: str, path: str | None) -> tuple[list[_Candidate], bool]:
        engine = self.engine
        if engine is None:
            return [_from_rule(c) for c in self.own.candidates(text)], True
        if not engine.ready:
            engine.start()  # compile in the background; meanwhile the full own rule set runs
            return [_from_rule(c) for c in self.own.candidates(text)], False
        assert self.supplement is not None
        cands = [_from_rule(c) for c in self.supplement.candidates(text)]
        for m in engine.scan(text, path):
            named = self._name(text, m)
            if named is not None:
                cands.append(named)
        return cands, True

    def _name(self, text: str, m: EngineMatch) -> _Candidate | None:
        """The broker's own rule for an engine finding when one matches it (id, span, label)."""
        ls = text.rfind("\n", 0, m.start) + 1
        le = text.find("\n", max(m.end - 1, m.start))
        le = len(text) if le < 0 else le
        conf = Confidence(m.confidence) if m.confidence in ("low", "medium", "high") else Confidence.MEDIUM
        best: RuleCandidate | None = None
        best_overlap = 0
        for c in self.own.candidates(text[ls:le]):
            overlap = min(c.end + ls, m.end) - max(c.start + ls, m.start)
            if overlap > best_overlap:
                best, best_overlap = c, overlap
        if best is not None:
            r = best.rule
            return _Candidate(
                r.id,
                r.description,
                r.severity,
                max(conf, r.confidence),
                max(r.priority, 50),
                best.start + ls,
                best.end + ls,
                r.keywords,
            )
        if m.end - m.start < 4 or (m.end - m.start <= 512 and GLOBAL_ALLOW.search(text[m.start : m.end])):
            return None  # the broker's placeholder filter applies to the engine's findings too (and a
            # 1-3 character "password" in a URL is a documentation example, not a credential)
        for r in self._checksum_rules:
            for cm in r.pattern.finditer(text, ls, le):
                s, e = r.secret_span(cm)
                if s < m.end and m.start < e and r.checksum is not None and not CHECKS[r.checksum](text[s:e]):
                    return None  # a format with a checksum (GitHub, npm, JWT) that fails it is no secret
        return _Candidate(
            m.rule_id, m.name, _ENGINE_SEVERITY.get(m.confidence, Severity.HIGH), conf, 50, m.start, m.end
        )

    @staticmethod
    def _resolve_overlaps(cands: list[_Candidate]) -> list[_Candidate]:
        """Among overlapping candidates keep the higher priority (then the longer span)."""
        cands.sort(key=lambda c: (c.start, -c.end))
        kept: list[_Candidate] = []
        cluster: list[_Candidate] = []
        cluster_end = -1

        def flush() -> None:
            chosen: list[_Candidate] = []
            for c in sorted(cluster, key=lambda c: (-c.priority, -(c.end - c.start))):
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
        return self._scan(text, path)[0]

    def _scan(self, text: str, path: str | None) -> tuple[list[Finding], bool]:
        complete = True
        cands: list[_Candidate] = []
        if text:
            cands, complete = self._pattern_candidates(text, path)
            if self.structured:
                cands.extend(_from_detection(d) for d in detect_text(text, path))
            for det in self.extra:
                cands.extend(_from_detection(d) for d in det.detect(text, path))
            cands = self._resolve_overlaps(cands)
        if self.known is not None and len(self.known):
            by_span = {(c.start, c.end): c for c in cands}
            for s, e, fp, match in self.known.find(text):
                existing = by_span.get((s, e))
                if existing is not None:
                    existing.grant = match
                else:
                    cands.append(
                        _Candidate(
                            KNOWN_RULE_ID,
                            "Secret issued by the broker",
                            Severity.CRITICAL,
                            Confidence.HIGH,
                            100,
                            s,
                            e,
                            self._prefixes,
                            grant=match,
                            fp=fp,
                        )
                    )
            cands.sort(key=lambda c: c.start)
        return self._findings(text, cands, path), complete

    def scan_binary(self, data: bytes, *, path: str | None = None) -> list[Finding]:
        """Key containers (PKCS#12, JKS, DER private keys) judged from their bytes; one finding
        per file, fingerprinted over the file's SHA-256."""
        out = []
        for d in detect_binary(data, path):
            if d.confidence < self.min_confidence:
                continue
            fp = self.fingerprint(hashlib.sha256(data).hexdigest())
            out.append(
                Finding(
                    d.rule_id,
                    d.description,
                    d.severity,
                    0,
                    0,
                    1,
                    1,
                    fp,
                    "****",
                    "(binary key container)",
                    path,
                    None,
                    d.confidence,
                )
            )
        return out

    def scan_and_redact(self, text: str) -> ScanResult:
        findings, complete = self._scan(text, None)
        return ScanResult(tuple(findings), redact_text(text, findings), complete)

    def _findings(self, text: str, cands: list[_Candidate], path: str | None) -> list[Finding]:
        raw: list[Finding] = []
        line, pos = 1, 0
        allow_file = self.honor_allow_comments and ALLOW_FILE_MARKER in text[:2048]
        for c in cands:
            line += text.count("\n", pos, c.start)
            pos = c.start
            line_start = text.rfind("\n", 0, c.start) + 1
            if c.grant is None:
                if c.confidence < self.min_confidence:
                    continue
                if self.honor_allow_comments and (allow_file or self._allowed(text, line_start)):
                    continue
            secret = text[c.start : c.end]
            sev = Severity.CRITICAL if c.grant is not None else c.severity
            conf = Confidence.HIGH if c.grant is not None else c.confidence
            raw.append(
                Finding(
                    c.rule_id,
                    c.description,
                    sev,
                    c.start,
                    c.end,
                    line,
                    c.start - line_start + 1,
                    c.fp or self.fingerprint(secret),
                    mask(secret, c.prefixes or self._prefixes),
                    "",
                    path,
                    c.grant,
                    conf,
                )
            )

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
        if ALLOW_MARKER in text[line_start : line_end if line_end >= 0 else len(text)]:
            return True
        if line_start == 0:
            return False
        prev_start = text.rfind("\n", 0, line_start - 1) + 1
        return ALLOW_MARKER in text[prev_start:line_start]


def _excerpt(text: str, f: Finding, all_f: list[Finding], starts: list[int], labels: dict[str, str]) -> str:
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
        parts.append(text[pos : max(pos, g.start)])
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
    from concurrent.futures import ThreadPoolExecutor  # lazily: the CLI never needs asyncio

    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="nhi-scan")
        return _POOL


async def scan_text_async(scanner: Scanner, text: str) -> ScanResult:
    """Scan and redact in a worker thread so the event loop never blocks on a large message."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), scanner.scan_and_redact, text)


def scan_many(scanner: Scanner, texts: Iterable[str]) -> list[list[Finding]]:
    return [scanner.scan(t) for t in texts]
