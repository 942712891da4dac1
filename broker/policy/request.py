"""Build the Cedar request (principal, action, resource, context) and entities for a decision.

Everything Cedar sees is computed by the broker from registered data: the agent, its task and
profile, the resource, the catalog entry of the action, the risk assessment and the chain
summary. Nothing comes from the agent's own words. The shapes match ``schema.cedarschema``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from broker.decisions import ApprovalContext, ChainSummary, DecisionInput
from broker.models import (
    Action,
    Agent,
    Consequence,
    DecisionId,
    Environment,
    Mode,
    Resource,
    RiskAssessment,
    Sensitivity,
    Task,
    TaskId,
    TaskProfile,
    TaskState,
    Tier,
    TrustLevel,
    VerifiedHuman,
)

_SENSITIVITY_RANK = {s: i for i, s in enumerate(Sensitivity)}
_FACTORS = ("consequence", "sensitivity", "environment", "trust", "unattended_irreversible", "chain")


@dataclass(frozen=True, slots=True)
class CedarRequest:
    request: dict[str, Any]
    stable: list[dict[str, Any]]  # agent, profile, resource: the same across many requests (cacheable)
    task: dict[str, Any]  # the task: new for every task
    people: tuple[dict[str, Any], ...] = ()  # the verified person the task acts for, if any
    # what the entities are made of, as hashable tuples: the engine's cache keys (cheaper than
    # serialising the entities to look them up)
    stable_key: tuple[Any, ...] = ()
    task_key: tuple[Any, ...] = ()

    @property
    def entities(self) -> list[dict[str, Any]]:
        return [*self.stable, self.task, *self.people]


def prune(record: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """``record`` (a context or an entity's attributes) without the top-level attributes no policy
    names. Cedar reads an attribute only by naming it, so what a policy could read is unchanged;
    what is left out is never parsed (parsing costs Cedar about 2 µs per value, most of a decision:
    docs/benchmarks.md). Nested records are kept whole, since a policy may compare a record with
    ``==``; the engine prunes nothing when a policy uses the context record itself
    (:func:`broker.policy.bundle.read_names`). Had a policy read a left-out attribute after
    all, its evaluation would fail and the decision deny (fail closed)."""
    return {key: value for key, value in record.items() if key in names}


def pruned_entity(entity: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """An entity (uid, parents, attrs) with only the attributes some policy names."""
    return {**entity, "attrs": prune(entity["attrs"], names)}


def _uid(kind: str, ident: str) -> dict[str, str]:
    return {"type": kind, "id": ident}


def build(
    req: DecisionInput,
    action: Action,
    resource: Resource,
    risk: RiskAssessment,
    *,
    mode: Mode,
    tier_ttl: int,
    remaining: int,
) -> CedarRequest:
    agent, profile, task = req.agent, req.profile, req.task
    task_attrs: dict[str, Any] = {"purpose": task.purpose}
    if task.on_behalf_of is not None:
        task_attrs["on_behalf_of"] = task.on_behalf_of
    people: tuple[dict[str, Any], ...] = ()
    if task.acting_for is not None:
        person = task.acting_for
        groups = person.attributes.get("groups")
        human_attrs: dict[str, Any] = {
            "issuer": person.issuer,
            "subject": person.subject,
            "groups": [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else [],
        }
        if isinstance(person.attributes.get("email"), str):
            human_attrs["email"] = person.attributes["email"]
        people = ({"uid": _uid("Human", person.principal), "parents": [], "attrs": human_attrs},)
        task_attrs["acting_for"] = {"__entity": _uid("Human", person.principal)}
    task_entity = {
        "uid": _uid("Task", task.task_id),
        "parents": [_uid("Profile", profile.name)],
        "attrs": task_attrs,
    }
    stable: list[dict[str, Any]] = [
        {
            "uid": _uid("Agent", agent.name),
            "parents": [],
            "attrs": {
                "owner": agent.owner,
                "trust_level": agent.trust_level.value,
            },
        },
        {
            "uid": _uid("Profile", profile.name),
            "parents": [],
            "attrs": {
                "ceiling": profile.ceiling.value,
                "ceiling_rank": profile.ceiling.rank,
                "max_lifetime_seconds": profile.max_lifetime_seconds,
            },
        },
        {
            "uid": _uid("Resource", resource.name),
            "parents": [],
            "attrs": {
                "kind": resource.kind,
                "sensitivity": resource.sensitivity.value,
                "sensitivity_rank": _SENSITIVITY_RANK[resource.sensitivity],
                "environment": resource.environment.value,
                "external": resource.external,
            },
        },
    ]
    chain = req.chain
    context = {
        "task": {"__entity": _uid("Task", task.task_id)},
        "tier": risk.tier.value,
        "tier_rank": risk.tier.rank,
        "score": risk.score,
        "factors": {name: int(risk.factors[name]["weight"]) for name in _FACTORS},
        "consequence": action.consequence.value,
        "reversible": action.reversible,
        "sensitivity": resource.sensitivity.value,
        "environment": resource.environment.value,
        "mode": mode.value,
        "human_present": req.human_present,
        "chain": {
            "steps": chain.steps,
            "actions": chain.distinct_actions,  # sets: bounded by the catalog, not the history
            "consequences": chain.distinct_consequences,
            "max_tier": chain.max_tier.value if chain.max_tier else "none",
            "max_tier_rank": chain.max_tier.rank if chain.max_tier else -1,
            "grants_active": chain.grants_active,
        },
        "approval": {
            "present": req.approval is not None,
            "approved": bool(req.approval and req.approval.approved),
        },
        "tier_ttl_seconds": tier_ttl,
        "task_remaining_seconds": remaining,
    }
    request = {
        "principal": _uid("Agent", agent.name),
        "action": _uid("Action", req.action_name),
        "resource": _uid("Resource", resource.name),
        "context": context,
    }
    stable_key = (
        agent.name,
        agent.owner,
        agent.trust_level,
        profile.name,
        profile.ceiling,
        profile.max_lifetime_seconds,
        resource.name,
        resource.kind,
        resource.sensitivity,
        resource.environment,
        resource.external,
    )
    task_key = (task.task_id, profile.name, task.purpose, task.on_behalf_of, repr(people) if people else None)
    return CedarRequest(
        request=request, stable=stable, task=task_entity, people=people, stable_key=stable_key, task_key=task_key
    )


def synthetic_input(action: Action, *, decision_id: str = "smoke") -> DecisionInput:
    """A well-formed request for ``action`` used to check, at load, that the bundle's schema
    accepts the context and entities the broker builds (a drifted schema would deny everything)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    profile = TaskProfile(
        name="smoke", allowed_actions=(action.name,), ceiling=Tier.CRITICAL, max_lifetime_seconds=3600
    )
    agent = Agent(
        name="smoke-agent",
        owner="smoke-owner",
        trust_level=TrustLevel.STANDARD,
        bindings=(),
        profiles=("smoke",),
    )
    task = Task(
        task_id=TaskId("smoke-task"),
        agent=agent.name,
        profile=profile.name,
        purpose="load check",
        on_behalf_of="smoke-human",
        state=TaskState.ACTIVE,
        created_at=now,
        expires_at=now + timedelta(hours=1),
        acting_for=VerifiedHuman("https://smoke.example", "smoke-human", {"groups": ["smoke"], "email": "s@example"}),
    )
    resource = Resource(
        name="smoke-resource",
        kind="vault_token",
        sensitivity=Sensitivity.INTERNAL,
        environment=Environment.DEV,
        settings={},
    )
    return DecisionInput(
        decision_id=DecisionId(decision_id),
        agent=agent,
        profile=profile,
        task=task,
        action_name=action.name,
        resource_name=resource.name,
        action=action,
        resource=resource,
        chain=ChainSummary(),
        now=now,
        approval=ApprovalContext(approval_id="smoke-approval", approved=False),
    )


def action_entities(catalog: Mapping[str, Action]) -> list[dict[str, Any]]:
    """The action hierarchy (each catalog action in its consequence group), as entities: evaluation
    runs without the schema (it was applied at load), so the groups must be given explicitly."""
    groups = [{"uid": _uid("Action", c.value), "parents": [], "attrs": {}} for c in Consequence]
    members = [
        {"uid": _uid("Action", name), "parents": [_uid("Action", a.consequence.value)], "attrs": {}}
        for name, a in sorted(catalog.items())
    ]
    return groups + members
