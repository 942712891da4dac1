"""``dangerous_sequence``: a step the agent got to do, later followed by a matching step.

Each configured sequence (``first`` → ``then``, optionally ``within_seconds``) is checked with
the candidate as ``then`` and any earlier *done* step (an allowed request or a reported tool
call) as ``first``. The candidate counts whatever its own decision: asking is the escalation.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

from broker.chain.config import Sequence, StepMatch
from broker.chain.model import ChainContext, ChainStep, Hit


def matches(m: StepMatch, step: ChainStep) -> bool:
    if m.any:
        return True
    if m.actions and step.action not in m.actions:
        return False
    if m.consequences and step.consequence not in {c.value for c in m.consequences}:
        return False
    if m.sensitivities and step.sensitivity not in {s.value for s in m.sensitivities}:
        return False
    return m.external is None or step.external is m.external


class SequenceDetector:
    name = "dangerous_sequence"

    def __init__(self, sequences: Seq[Sequence]) -> None:
        self.sequences = tuple(sequences)

    def check(self, ctx: ChainContext) -> Hit | None:
        cand = ctx.candidate
        if cand.action is None or not cand.assessed:
            return None
        for seq in self.sequences:
            if not matches(seq.then, cand):
                continue
            for earlier in ctx.history:
                if not (earlier.done and earlier.assessed and matches(seq.first, earlier)):
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
