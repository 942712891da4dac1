"""Policy test cases: data files beside the policies (``tests/*.yaml``), run like unit tests.

A case is a request and what the bundle must decide about it::

    defaults:                       # optional; every request starts from these
      agent: {name: demo-agent, trust_level: standard}
      profile: {name: demo, allowed_actions: [db.read], ceiling: critical, max_lifetime_seconds: 3600}
      remaining_seconds: 3600       # task lifetime left
    resources:                      # the registered resources the cases use
      demo-data: {sensitivity: internal, environment: dev, kind: vault_token, external: false}
    cases:
      - name: routine read is monitored
        request: {action: db.read, resource: demo-data}
        # optional: trust_level, on_behalf_of (a verified person), acting_for: {sub, groups},
        #           approval (none|pending|approved),
        #           chain: {actions: [secrets.read], max_tier: high}, remaining_seconds,
        #           allowed_actions, ceiling
        expect: {outcome: allow, tier: low, mode: monitor, ttl_max: 3600, uses: 0,
                 policies: [layer-monitor]}   # also: ttl, ttl_min, reason_contains
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from broker.decisions import ApprovalContext, ChainSummary, Decision, DecisionInput
from broker.models import (
    Agent,
    DecisionId,
    Environment,
    Resource,
    Sensitivity,
    Task,
    TaskId,
    TaskProfile,
    TaskState,
    Tier,
    TrustLevel,
    VerifiedHuman,
)
from broker.policy.bundle import TEST_DIR, Bundle
from broker.policy.engine import CedarDecisionEngine
from broker.policy.loader import load_bundle
from broker.policy.problems import Problem, yaml_error_problem, yaml_line

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_REQUEST_KEYS = {
    "action",
    "resource",
    "trust_level",
    "on_behalf_of",
    "acting_for",
    "approval",
    "chain",
    "remaining_seconds",
    "allowed_actions",
    "ceiling",
}
_EXPECT_KEYS = {"outcome", "tier", "mode", "ttl", "ttl_max", "ttl_min", "uses", "policies", "reason_contains"}


class CaseError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True)
class CaseResult:
    file: str
    line: int | None
    name: str
    action: str
    failures: tuple[str, ...]
    decision: Decision

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True, slots=True)
class TestReport:
    bundle_hash: str
    results: tuple[CaseResult, ...]
    problems: tuple[Problem, ...]  # case files that could not be read
    uncovered: tuple[str, ...]  # consequence classes of the catalog that no case exercises

    @property
    def passed(self) -> bool:
        return not self.problems and all(r.passed for r in self.results)


def run_tests(directory: Path, bundle: Bundle | None = None) -> TestReport:
    """Run every case under ``directory/tests`` against the bundle (loaded from ``directory``
    unless given; a bad bundle raises ``BundleError``)."""
    engine = CedarDecisionEngine(bundle or load_bundle(Path(directory)))
    results: list[CaseResult] = []
    problems: list[Problem] = []
    files = sorted((Path(directory) / TEST_DIR).glob("*.yaml")) if (Path(directory) / TEST_DIR).is_dir() else []
    if not files:
        problems.append(Problem(f"{TEST_DIR}/", None, "no test case file (*.yaml)"))
    for path in files:
        rel = path.relative_to(directory).as_posix()
        text = path.read_text()
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problems.append(yaml_error_problem(rel, exc))
            continue
        try:
            results.extend(_run_file(engine, rel, text, doc))
        except CaseError as exc:
            problems.append(Problem(rel, yaml_line(text, exc.path), f"{exc.path}: {exc}"))
    covered = {engine.bundle.catalog[r.action].consequence.value for r in results if r.action in engine.bundle.catalog}
    uncovered = sorted({a.consequence.value for a in engine.bundle.catalog.values()} - covered)
    return TestReport(engine.bundle_hash, tuple(results), tuple(problems), tuple(uncovered))


def _run_file(engine: CedarDecisionEngine, rel: str, text: str, doc: Any) -> list[CaseResult]:
    if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list) or not doc["cases"]:
        raise CaseError("cases", "the file must hold a non-empty 'cases' list")
    defaults = _mapping(doc.get("defaults") or {}, "defaults")
    resources = _mapping(doc.get("resources") or {}, "resources")
    out = []
    for i, case in enumerate(doc["cases"]):
        where = f"cases[{i}]"
        case = _mapping(case, where)
        name = str(case.get("name") or where)
        request = _input(
            engine,
            _mapping(case.get("request"), f"{where}.request"),
            defaults,
            resources,
            where,
            f"{rel}#{i}",
        )
        expect = _mapping(case.get("expect"), f"{where}.expect")
        unknown = set(expect) - _EXPECT_KEYS
        if unknown or "outcome" not in expect:
            raise CaseError(
                f"{where}.expect",
                f"needs 'outcome'; allowed keys {sorted(_EXPECT_KEYS)}"
                + (f", unknown {sorted(unknown)}" if unknown else ""),
            )
        decision = engine.decide(request)
        out.append(
            CaseResult(
                rel,
                yaml_line(text, where),
                name,
                request.action_name,
                tuple(_compare(decision, expect)),
                decision,
            )
        )
    return out


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CaseError(path, "must be a mapping")
    return value


def _enum(kind: Any, value: Any, path: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise CaseError(path, f"{value!r} is not one of {[m.value for m in kind]}") from None


def _input(
    engine: CedarDecisionEngine,
    req: dict[str, Any],
    defaults: dict[str, Any],
    resources: dict[str, Any],
    where: str,
    decision_id: str,
) -> DecisionInput:
    path = f"{where}.request"
    if set(req) - _REQUEST_KEYS or "action" not in req or "resource" not in req:
        raise CaseError(path, f"needs 'action' and 'resource'; allowed keys {sorted(_REQUEST_KEYS)}")
    agent_d = _mapping(defaults.get("agent") or {}, "defaults.agent")
    profile_d = _mapping(defaults.get("profile") or {}, "defaults.profile")
    trust = _enum(TrustLevel, req.get("trust_level", agent_d.get("trust_level", "standard")), f"{path}.trust_level")
    agent = Agent(
        name=str(agent_d.get("name", "test-agent")),
        owner=str(agent_d.get("owner", "test-owner")),
        trust_level=trust,
        bindings=(),
        profiles=(str(profile_d.get("name", "test")),),
    )
    allowed = req.get("allowed_actions", profile_d.get("allowed_actions", [req["action"]]))
    profile = TaskProfile(
        name=str(profile_d.get("name", "test")),
        allowed_actions=tuple(allowed),
        ceiling=_enum(Tier, req.get("ceiling", profile_d.get("ceiling", "critical")), f"{path}.ceiling"),
        max_lifetime_seconds=int(profile_d.get("max_lifetime_seconds", 3600)),
    )
    remaining = req.get("remaining_seconds", defaults.get("remaining_seconds", 3600))
    if not isinstance(remaining, int):
        raise CaseError(f"{path}.remaining_seconds", "must be an integer")
    task = Task(
        task_id=TaskId(f"test-{decision_id}"),
        agent=agent.name,
        profile=profile.name,
        purpose="policy test",
        on_behalf_of=req.get("on_behalf_of"),
        acting_for=_acting_for(req, f"{path}.acting_for"),
        state=TaskState.ACTIVE,
        created_at=NOW - timedelta(minutes=1),
        expires_at=NOW + timedelta(seconds=remaining),
    )
    res_name = str(req["resource"])
    resource = None
    if res_name in resources:
        spec = _mapping(resources[res_name], f"resources.{res_name}")
        resource = Resource(
            name=res_name,
            kind=str(spec.get("kind", "vault_token")),
            sensitivity=_enum(Sensitivity, spec.get("sensitivity"), f"resources.{res_name}.sensitivity"),
            environment=_enum(Environment, spec.get("environment"), f"resources.{res_name}.environment"),
            settings={},
            external=bool(spec.get("external", False)),
        )
    chain_d = _mapping(req.get("chain") or {}, f"{path}.chain")
    actions = tuple(chain_d.get("actions") or ())
    catalog = engine.bundle.catalog
    chain = ChainSummary(
        steps=len(actions),
        actions=actions,
        consequences=tuple(catalog[a].consequence.value for a in actions if a in catalog),
        max_tier=_enum(Tier, chain_d["max_tier"], f"{path}.chain.max_tier") if chain_d.get("max_tier") else None,
    )
    approval_raw = req.get("approval", "none")
    if approval_raw not in ("none", "pending", "approved"):
        raise CaseError(f"{path}.approval", "must be none, pending or approved")
    approval = None if approval_raw == "none" else ApprovalContext("test-approval", approval_raw == "approved")
    return DecisionInput(
        decision_id=DecisionId(decision_id),
        agent=agent,
        profile=profile,
        task=task,
        action_name=str(req["action"]),
        resource_name=res_name,
        action=catalog.get(str(req["action"])),
        resource=resource,
        chain=chain,
        now=NOW,
        approval=approval,
    )


def _compare(d: Decision, expect: Mapping[str, Any]) -> list[str]:
    failures = []
    for key, actual in (
        ("outcome", d.outcome.value),
        ("tier", d.tier.value),
        ("mode", d.mode.value),
        ("ttl", d.ttl_seconds),
        ("uses", d.uses),
    ):
        if key in expect and expect[key] != actual:
            failures.append(f"{key}: expected {expect[key]!r}, got {actual!r}")
    if "ttl_max" in expect and d.ttl_seconds > expect["ttl_max"]:
        failures.append(f"ttl: expected at most {expect['ttl_max']}s, got {d.ttl_seconds}s")
    if "ttl_min" in expect and d.ttl_seconds < expect["ttl_min"]:
        failures.append(f"ttl: expected at least {expect['ttl_min']}s, got {d.ttl_seconds}s")
    missing = [p for p in expect.get("policies") or () if p not in d.policy_ids]
    if missing:
        failures.append(f"policies: expected {missing} among the matched {list(d.policy_ids)}")
    needle = expect.get("reason_contains")
    if needle and not any(needle in r for r in d.reasons):
        failures.append(f"reasons: none contains {needle!r}: {list(d.reasons)}")
    return failures


def _acting_for(req: Mapping[str, Any], where: str) -> VerifiedHuman | None:
    """In a policy test, ``on_behalf_of: alice`` names a verified person (the test stands in for the
    token exchange that proved her); ``acting_for: {sub: alice, groups: [finance]}`` adds her
    attributes."""
    raw = req.get("acting_for")
    if raw is not None:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("sub"), str):
            raise CaseError(where, "must be a mapping with at least sub (and optional attributes such as groups)")
        return VerifiedHuman.from_dict({"iss": "policy-test", **raw})
    name = req.get("on_behalf_of")
    return VerifiedHuman("policy-test", str(name)) if name else None
