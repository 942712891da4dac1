r"""Rules as data: load ``scanners/rules/*.yaml``, validate every field, compile once.

A rule file holds a ``family`` and a list of ``rules``; each rule::

    id: github-classic-pat           # unique, lowercase, [a-z0-9-]
    description: GitHub personal access token (classic)
    severity: high                   # low | medium | high | critical
    keywords: [ghp_]                 # literals (case-insensitive) for the prefilter
    prefilter: ['ghp_[A-Za-z0-9]{36}']  # or/and Hyperscan regexes (case-sensitive) for the prefilter
    pattern: '(?P<secret>ghp_[A-Za-z0-9]{36})'   # Python regex; group ``secret`` = the whole secret
    # or, instead of pattern, an assignment: context: 'datadog|dd_api'  value: '[a-f0-9]{32}'
    #   -> NAME[\w.-]{0,30} ["']? [:=] ["']? VALUE (context case-insensitive, value case-sensitive)
    entropy: 3.0                     # optional minimum Shannon entropy (bits/char) of the secret
    checksum: github_crc32           # optional structural check, see scanners.checksums.CHECKS
    allow: ['EXAMPLE$']              # optional regexes; a secret matching one is a known example
    window: 0                        # chars after the keyword to search (0 = the keyword's line)
    priority: 50                     # on overlapping findings the higher priority wins
    global_allow: true               # apply the shared placeholder filters (default true)
    confidence: high                 # optional low | medium | high; default: high with a checksum,
                                     # low for the generic family, medium otherwise

Errors name the file, the rule and the field: ``vcs.yaml: rule github-pat: pattern: ...``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from scanners.checksums import CHECKS

RULES_DIR: Final = Path(__file__).parent / "rules"
_SafeLoader: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~7x faster
_ID_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
_FIELDS: Final = {
    "id",
    "description",
    "severity",
    "keywords",
    "pattern",
    "entropy",
    "checksum",
    "allow",
    "window",
    "priority",
    "global_allow",
    "context",
    "value",
    "prefilter",
    "confidence",
}
# ``context`` + ``value`` build an assignment pattern: NAME ... [:=] "VALUE"
_ASSIGN: Final = r"(?i:{context})[\w.\-]{{0,30}}?[\"']?\s*(?:=>|:=|[:=])\s*[\"'`]?(?P<secret>{value})(?![\w\-+/])"

# a pattern may name alternative secret groups s2, s3 (Python forbids reusing a group name)
# placeholders and documentation examples, checked against every secret unless global_allow: false
GLOBAL_ALLOW: Final = re.compile(
    r"(?i)example|x{5,}|\*{3,}|placeholder|redacted|your[_-]|<[^>]*>|\$\{|\{\{|\$\(|%s|dummy"
    r"|changeme|change[_-]me|replace[_-]?me|insert[_-]|0{8,}|1{8,}|12345678|abcdefgh|fake"
    r"|%\{|^(?:password|passwd|secret|pass(?:word)?\d*|pwd|token|none|null)$"
    # well-known example credentials of documentation (SQLAlchemy's scott:tiger, ...)
    r"|^(?:tiger|s3cr3t|p@ssw0rd|hunter2|letmein|admin|root|test|guest|user|pass123|secret123)$"
)


class RuleError(ValueError):
    """A rule file is invalid; the message names file, rule and field."""


class Severity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Confidence(enum.StrEnum):
    """How sure a finding is a real credential: checksum/structure-valid (high), provider format
    (medium), generic assignment (low). Ordered: ``Confidence.LOW < Confidence.HIGH``."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _CONF_RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Confidence):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Confidence):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Confidence):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Confidence):
            return NotImplemented
        return self.rank >= other.rank


_CONF_RANK: Final = {Confidence.LOW: 0, Confidence.MEDIUM: 1, Confidence.HIGH: 2}


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    description: str
    severity: Severity
    family: str
    keywords: tuple[str, ...]
    pattern: re.Pattern[str]
    prefilter: tuple[str, ...] = ()
    entropy: float | None = None
    checksum: str | None = None
    allow: tuple[re.Pattern[str], ...] = ()
    window: int = 0
    priority: int = 50
    global_allow: bool = True
    confidence: Confidence = Confidence.MEDIUM

    def secret_span(self, match: re.Match[str]) -> tuple[int, int]:
        for name in ("secret", "s2", "s3"):
            if name in self.pattern.groupindex and match.group(name) is not None:
                return match.span(name)
        return match.span()


def _fail(where: str, field: str, message: str) -> RuleError:
    return RuleError(f"{where}: {field}: {message}")


def _compile(where: str, field: str, source: Any) -> re.Pattern[str]:
    if not isinstance(source, str) or not source:
        raise _fail(where, field, "must be a non-empty regular expression string")
    try:
        return re.compile(source)
    except re.error as exc:
        raise _fail(where, field, f"invalid regular expression ({exc})") from exc


