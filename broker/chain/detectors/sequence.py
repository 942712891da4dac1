"""``dangerous_sequence``: a step the agent got to do, later followed by a matching step.

Each configured sequence (``first`` → ``then``, optionally ``within_seconds``) is checked with
the candidate as ``then`` and any earlier *done* step (an allowed request or a reported tool
call) as ``first``. The candidate counts whatever its own decision: asking is the escalation.

The matchers are compiled once, when the rules load (sets of plain strings), not per step: this
runs on every request over the task's whole history.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass

from broker.chain.config import Sequence, StepMatch
from broker.chain.model import ChainContext, ChainStep, Hit


@dataclass(frozen=True, slots=True)
class _Match:
    """A :class:`StepMatch` compiled: empty sets match anything."""

    any: bool
    actions: frozenset[str]
    consequences: frozenset[str]
    sensitivities: frozenset[str]
    external: bool | None

    @classmethod
    def of(cls, m: StepMatch) -> _Match:
        return cls(
            m.any,
            frozenset(m.actions),
            frozenset(c.value for c in m.consequences),
            frozenset(s.value for s in m.sensitivities),
            m.external,
        )

    def __call__(self, step: ChainStep) -> bool:
        if self.any:
            return True
        if self.actions and step.action not in self.actions:
            return False
        if self.consequences and step.consequence not in self.consequences:
            return False
        if self.sensitivities and step.sensitivity not in self.sensitivities:
            return False
        return self.external is None or step.external is self.external


class SequenceDetector:
    name = "dangerous_sequence"

    def __init__(self, sequences: Seq[Sequence]) -> None:
        self.sequences = tuple(sequences)
        self._compiled = tuple((seq, _Match.of(seq.first), _Match.of(seq.then)) for seq in self.sequences)

    def check(self, ctx: ChainContext) -> Hit | None:
        cand = ctx.candidate
        if cand.action is None or not cand.assessed:
            return None
        armed = [(seq, first) for seq, first, then in self._compiled if then(cand)]
        if not armed:
            return None
        for seq, first in armed:
            for earlier in ctx.history:
                if not (first(earlier) and earlier.done and earlier.assessed):
                    continue
                if seq.within_seconds is not None and (cand.at - earlier.at).total_seconds() > seq.within_seconds:
                    continue
                return Hit(
                    detector=self.name,
                    rule=seq.name,
                    steps=(earlier, cand),
                    reason=f"sequence {seq.name}: {earlier.action} on {earlier.resource} "
                    f"then {cand.action} on {cand.resource}",
                )
        return None
