"""``burst``: more than N credential requests at or above a tier within T seconds.

A request naming an ``approval_id`` (the agent collecting, or asking again while the approval is
pending) repeats a request already counted: it never counts, so waiting for an approver cannot
trip the detector. Agents should wait with ``GET /v1/tasks/{id}/approvals/{approval_id}?wait=``.
"""

from __future__ import annotations

from datetime import timedelta

from broker.chain.config import BurstConfig
from broker.chain.model import ChainContext, ChainStep, Hit, StepKind


class BurstDetector:
    name = "burst"

    def __init__(self, config: BurstConfig) -> None:
        self.config = config

    def _counts(self, step: ChainStep) -> bool:
        return (
            step.kind is StepKind.CREDENTIAL_REQUEST
            and not step.collection
            and step.assessed
            and step.tier is not None
            and step.tier.rank >= self.config.min_tier.rank
        )

    def check(self, ctx: ChainContext) -> Hit | None:
        cand = ctx.candidate
        if not self._counts(cand):
            return None
        since = cand.at - timedelta(seconds=self.config.window_seconds)
        window = [s for s in ctx.history if s.at >= since and self._counts(s)] + [cand]
        if len(window) <= self.config.max_requests:
            return None
        return Hit(
            detector=self.name,
            steps=tuple(window),
            reason=f"{len(window)} requests at tier {self.config.min_tier.value} or above within "
            f"{self.config.window_seconds}s (more than {self.config.max_requests})",
            extra={"count": len(window), "window_seconds": self.config.window_seconds},
        )
