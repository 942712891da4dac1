"""The table-driven risk model: consequence x sensitivity x environment x trust x chain.

Risk is classified by what an action *can do*, never by prompt wording. The inputs come from
registered data (the action catalog, the resource, the agent, the task's chain) and the output
is a tier with the factors that produced it. The table lives in the policy bundle
(``risk.yaml``) and is validated once at load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from broker.errors import InvalidInput
from broker.models import (
    Action,
    Agent,
    Consequence,
    Environment,
    Mode,
    Resource,
    RiskAssessment,
    Sensitivity,
    Tier,
    TrustLevel,
)


@dataclass(frozen=True, slots=True)
class TierCost:
    ttl_seconds: int
    uses: int
    requires_approval: bool = False


@dataclass(frozen=True, slots=True)
class ModeRule:
    consequence: frozenset[str] | None = None
    environment: frozenset[str] | None = None
    sensitivity: frozenset[str] | None = None
    reversible: bool | None = None
    tier_at_least: Tier | None = None

    def matches(self, action: Action, resource: Resource, tier: Tier) -> bool:
        return (
            (self.consequence is None or action.consequence.value in self.consequence)
            and (self.environment is None or resource.environment.value in self.environment)
            and (self.sensitivity is None or resource.sensitivity.value in self.sensitivity)
            and (self.reversible is None or action.reversible is self.reversible)
            and (self.tier_at_least is None or tier.rank >= self.tier_at_least.rank)
        )


@dataclass(frozen=True, slots=True)
class RiskTable:
    consequence: Mapping[Consequence, int]
    sensitivity: Mapping[Sensitivity, int]
    environment: Mapping[Environment, int]
    trust: Mapping[TrustLevel, int]
    unattended_irreversible: int
    chain_high: int
    thresholds: tuple[tuple[Tier, int], ...]  # highest tier first
    tiers: Mapping[Tier, TierCost]
    inline_rules: tuple[ModeRule, ...]
    review_rules: tuple[ModeRule, ...]
    default_mode: Mode


@dataclass(frozen=True, slots=True)
class RiskInput:
    agent: Agent
    action: Action
    resource: Resource
    human_present: bool
    chain_max_tier: Tier | None = None


class RiskModel:
    def __init__(self, table: RiskTable) -> None:
        self.table = table

    def assess(self, request: RiskInput) -> RiskAssessment:
        t = self.table
        factors: dict[str, Any] = {
            "consequence": {
                "value": request.action.consequence.value,
                "weight": t.consequence[request.action.consequence],
            },
            "sensitivity": {
                "value": request.resource.sensitivity.value,
                "weight": t.sensitivity[request.resource.sensitivity],
            },
            "environment": {
                "value": request.resource.environment.value,
                "weight": t.environment[request.resource.environment],
            },
            "trust": {"value": request.agent.trust_level.value, "weight": t.trust[request.agent.trust_level]},
        }
        unattended = not request.action.reversible and not request.human_present
        factors["unattended_irreversible"] = {
            "value": unattended,
            "weight": t.unattended_irreversible if unattended else 0,
        }
        chain_high = request.chain_max_tier is not None and request.chain_max_tier.rank >= Tier.HIGH.rank
        factors["chain"] = {
            "value": request.chain_max_tier.value if request.chain_max_tier else None,
            "weight": t.chain_high if chain_high else 0,
        }
        score = sum(int(f["weight"]) for f in factors.values())
        tier = next((tier for tier, threshold in t.thresholds if score >= threshold), Tier.LOW)
        return RiskAssessment(tier=tier, score=score, factors=factors)

    def mode(self, action: Action, resource: Resource, tier: Tier) -> Mode:
        if any(r.matches(action, resource, tier) for r in self.table.inline_rules):
            return Mode.INLINE
        if any(r.matches(action, resource, tier) for r in self.table.review_rules):
            return Mode.REVIEW
        return self.table.default_mode

    def cost(self, tier: Tier) -> TierCost:
        return self.table.tiers[tier]


def _enum_map(enum_type: type[Any], raw: Any, where: str) -> dict[Any, int]:
    if not isinstance(raw, dict):
        raise InvalidInput(where, "must be a mapping")
    out: dict[Any, int] = {}
    for member in enum_type:
        if member.value not in raw:
            raise InvalidInput(f"{where}.{member.value}", "missing weight")
        value = raw[member.value]
        if not isinstance(value, int):
            raise InvalidInput(f"{where}.{member.value}", f"weight must be an integer, got {value!r}")
        out[member] = value
    unknown = set(raw) - {m.value for m in enum_type}
    if unknown:
        raise InvalidInput(where, f"unknown keys {sorted(unknown)}; allowed {[m.value for m in enum_type]}")
    return out


def _mode_rule(raw: Any, where: str) -> ModeRule:
    if not isinstance(raw, dict) or not raw:
        raise InvalidInput(where, "must be a non-empty mapping (an empty rule would match everything)")
    allowed = {"consequence", "environment", "sensitivity", "reversible", "tier_at_least"}
    if set(raw) - allowed:
        raise InvalidInput(where, f"unknown keys {sorted(set(raw) - allowed)}; allowed {sorted(allowed)}")
    checks = {"consequence": Consequence, "environment": Environment, "sensitivity": Sensitivity}
    sets: dict[str, frozenset[str] | None] = {}
    for key, enum_type in checks.items():
        values = raw.get(key)
        if values is None:
            sets[key] = None
            continue
        if not isinstance(values, list) or not values:
            raise InvalidInput(f"{where}.{key}", "must be a non-empty list")
        bad = [v for v in values if v not in {m.value for m in enum_type}]
        if bad:
            raise InvalidInput(f"{where}.{key}", f"unknown values {bad}; allowed {[m.value for m in enum_type]}")
        sets[key] = frozenset(values)
    tier_at_least = raw.get("tier_at_least")
    if tier_at_least is not None and tier_at_least not in {t.value for t in Tier}:
        raise InvalidInput(f"{where}.tier_at_least", f"must be one of {[t.value for t in Tier]}")
    reversible = raw.get("reversible")
    if reversible is not None and not isinstance(reversible, bool):
        raise InvalidInput(f"{where}.reversible", "must be true or false")
    return ModeRule(
        consequence=sets["consequence"],
        environment=sets["environment"],
        sensitivity=sets["sensitivity"],
        reversible=reversible,
        tier_at_least=Tier(tier_at_least) if tier_at_least else None,
    )


def parse_risk_table(raw: Any, where: str = "risk.yaml") -> RiskTable:
    if not isinstance(raw, dict):
        raise InvalidInput(where, "must be a mapping")
    weights = raw.get("weights") or {}
    thresholds_raw = raw.get("thresholds") or {}
    tiers_raw = raw.get("tiers") or {}
    modes_raw = raw.get("modes") or {}
    thresholds: list[tuple[Tier, int]] = []
    for tier in Tier:
        if not isinstance(thresholds_raw.get(tier.value), int):
            raise InvalidInput(f"{where}: thresholds.{tier.value}", "must be an integer")
        thresholds.append((tier, thresholds_raw[tier.value]))
    thresholds.sort(key=lambda pair: pair[0].rank, reverse=True)
    tiers: dict[Tier, TierCost] = {}
    for tier in Tier:
        cost = tiers_raw.get(tier.value)
        if not isinstance(cost, dict):
            raise InvalidInput(f"{where}: tiers.{tier.value}", "missing")
        ttl, uses = cost.get("ttl_seconds"), cost.get("uses", 0)
        if not isinstance(ttl, int) or not 1 <= ttl <= 43200:
            raise InvalidInput(f"{where}: tiers.{tier.value}.ttl_seconds", "must be between 1 and 43200")
        if not isinstance(uses, int) or uses < 0:
            raise InvalidInput(f"{where}: tiers.{tier.value}.uses", "must be a non-negative integer")
        tiers[tier] = TierCost(ttl, uses, bool(cost.get("requires_approval", False)))
    try:
        default_mode = Mode(modes_raw.get("default", "monitor"))
    except ValueError as exc:
        raise InvalidInput(f"{where}: modes.default", f"must be one of {[m.value for m in Mode]}") from exc
    return RiskTable(
        consequence=_enum_map(Consequence, weights.get("consequence"), f"{where}: weights.consequence"),
        sensitivity=_enum_map(Sensitivity, weights.get("sensitivity"), f"{where}: weights.sensitivity"),
        environment=_enum_map(Environment, weights.get("environment"), f"{where}: weights.environment"),
        trust=_enum_map(TrustLevel, weights.get("trust"), f"{where}: weights.trust"),
        unattended_irreversible=int(weights.get("unattended_irreversible", 0)),
        chain_high=int(weights.get("chain_high", 0)),
        thresholds=tuple(thresholds),
        tiers=tiers,
        inline_rules=tuple(
            _mode_rule(r, f"{where}: modes.inline[{i}]") for i, r in enumerate(modes_raw.get("inline") or [])
        ),
        review_rules=tuple(
            _mode_rule(r, f"{where}: modes.review[{i}]") for i, r in enumerate(modes_raw.get("review") or [])
        ),
        default_mode=default_mode,
    )


def parse_catalog(raw: Any, where: str = "catalog.yaml") -> dict[str, Action]:
    if not isinstance(raw, dict) or not isinstance(raw.get("actions"), dict) or not raw["actions"]:
        raise InvalidInput(where, "must contain a non-empty 'actions' mapping")
    catalog: dict[str, Action] = {}
    for name, spec in raw["actions"].items():
        if not isinstance(spec, dict):
            raise InvalidInput(f"{where}: actions.{name}", "must be a mapping")
        try:
            consequence = Consequence(str(spec.get("consequence")))
        except ValueError as exc:
            raise InvalidInput(
                f"{where}: actions.{name}.consequence", f"must be one of {[c.value for c in Consequence]}"
            ) from exc
        if not isinstance(spec.get("reversible"), bool):
            raise InvalidInput(f"{where}: actions.{name}.reversible", "must be true or false")
        catalog[name] = Action(
            name=name,
            consequence=consequence,
            reversible=spec["reversible"],
            description=str(spec.get("description", "")),
        )
    return catalog


def load_risk_table(path: Path) -> RiskTable:
    return parse_risk_table(yaml.safe_load(path.read_text()), where=path.name)


def load_catalog(path: Path) -> dict[str, Action]:
    return parse_catalog(yaml.safe_load(path.read_text()), where=path.name)
