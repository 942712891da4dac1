"""Masking that keeps text useful: ``[stripe-live-secret-key:sk_live_****abcd]``.

The mask keeps a provider prefix the rule knows (so a reader sees *what* leaked), the last four
characters when the secret is long enough for that to be harmless, and the rule id. The same
secret gets the same label everywhere in a message; two different secrets that would share a
label get ``#2``, ``#3``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol


class _Span(Protocol):
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def rule_id(self) -> str: ...
    @property
    def masked(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...


def mask(secret: str, prefixes: Iterable[str] = ()) -> str:
    """``sk_live_****abcd``: known prefix, stars, last four (only when the secret is >= 20 chars)."""
    lowered = secret.lower()
    prefix = ""
    for p in prefixes:
        if len(p) > len(prefix) and lowered.startswith(p) and len(p) * 2 <= len(secret):
            prefix = secret[: len(p)]
    tail = secret[-4:] if len(secret) >= 20 and "\n" not in secret[-4:] else ""
    return f"{prefix}****{tail}"


def labels_for(findings: Sequence[_Span]) -> dict[str, str]:
    """fingerprint -> label, consistent within one message, distinct for distinct secrets."""
    labels: dict[str, str] = {}
    used: dict[str, int] = {}
    for f in sorted(findings, key=lambda f: f.start):
        if f.fingerprint in labels:
            continue
        base = f"{f.rule_id}:{f.masked}"
        used[base] = used.get(base, 0) + 1
        labels[f.fingerprint] = f"[{base}]" if used[base] == 1 else f"[{base}#{used[base]}]"
    return labels


def redact_text(text: str, findings: Sequence[_Span]) -> str:
    """``text`` with every finding's span replaced by its label (overlaps: the outer span wins)."""
    labels = labels_for(findings)
    out: list[str] = []
    pos = 0
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if f.start < pos:  # overlaps the previous label: hide what sticks out
            pos = max(pos, f.end)
            continue
        out.append(text[pos : f.start])
        out.append(labels[f.fingerprint])
        pos = f.end
    out.append(text[pos:])
    return "".join(out)
