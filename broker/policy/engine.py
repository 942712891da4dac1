"""The Cedar decision engine: the risk floor, then one Cedar evaluation per request.

Order of a decision (any exception anywhere: ``deny``, with the error in the reasons):

1. floor — the action must be in the bundle's catalog, the resource registered, the action in
   the task profile, the tier at or below the profile's ceiling, the task alive;
2. risk — the table in ``risk.yaml`` gives tier, score, factors, control mode and tier cost;
3. Cedar — one ``is_authorized`` call with the parsed policy set, schema and entities. Any
   diagnostics error (a policy that failed to evaluate, a missing entity, a context the schema
   rejects) denies: Cedar skips an erroring policy, and a skipped forbid must never allow.
4. outcome — ``allow`` when Cedar permits; ``step_up`` when the only forbids that fired are
   ``@step_up`` ones *and* the same request is permitted without them (so an approval would
   really help); ``deny`` otherwise. An approved approval evaluates the set without the
   ``@step_up`` forbids. The risk table's ``requires_approval`` is a floor: a permit for such a
   tier without approval is a ``step_up`` too.
5. obligations — TTL = min(tier TTL, every matched permit's ``@max_ttl``, task remaining
   lifetime); ``@single_use`` forces one use; ``@mode`` can only raise the control mode.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import cedarpy

from broker.decisions import Decision, DecisionInput
from broker.models import Action, Mode, Outcome, RiskAssessment, Tier
from broker.policy.bundle import SCHEMA, Bundle, PolicyInfo
from broker.policy.problems import Problem
from broker.policy.request import CedarRequest, action_entities, build, prune, pruned_entity, synthetic_input
from broker.risk.model import RiskInput

_POLICY_ERROR = re.compile(r"error while evaluating policy `([^`]+)`")
_ENTITY_CACHE_SIZE = 4096


class _Everything(frozenset[str]):
    def __contains__(self, item: object) -> bool:
        return True


_EVERYTHING = _Everything()
_MODE_STRICTNESS = {Mode.MONITOR: 0, Mode.REVIEW: 1, Mode.INLINE: 2}


class CedarDecisionEngine:
    """Implements :class:`broker.decisions.DecisionEngine` for one loaded :class:`Bundle`."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.bundle_hash = bundle.bundle_hash
        self._actions = cedarpy.Entities.from_json_str(json.dumps(action_entities(bundle.catalog)))
        # (agent+profile+resource, task) -> parsed handle: a task's later requests parse nothing
        self._entities: dict[tuple[tuple[Any, ...], tuple[Any, ...]], cedarpy.Entities] = {}
        self._stable: dict[tuple[Any, ...], cedarpy.Entities] = {}  # agent+profile+resource -> handle
        self._cache_lock = threading.Lock()
        # a bundle built without the names (none is, outside tests) hands Cedar everything
        self._names = bundle.names or _EVERYTHING

    def _evaluate(self, cr: CedarRequest, policies: cedarpy.PolicySet) -> cedarpy.AuthzResult:
        """One Cedar call. The schema is not passed: the policies were validated against it at load
        and the smoke check proved the request shape conforms; what remains (a missing entity, an
        overflow) surfaces as a diagnostics error, which denies."""
        request = {**cr.request, "context": prune(cr.request["context"], self._names)}
        return cedarpy.is_authorized(request, policies, self._entities_for(cr))

    def _entities_for(self, cr: CedarRequest) -> cedarpy.Entities:
        """Parsed entities, cached in two levels by content: the agent, profile and resource (the
        same across many tasks) over the action hierarchy, then the task (and the person it acts
        for) over those. A task's later requests parse nothing; a new task parses only itself."""
        key = (cr.stable_key, cr.task_key)
        entities = self._entities.get(key)
        if entities is not None:
            return entities
        stable = self._stable.get(cr.stable_key)
        if stable is None:
            stable_entities = [pruned_entity(e, self._names) for e in cr.stable]
            stable = self._actions.with_added_json_str(json.dumps(stable_entities, separators=(",", ":")))
            with self._cache_lock:
                _bounded_put(self._stable, cr.stable_key, stable)
        own = [pruned_entity(e, self._names) for e in (cr.task, *cr.people)]
        entities = stable.with_added_json_str(json.dumps(own, separators=(",", ":")))
        with self._cache_lock:  # misses only; hits read the dict without a lock
            _bounded_put(self._entities, key, entities)
        return entities

    @property
    def catalog(self) -> dict[str, Action]:
        return dict(self.bundle.catalog)

    def decide(self, request: DecisionInput) -> Decision:
        try:
            return self._decide(request)
        except Exception as exc:  # fail closed, and say why
            detail = str(exc).splitlines()[0][:200] if str(exc) else ""
            return self._deny(
                request,
                f"evaluation error ({type(exc).__name__}{': ' + detail if detail else ''}); denied (fail closed)",
            )

    # -- internals ---------------------------------------------------------------------------------
    def _deny(
        self,
        request: DecisionInput,
        *reasons: str,
        risk: RiskAssessment | None = None,
        mode: Mode = Mode.INLINE,
        policy_ids: tuple[str, ...] = (),
    ) -> Decision:
        return Decision(
            decision_id=request.decision_id,
            outcome=Outcome.DENY,
            tier=risk.tier if risk else Tier.CRITICAL,
            score=risk.score if risk else 0,
            factors=dict(risk.factors) if risk else {},
            mode=mode,
            ttl_seconds=0,
            uses=0,
            reasons=reasons,
            policy_ids=policy_ids,
            bundle_hash=self.bundle_hash,
            inputs=request.to_record(),
        )

    def _decide(self, request: DecisionInput) -> Decision:
        b = self.bundle
        action = b.catalog.get(request.action_name)  # the bundle's catalog is the one that decides
        if action is None:
            return self._deny(request, f"action {request.action_name!r} is not in the action catalog")
        resource = request.resource
        if resource is None:
            return self._deny(request, f"resource {request.resource_name!r} is not registered")
        risk = b.risk.assess(
            RiskInput(
                agent=request.agent,
                action=action,
                resource=resource,
                human_present=request.human_present,
                chain_max_tier=request.chain.max_tier,
            )
        )
        mode = b.risk.mode(action, resource, risk.tier)
        cost = b.risk.cost(risk.tier)
        remaining = int((request.task.expires_at - request.now).total_seconds())
        why = (
            f"tier {risk.tier.value} (score {risk.score}) from consequence {action.consequence.value}, "
            f"sensitivity {resource.sensitivity.value}, environment {resource.environment.value}"
        )
        profile = request.profile
        if request.action_name not in profile.allowed_actions:
            return self._deny(
                request,
                why,
                f"action {request.action_name!r} is not allowed by profile {profile.name!r}",
                risk=risk,
                mode=mode,
            )
        if risk.tier.rank > profile.ceiling.rank:
            return self._deny(
                request,
                why,
                f"tier {risk.tier.value} is above the ceiling {profile.ceiling.value} of profile {profile.name!r}",
                risk=risk,
                mode=mode,
            )
        if remaining < 1:
            return self._deny(request, why, "the task has no lifetime left", risk=risk, mode=mode)

        cr = build(request, action, resource, risk, mode=mode, tier_ttl=cost.ttl_seconds, remaining=remaining)
        approved = bool(request.approval and request.approval.approved)
        result = self._evaluate(cr, b.lifted_set if approved else b.policy_set)
        errors = result.diagnostics.errors
        if errors:
            return self._deny(
                request,
                why,
                *(f"policy evaluation error: {e}" for e in errors),
                "denied (fail closed)",
                risk=risk,
                mode=mode,
            )
        ids = tuple(sorted(result.diagnostics.reasons))
        if result.decision is cedarpy.Decision.Allow:
            if cost.requires_approval and not approved:
                return self._step_up(
                    request, why, risk, ids, f"risk table: tier {risk.tier.value} requires step-up approval"
                )
            return self._allow(request, why, risk, mode, cost.ttl_seconds, cost.uses, remaining, ids)
        if result.decision is not cedarpy.Decision.Deny:
            return self._deny(
                request,
                why,
                f"Cedar gave no decision ({result.decision.value}); denied (fail closed)",
                risk=risk,
                mode=mode,
            )
        if not ids:
            return self._deny(request, why, "no permit policy matched (default deny)", risk=risk, mode=mode)
        infos = [b.policies[i] for i in ids]
        if approved or not all(i.step_up for i in infos):
            hard = [i for i in infos if not i.step_up] or infos
            return self._deny(request, why, *(_describe(i) for i in hard), risk=risk, mode=mode, policy_ids=ids)
        # only step-up forbids fired: would the request pass once they are lifted?
        lifted = self._evaluate(cr, b.lifted_set)
        if lifted.diagnostics.errors:
            return self._deny(
                request,
                why,
                *(f"policy evaluation error: {e}" for e in lifted.diagnostics.errors),
                "denied (fail closed)",
                risk=risk,
                mode=mode,
            )
        if lifted.decision is not cedarpy.Decision.Allow:
            more = tuple(sorted(lifted.diagnostics.reasons))
            reason = (
                "no permit policy matched (default deny); an approval would not help"
                if not more
                else "an approval would not help"
            )
            return self._deny(
                request,
                why,
                *(_describe(b.policies[i]) for i in more),
                reason,
                risk=risk,
                mode=mode,
                policy_ids=more,
            )
        return self._step_up(request, why, risk, ids, *(_describe(i) for i in infos))

    def _step_up(
        self, request: DecisionInput, why: str, risk: RiskAssessment, ids: tuple[str, ...], *reasons: str
    ) -> Decision:
        pending = request.approval is not None and not request.approval.approved
        tail = (
            f"approval {request.approval.approval_id!r} is not granted yet"
            if pending and request.approval
            else "step-up approval required"
        )
        return Decision(
            decision_id=request.decision_id,
            outcome=Outcome.STEP_UP,
            tier=risk.tier,
            score=risk.score,
            factors=dict(risk.factors),
            mode=Mode.INLINE,
            ttl_seconds=0,
            uses=0,
            reasons=(why, *reasons, tail),
            policy_ids=ids,
            bundle_hash=self.bundle_hash,
            inputs=request.to_record(),
        )

    def _allow(
        self,
        request: DecisionInput,
        why: str,
        risk: RiskAssessment,
        mode: Mode,
        tier_ttl: int,
        tier_uses: int,
        remaining: int,
        ids: tuple[str, ...],
    ) -> Decision:
        infos = [self.bundle.policies[i] for i in ids]
        caps = [i.max_ttl for i in infos if i.max_ttl is not None]
        ttl = min(tier_ttl, remaining, *caps)
        uses = 1 if any(i.single_use for i in infos) and tier_uses != 1 else tier_uses
        for raised in (i.mode for i in infos if i.mode is not None):
            if _MODE_STRICTNESS[raised] > _MODE_STRICTNESS[mode]:
                mode = raised
        reasons = [why, *(_describe(i) for i in infos)]
        reasons.append(f"allowed in {mode.value} mode, ttl {ttl}s" + (f", {uses} use(s)" if uses else ""))
        return Decision(
            decision_id=request.decision_id,
            outcome=Outcome.ALLOW,
            tier=risk.tier,
            score=risk.score,
            factors=dict(risk.factors),
            mode=mode,
            ttl_seconds=ttl,
            uses=uses,
            reasons=tuple(reasons),
            policy_ids=ids,
            bundle_hash=self.bundle_hash,
            inputs=request.to_record(),
        )


