"""Drive a source the way the runner does: apply checkpoints to a state dict, collect pieces."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanners.sources.base import Checkpoint, DictState, Observation, Piece, SourceContext

KEY = b"k" * 32


def fp(value: str) -> str:
    return hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()[:32]


def ctx(tmp: Path, **kw: Any) -> SourceContext:
    return SourceContext(job="t", fingerprint=fp, cache_dir=tmp, **kw)


@dataclass
class Drive:
    state: dict[str, Any] = field(default_factory=dict)
    pieces: list[Piece] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)

    def run(self, source: Any, *, crash_after_checkpoints: int | None = None) -> list[Piece]:
        """One run; with ``crash_after_checkpoints`` the run stops (uncommitted pieces lost)."""
        new: list[Piece] = []
        pending: list[Piece] = []
        seen = 0
        for item in source.items(DictState(self.state)):
            if isinstance(item, Piece):
                pending.append(item)
            elif isinstance(item, Observation):
                self.observations.append(item)
            elif isinstance(item, Checkpoint):
                if crash_after_checkpoints is not None and seen >= crash_after_checkpoints:
                    break
                for k, v in item.state.items():
                    if v is None:
                        self.state.pop(k, None)
                    else:
                        self.state[k] = v
                new.extend(pending)
                pending = []
                seen += 1
        else:
            new.extend(pending)
        self.pieces.extend(new)
        return new

    @staticmethod
    def lines(pieces: list[Piece]) -> list[tuple[str, int, str]]:
        out = []
        for p in pieces:
            for i, text in enumerate(p.text.splitlines(), start=1):
                out.append((p.location, p.line_of(i), text))
        return out
