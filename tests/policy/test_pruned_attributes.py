"""The engine hands Cedar only the attributes some policy reads (issue 14: decision latency).

Cedar parses every context and entity attribute it is given (about 2 µs a value, most of a
decision); an attribute no policy names cannot change a decision. Checked here: which names the
bundle's policies read, that decisions with and without the pruning are identical on thousands of
varied requests, that a policy reading any attribute still gets it, and that a policy using the
context record whole turns the pruning off.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from broker.decisions import ApprovalContext, ChainSummary, DecisionInput
from broker.models import (
    Agent,
    DecisionId,
    Environment,
    Outcome,
    Resource,
    Sensitivity,
    Task,
    TaskId,
    TaskProfile,
    TaskState,
    Tier,
    TrustLevel,
)
from broker.policy import CedarDecisionEngine, load_bundle
from broker.policy.bundle import read_names
from broker.policy.cedar_source import parse_policy_file
from policies import DEFAULT_BUNDLE
from tests.policy.conftest import make_input

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _names(text: str) -> frozenset[str]:
    return read_names(parse_policy_file(text)["staticPolicies"].values())


def test_names_are_the_attributes_the_policies_read() -> None:
    text = """
    // a comment that mentions score and purpose names nothing
    permit(principal, action, resource) when { context.tier == "low" && resource.sensitivity == "public" };
    forbid(principal, action, resource) when { context.chain.consequences.contains("export") };
    forbid(principal, action, resource) when { context has approval && principal.trust_level == "low" };
    permit(principal, action, resource) when { context["mode"] == "monitor" };
    permit(principal, action, resource) when { {"owner": "x"} == {"owner": "y"} };
    """
    assert _names(text) == {
        "tier",
        "sensitivity",
        "chain",
        "consequences",
        "approval",
        "trust_level",
        "mode",
        "owner",
    }


def test_a_policy_using_the_context_record_whole_turns_the_pruning_off() -> None:
    text = """
    permit(principal, action, resource) when { context.tier == "low" };
    forbid(principal, action, resource) when { context == {"tier": "low"} };
    """
    assert _names(text) == frozenset()


def _requests(engine: CedarDecisionEngine, n: int, seed: int) -> list[DecisionInput]:
    rng = random.Random(seed)
    catalog = engine.bundle.catalog
    names = sorted(catalog)
    out = []
    for i in range(n):
        action = rng.choice(names)
        chain_actions = tuple(rng.sample(names, rng.randint(0, 4)))
        agent = Agent(f"agent-{i % 7}", "owner", rng.choice(list(TrustLevel)), (), ("p",))
        profile = TaskProfile("p", tuple(names) if rng.random() < 0.9 else ("db.read",), Tier.CRITICAL, 3600)
        task = Task(
            TaskId(f"t-{i % 50}"),
            agent.name,
            "p",
            "prune",
            rng.choice([None, "alice"]),
            TaskState.ACTIVE,
            NOW,
            NOW + timedelta(seconds=rng.randint(30, 3600)),
        )
        resource = Resource(
            f"r-{i % 9}",
            "vault_token",
            rng.choice(list(Sensitivity)),
            rng.choice(list(Environment)),
            {},
            external=rng.random() < 0.2,
        )
        chain = ChainSummary(
            len(chain_actions),
            chain_actions,
            tuple(catalog[a].consequence.value for a in chain_actions),
            rng.choice([None, Tier.LOW, Tier.HIGH, Tier.CRITICAL]),
            rng.randint(0, 3),
        )
        approval = rng.choice([None, None, ApprovalContext("a", True), ApprovalContext("a", False)])
        out.append(
            DecisionInput(
                DecisionId(f"d-{i}"),
                agent,
                profile,
                task,
                action,
                resource.name,
                catalog[action],
                resource,
                chain,
                NOW,
                approval,
            )
        )
    return out


def _same(pruned: CedarDecisionEngine, whole: CedarDecisionEngine, reqs: list[DecisionInput]) -> set[Outcome]:
    outcomes = set()
    for r in reqs:
        a, b = pruned.decide(r), whole.decide(r)
        assert (a.outcome, a.reasons, a.policy_ids, a.ttl_seconds, a.uses, a.mode) == (
            b.outcome,
            b.reasons,
            b.policy_ids,
            b.ttl_seconds,
            b.uses,
            b.mode,
        ), r
        outcomes.add(a.outcome)
    return outcomes


def test_decisions_are_the_same_with_and_without_the_pruning() -> None:
    bundle = load_bundle(DEFAULT_BUNDLE)
    assert bundle.names  # the default bundle is pruned
    pruned, whole = CedarDecisionEngine(bundle), CedarDecisionEngine(replace(bundle, names=frozenset()))
    outcomes = _same(pruned, whole, _requests(pruned, 3000, seed=14))
    assert outcomes == {Outcome.ALLOW, Outcome.DENY, Outcome.STEP_UP}  # every path was exercised


def test_a_policy_reading_any_attribute_gets_it(bundle_copy: Path) -> None:
    """An attribute the default policies never read (the score, the task's purpose, the agent's
    owner) reaches Cedar as soon as a policy names it."""
    (bundle_copy / "policies" / "90-extra.cedar").write_text(
        '@id("forbid-high-score")\n'
        'forbid(principal, action, resource) when { context.score >= 0 && principal.owner == "demo-owner" };\n'
    )
    bundle = load_bundle(bundle_copy)
    assert {"score", "owner"} <= bundle.names
    engine = CedarDecisionEngine(bundle)
    d = engine.decide(make_input("db.read", "demo-data", engine=engine))
    assert d.outcome is Outcome.DENY and "forbid-high-score" in d.policy_ids
    whole = CedarDecisionEngine(replace(bundle, names=frozenset()))
    _same(engine, whole, _requests(engine, 500, seed=3))