def _bounded_put(cache: dict[Any, cedarpy.Entities], key: Any, value: cedarpy.Entities) -> None:
    while len(cache) >= _ENTITY_CACHE_SIZE:
        del cache[next(iter(cache))]  # oldest first
    cache[key] = value


def _describe(info: PolicyInfo) -> str:
    return f"{info.effect} policy {info.policy_id!r}" + (f": {info.reason}" if info.reason else "")


def smoke_check(bundle: Bundle) -> list[Problem]:
    """At load: every catalog action gets a well-formed synthetic request through Cedar without a
    diagnostics error. Catches a schema whose RequestContext or entity types drifted from what the
    broker builds (which would otherwise deny every request at run time)."""
    problems: list[Problem] = []
    for name, action in sorted(bundle.catalog.items()):
        req = synthetic_input(action)
        assert req.resource is not None
        risk = bundle.risk.assess(
            RiskInput(agent=req.agent, action=action, resource=req.resource, human_present=req.human_present)
        )
        mode = bundle.risk.mode(action, req.resource, risk.tier)
        cr = build(req, action, req.resource, risk, mode=mode, tier_ttl=60, remaining=3600)
        try:
            result = cedarpy.is_authorized(cr.request, bundle.policy_set, cr.entities, bundle.schema)
            errors = result.diagnostics.errors
        except Exception as exc:
            errors = [f"{type(exc).__name__}: {exc}"]
        for err in errors[:1]:
            match = _POLICY_ERROR.match(err)
            info = bundle.policies.get(match.group(1)) if match else None
            if info is not None:
                problems.append(
                    Problem(
                        info.file,
                        info.line,
                        f"policy {info.policy_id!r} fails to evaluate on a "
                        f"well-formed request for action {name!r}: {err}",
                    )
                )
            else:
                problems.append(Problem(SCHEMA, None, f"the broker's request for action {name!r} is rejected: {err}"))
        if errors:
            break  # one is enough: the same drift breaks every action
    return problems
