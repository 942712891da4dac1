"""The table-driven decision engine: risk model + profile checks, no policy language.

This is the floor every engine stands on: the Cedar engine (``broker.policy``) runs the same
checks and then lets policies permit, forbid or demand step-up. Fail closed: any exception
while deciding is a ``deny`` with the error's class in the reasons.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from broker.decisions import Decision, DecisionInput
from broker.models import Mode, Outcome, Tier
from broker.risk.model import RiskInput, RiskModel, load_catalog, load_risk_table


def deny(
    request: DecisionInput,
    reason: str,
    *,
    bundle_hash: str,
    tier: Tier = Tier.CRITICAL,
    score: int = 0,
    factors: dict[str, object] | None = None,
) -> Decision:
    return Decision(
        decision_id=request.decision_id,
        outcome=Outcome.DENY,
        tier=tier,
        score=score,
        factors=dict(factors or {}),
        mode=Mode.INLINE,
        ttl_seconds=0,
        uses=0,
        reasons=(reason,),
        bundle_hash=bundle_hash,
        inputs=request.to_record(),
    )


class TableDecisionEngine:
    def __init__(self, model: RiskModel, catalog: dict[str, object], bundle_hash: str) -> None:
        self.model = model
        self.catalog = catalog
        self.bundle_hash = bundle_hash

    @classmethod
    def from_dir(cls, directory: Path) -> TableDecisionEngine:
        catalog_path, risk_path = directory / "catalog.yaml", directory / "risk.yaml"
        digest = hashlib.sha256(catalog_path.read_bytes() + b"\0" + risk_path.read_bytes()).hexdigest()
        return cls(RiskModel(load_risk_table(risk_path)), dict(load_catalog(catalog_path)), digest)

    def decide(self, request: DecisionInput) -> Decision:
        try:
            return self._decide(request)
        except Exception as exc:  # fail closed, say why
            return deny(
                request, f"evaluation error ({type(exc).__name__}); denied (fail closed)", bundle_hash=self.bundle_hash
            )

    def _decide(self, request: DecisionInput) -> Decision:
        if request.action is None:
            return deny(
                request, f"action {request.action_name!r} is not in the action catalog", bundle_hash=self.bundle_hash
            )
        if request.resource is None:
            return deny(request, f"resource {request.resource_name!r} is not registered", bundle_hash=self.bundle_hash)
        risk = self.model.assess(
            RiskInput(
                agent=request.agent,
                action=request.action,
                resource=request.resource,
                human_present=request.human_present,
                chain_max_tier=request.chain.max_tier,
            )
        )
        mode = self.model.mode(request.action, request.resource, risk.tier)
        cost = self.model.cost(risk.tier)
        reasons = [
            f"tier {risk.tier.value} (score {risk.score}) from consequence "
            f"{request.action.consequence.value}, sensitivity {request.resource.sensitivity.value}, "
            f"environment {request.resource.environment.value}"
        ]
        outcome = Outcome.ALLOW
        if request.action_name not in request.profile.allowed_actions:
            outcome = Outcome.DENY
            reasons.append(f"action {request.action_name!r} is not allowed by profile {request.profile.name!r}")
        elif risk.tier.rank > request.profile.ceiling.rank:
            outcome = Outcome.DENY
            reasons.append(
                f"tier {risk.tier.value} is above the ceiling {request.profile.ceiling.value} "
                f"of profile {request.profile.name!r}"
            )
        elif cost.requires_approval and not (request.approval and request.approval.approved):
            outcome = Outcome.DENY
            reasons.append(f"tier {risk.tier.value} requires step-up approval")
        remaining = int((request.task.expires_at - request.now).total_seconds())
        ttl = max(0, min(cost.ttl_seconds, remaining))
        if outcome is Outcome.ALLOW and ttl < 1:
            outcome = Outcome.DENY
            reasons.append("the task has no lifetime left")
        if outcome is Outcome.ALLOW:
            reasons.append(f"allowed in {mode.value} mode, ttl {ttl}s" + (f", {cost.uses} use(s)" if cost.uses else ""))
        return Decision(
            decision_id=request.decision_id,
            outcome=outcome,
            tier=risk.tier,
            score=risk.score,
            factors=risk.factors,
            mode=mode,
            ttl_seconds=ttl if outcome is Outcome.ALLOW else 0,
            uses=cost.uses,
            reasons=tuple(reasons),
            bundle_hash=self.bundle_hash,
            inputs=request.to_record(),
        )
