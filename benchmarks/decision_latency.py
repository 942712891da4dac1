"""Decision latency: CedarDecisionEngine.decide vs TableDecisionEngine.decide on varied requests.

Measures the decision alone (no HTTP, no store): the risk model, the floor checks, building the
Cedar request and one ``cedarpy.is_authorized`` call (two on the step-up path). Target: p99 < 1 ms.

    .venv/bin/python benchmarks/decision_latency.py [--requests 20000] [--bundle policies/default]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from broker.decisions import ApprovalContext, ChainSummary, DecisionEngine, DecisionInput
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
from broker.risk.engine import TableDecisionEngine
from policies import DEFAULT_BUNDLE

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def requests(engine: CedarDecisionEngine, n: int, seed: int = 7) -> list[DecisionInput]:
    rng = random.Random(seed)
    catalog = engine.bundle.catalog
    names = sorted(catalog)
    out = []
    for i in range(n):
        action = rng.choice(names)
        chain_actions = tuple(rng.sample(names, rng.randint(0, 4)))
        agent = Agent(f"agent-{i % 50}", "owner", rng.choice(list(TrustLevel)), (), ("p",))
        profile = TaskProfile(
            "p",
            tuple(names) if rng.random() < 0.9 else ("db.read",),
            rng.choice([Tier.CRITICAL, Tier.CRITICAL, Tier.HIGH]),
            3600,
        )
        task = Task(
            TaskId(f"t-{i}"),
            agent.name,
            "p",
            "bench",
            rng.choice([None, "alice"]),
            TaskState.ACTIVE,
            NOW,
            NOW + timedelta(seconds=rng.randint(30, 3600)),
        )
        resource = Resource(
            f"r-{i % 40}",
            "vault_token",
            rng.choice(list(Sensitivity)),
            rng.choice(list(Environment)),
            {},
            external=rng.random() < 0.1,
        )
        approval = rng.choice([None, None, ApprovalContext("a", True), ApprovalContext("a", False)])
        chain = ChainSummary(
            len(chain_actions),
            chain_actions,
            tuple(catalog[a].consequence.value for a in chain_actions),
            rng.choice([None, Tier.LOW, Tier.HIGH]),
            rng.randint(0, 3),
        )
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


def measure(engine: DecisionEngine, reqs: list[DecisionInput]) -> tuple[list[float], list[float], dict[Outcome, int]]:
    """Wall-clock and thread CPU time per decision, in µs. On a shared machine the wall clock
    includes time the thread spent preempted; CPU time is what the decision itself costs."""
    for r in reqs[:500]:  # warm up
        engine.decide(r)
    wall: list[float] = []
    cpu: list[float] = []
    outcomes: dict[Outcome, int] = {}
    gc.disable()
    try:
        for r in reqs:
            c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
            d = engine.decide(r)
            w1, c1 = time.perf_counter_ns(), time.thread_time_ns()
            wall.append((w1 - w0) / 1000)
            cpu.append((c1 - c0) / 1000)
            outcomes[d.outcome] = outcomes.get(d.outcome, 0) + 1
    finally:
        gc.enable()
    return wall, cpu, outcomes


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    args = parser.parse_args()
    cedar = CedarDecisionEngine(load_bundle(args.bundle))
    table = TableDecisionEngine.from_dir(args.bundle)
    reqs = requests(cedar, args.requests)
    policies = len(cedar.bundle.policies)
    print(f"{args.requests} varied requests, bundle {cedar.bundle_hash[:16]} ({policies} policies)")
    head = ["p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "mean µs"]
    print(f"{'engine':<7}{'clock':<6} " + " ".join(f"{h:>9}" for h in head) + "  outcomes")
    for name, engine in (("table", table), ("cedar", cedar)):
        wall, cpu, outcomes = measure(engine, reqs)
        mix = ", ".join(f"{o.value} {c}" for o, c in sorted(outcomes.items()))
        for clock, samples in (("wall", wall), ("cpu", cpu)):
            figures = [pct(samples, 50), pct(samples, 90), pct(samples, 99), pct(samples, 99.9)]
            figures.append(statistics.fmean(samples))
            row = " ".join(f"{f:>9.1f}" for f in figures)
            print(f"{name:<7}{clock:<6} {row}  {mix if clock == 'wall' else ''}")


if __name__ == "__main__":
    main()