def parse_rule(raw: Any, family: str, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise _fail(where, "rule", "must be a mapping")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise _fail(where, "id", f"{rid!r} must match {_ID_RE.pattern}")
    where = f"{where}: rule {rid}"
    unknown = set(raw) - _FIELDS
    if unknown:
        raise _fail(where, "fields", f"unknown {sorted(unknown)}; allowed {sorted(_FIELDS)}")
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise _fail(where, "description", "must be a non-empty string")
    try:
        severity = Severity(str(raw.get("severity")))
    except ValueError:
        raise _fail(where, "severity", f"{raw.get('severity')!r} is not one of {[s.value for s in Severity]}") from None
    keywords = raw.get("keywords", [])
    prefilter = raw.get("prefilter", [])
    if not isinstance(keywords, list) or not all(isinstance(k, str) and len(k) >= 2 for k in keywords):
        raise _fail(where, "keywords", "must be a list of literals of 2+ characters")
    if not isinstance(prefilter, list) or not all(isinstance(p, str) and p for p in prefilter):
        raise _fail(where, "prefilter", "must be a list of regular expressions")
    if not keywords and not prefilter:
        raise _fail(
            where,
            "keywords",
            "a rule needs keywords or prefilter (the engine never runs a rule on text no prefilter flagged)",
        )
    for p in prefilter:
        _compile(where, "prefilter", p)
    if "context" in raw or "value" in raw:
        if "pattern" in raw or not isinstance(raw.get("context"), str) or not isinstance(raw.get("value"), str):
            raise _fail(where, "context", "context and value (strings) replace pattern; give both, no pattern")
        source: Any = _ASSIGN.format(context=raw["context"], value=raw["value"])
    else:
        source = raw.get("pattern")
    pattern = _compile(where, "pattern", source)
    entropy = raw.get("entropy")
    if entropy is not None and (not isinstance(entropy, int | float) or not 0 < entropy <= 8):
        raise _fail(where, "entropy", f"{entropy!r} must be a number in (0, 8]")
    checksum = raw.get("checksum")
    if checksum is not None and checksum not in CHECKS:
        raise _fail(where, "checksum", f"{checksum!r} is not one of {sorted(CHECKS)}")
    allow_raw = raw.get("allow", [])
    if not isinstance(allow_raw, list):
        raise _fail(where, "allow", "must be a list of regular expressions")
    window = raw.get("window", 0)
    if not isinstance(window, int) or not 0 <= window <= 65536:
        raise _fail(where, "window", f"{window!r} must be an integer in [0, 65536]")
    priority = raw.get("priority", 50)
    if not isinstance(priority, int) or not 0 <= priority <= 100:
        raise _fail(where, "priority", f"{priority!r} must be an integer in [0, 100]")
    global_allow = raw.get("global_allow", True)
    if not isinstance(global_allow, bool):
        raise _fail(where, "global_allow", "must be true or false")
    conf_raw = raw.get("confidence")
    if conf_raw is None:
        confidence = (
            Confidence.HIGH if checksum is not None else Confidence.LOW if family == "generic" else Confidence.MEDIUM
        )
    else:
        try:
            confidence = Confidence(str(conf_raw))
        except ValueError:
            raise _fail(where, "confidence", f"{conf_raw!r} is not one of {[c.value for c in Confidence]}") from None
    return Rule(
        id=rid,
        description=description.strip(),
        severity=severity,
        family=family,
        keywords=tuple(dict.fromkeys(k.lower() for k in keywords)),
        pattern=pattern,
        prefilter=tuple(prefilter),
        entropy=float(entropy) if entropy is not None else None,
        checksum=checksum,
        allow=tuple(_compile(where, "allow", a) for a in allow_raw),
        window=window,
        priority=priority,
        global_allow=global_allow,
        confidence=confidence,
    )


def load_file(path: Path) -> list[Rule]:
    where = path.name
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_SafeLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        raise _fail(where, "yaml", f"cannot parse ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("family"), str):
        raise _fail(where, "family", "the file must be a mapping with a string 'family'")
    rules = doc.get("rules")
    if not isinstance(rules, list) or not rules:
        raise _fail(where, "rules", "must be a non-empty list")
    return [parse_rule(r, doc["family"], where) for r in rules]


def load_rules(paths: Iterable[Path] | None = None) -> tuple[Rule, ...]:
    """Load rule files (default: every ``*.yaml`` under ``scanners/rules``); ids must be unique."""
    files = sorted(RULES_DIR.glob("*.yaml")) if paths is None else list(paths)
    if not files:
        raise RuleError("rules: no rule files found")
    seen: dict[str, str] = {}
    out: list[Rule] = []
    for f in files:
        for rule in load_file(f):
            if rule.id in seen:
                raise _fail(f.name, f"rule {rule.id}: id", f"duplicate of a rule in {seen[rule.id]}")
            seen[rule.id] = f.name
            out.append(rule)
    return tuple(out)
