"""The request path's compact chain history (issue 14 item 6) decides exactly as the whole history.

A property test on the real store (SQLite; one PostgreSQL run): random histories of credential
requests (some written before revision 0008, facts only in the JSON record), tool calls, prompts
and escalations, a random candidate and random detector configurations. Every inline detector
fires on the compact history exactly when it fires on the whole one, with the same rule (the
earlier step a ``dangerous_sequence`` names may be another step of the same signature: the
compact history keeps the newest), and the policy context's chain summary is the same.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from broker.chain import store as chain_store
from broker.chain.config import BurstConfig, ChainConfig, Detectors, Sequence, SequenceDetectorConfig, StepMatch
from broker.chain.detectors import inline_detectors
from broker.chain.model import ChainContext, ChainStep, StepKind
from broker.models import Consequence, Outcome, Sensitivity, Tier
from broker.store import tables as t
from broker.store.db import make_engine, migrate
from broker.store.repo import Store

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CONSEQUENCE = {
    "db.read": "read-sensitive",
    "db.write": "write",
    "secrets.read": "secret-access",
    "data.export": "export",
}
ACTIONS = [*CONSEQUENCE, "not.in.catalog"]
# resource -> (sensitivity, external); "ghost" is not registered (no facts: not assessed)
RESOURCES: dict[str, tuple[str | None, bool | None]] = {
    "pub": ("public", False),
    "conf": ("confidential", False),
    "ext": ("restricted", True),
    "ghost": (None, None),
}
NOT_STEPS = (StepKind.ESCALATION, StepKind.DELEGATION, StepKind.DELEGATE_ESCALATED, StepKind.GATEWAY_CALL)


@dataclass(frozen=True)
class Spec:
    kind: StepKind
    action: str
    resource: str
    outcome: Outcome
    tier: Tier
    approval: bool
    legacy: bool  # a row from before revision 0008: facts only in the record


specs = st.builds(
    Spec,
    kind=st.sampled_from(
        [StepKind.CREDENTIAL_REQUEST] * 4 + [StepKind.TOOL_CALL, StepKind.PROMPT, StepKind.ESCALATION]
    ),
    action=st.sampled_from(ACTIONS),
    resource=st.sampled_from(list(RESOURCES)),
    outcome=st.sampled_from(list(Outcome)),
    tier=st.sampled_from(list(Tier)),
    approval=st.sampled_from([False, False, False, True]),
    legacy=st.booleans(),
)
matchers = st.one_of(
    st.just(StepMatch(any=True)),
    st.builds(StepMatch, actions=st.lists(st.sampled_from(list(CONSEQUENCE)), min_size=1, max_size=2).map(tuple)),
    st.builds(StepMatch, consequences=st.lists(st.sampled_from(list(Consequence)), min_size=1, max_size=2).map(tuple)),
    st.builds(StepMatch, sensitivities=st.lists(st.sampled_from(list(Sensitivity)), min_size=1, max_size=2).map(tuple)),
    st.builds(StepMatch, external=st.booleans()),
)
sequences = st.lists(
    st.builds(
        Sequence,
        name=st.just("x"),
        first=matchers,
        then=matchers,
        within_seconds=st.one_of(st.none(), st.integers(1, 400)),
    ),
    min_size=1,
    max_size=3,
).map(lambda seqs: tuple(s.model_copy(update={"name": f"s{i}"}) for i, s in enumerate(seqs)))
configs = st.builds(
    lambda seqs, burst: ChainConfig(
        detectors=Detectors(dangerous_sequence=SequenceDetectorConfig(sequences=seqs), burst=burst)
    ),
    sequences,
    st.builds(
        BurstConfig,
        max_requests=st.integers(1, 6),
        window_seconds=st.integers(1, 300),
        min_tier=st.sampled_from(list(Tier)),
    ),
)


# a history: steps at distinct offsets (seconds after T0), drawn from a small pool of kinds of
# step so that many share a signature (the case the compact history compacts)
# step so that many share a signature (the case the compact history compacts); the candidate is
# often one of the pool too (a repeat is what ``burst`` counts)
def _scenario(pool: list[Spec]) -> st.SearchStrategy[tuple[list[tuple[int, Spec]], tuple[int, Spec]]]:
    history = st.lists(
        st.tuples(st.integers(0, 200), st.sampled_from(pool)), min_size=8, max_size=60, unique_by=lambda p: p[0]
    )
    candidate = st.tuples(
        st.integers(0, 60),
        st.one_of(st.sampled_from(pool), specs).filter(lambda s: s.kind is not StepKind.ESCALATION),
    )
    return st.tuples(history, candidate)


scenarios = st.lists(specs, min_size=1, max_size=4).flatmap(_scenario)


def _facts(resource: str, action: str) -> dict[str, Any]:
    sensitivity, external = RESOURCES[resource]
    return {"consequence": CONSEQUENCE.get(action), "sensitivity": sensitivity, "external": external}


def _write(store: Store, task_id: str, history: list[tuple[int, Spec]]) -> None:
    with store.write() as conn:
        for offset, s in history:
            at = T0 + timedelta(seconds=offset)
            facts = _facts(s.resource, s.action)
            if s.kind is StepKind.CREDENTIAL_REQUEST:
                decision_id = "dec_" + uuid.uuid4().hex
                inputs = {
                    "consequence": facts["consequence"],
                    "sensitivity": facts["sensitivity"],
                    "resource_external": facts["external"],
                    "approval_id": "apr_1" if s.approval else None,
                }
                conn.execute(
                    insert(t.decisions).values(
                        decision_id=decision_id,
                        task_id=task_id,
                        agent="a",
                        action=s.action,
                        resource=s.resource,
                        outcome=s.outcome.value,
                        tier=s.tier.value,
                        mode="inline",
                        ttl_seconds=60,
                        bundle_hash="h",
                        record={"decision_id": decision_id, "inputs": inputs},
                        created_at=at,
                        consequence=None if s.legacy else facts["consequence"],
                        sensitivity=None if s.legacy else facts["sensitivity"],
                        external=None if s.legacy else facts["external"],
                    )
                )
            elif s.kind is StepKind.TOOL_CALL:
                chain_store.add_event(
                    conn, task_id=task_id, kind=s.kind, action=s.action, resource=s.resource, detail=facts, at=at
                )
            else:
                chain_store.add_event(conn, task_id=task_id, kind=s.kind, detail={"detector": "burst"}, at=at)


def _candidate(at: datetime, s: Spec) -> ChainStep:
    kind = StepKind.CREDENTIAL_REQUEST if s.kind is StepKind.CREDENTIAL_REQUEST else StepKind.TOOL_CALL
    return ChainStep(
        ref="candidate",
        kind=kind,
        at=at,
        action=s.action,
        resource=s.resource,
        tier=s.tier if kind is StepKind.CREDENTIAL_REQUEST else None,
        outcome=s.outcome if kind is StepKind.CREDENTIAL_REQUEST else None,
        collection=s.approval and kind is StepKind.CREDENTIAL_REQUEST,
        **_facts(s.resource, s.action),
    )


def _outcome(config: ChainConfig, history: list[ChainStep], cand: ChainStep) -> list[tuple[str, Any, Any]]:
    ctx = ChainContext(
        history=tuple(s for s in history if s.kind not in NOT_STEPS), candidate=cand, ceiling=Tier.MEDIUM, now=cand.at
    )
    out = []
    for detector in inline_detectors(config):
        hit = detector.check(ctx)
        out.append((detector.name, hit and hit.rule, hit and hit.extra))
    return out


def _summary(steps: list[ChainStep]) -> tuple[Any, ...]:
    requests = [s for s in steps if s.kind is StepKind.CREDENTIAL_REQUEST]
    allowed = [s for s in requests if s.outcome is Outcome.ALLOW]
    tiers = {s.tier for s in allowed}
    escalated = any(s.kind is StepKind.ESCALATION for s in steps)
    return tiers, escalated


def check_compact_equals_full(store: Store) -> None:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(scenario=scenarios, config=configs)
    def check(scenario: tuple[list[tuple[int, Spec]], tuple[int, Spec]], config: ChainConfig) -> None:
        history, candidate = scenario
        task_id = "tsk_" + uuid.uuid4().hex
        _write(store, task_id, history)
        last = max((o for o, _ in history), default=0)
        cand = _candidate(T0 + timedelta(seconds=last + candidate[0]), candidate[1])
        since = cand.at - timedelta(seconds=config.detectors.burst.window_seconds)
        with store.read() as conn:
            full = chain_store.history(conn, task_id, CONSEQUENCE)
            compact = chain_store.compact_history(conn, task_id, CONSEQUENCE, since=since)
        assert _outcome(config, compact.steps, cand) == _outcome(config, full, cand)
        assert _summary(compact.steps) == _summary(full)
        requests = [s for s in full if s.kind is StepKind.CREDENTIAL_REQUEST]
        assert compact.requests == len(requests)
        allowed = [s.action for s in requests if s.outcome is Outcome.ALLOW and s.action]
        assert compact.allowed_actions == tuple(dict.fromkeys(allowed))
        # excluding the newest step: as if it were the candidate, already recorded
        if full:
            newest = full[-1]
            with store.read() as conn:
                without = chain_store.compact_history(conn, task_id, CONSEQUENCE, since=since, exclude=newest.ref)
            assert newest.ref not in {s.ref for s in without.steps}
            rest = [s for s in full if s.ref != newest.ref]
            assert _outcome(config, without.steps, cand) == _outcome(config, rest, cand)

    check()


def test_detectors_fire_on_the_compact_history_exactly_when_on_the_full_history_sqlite(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'compact.db'}")
    migrate(engine)
    check_compact_equals_full(Store(engine))


def test_detectors_fire_on_the_compact_history_exactly_when_on_the_full_history_postgresql(pg_database) -> None:
    engine = make_engine(pg_database)
    migrate(engine)
    try:
        check_compact_equals_full(Store(engine))
    finally:
        engine.dispose()


def test_compact_history_keeps_the_newest_step_of_a_signature_and_every_request_in_the_window(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    store = Store(engine)
    read = Spec(StepKind.CREDENTIAL_REQUEST, "db.read", "conf", Outcome.ALLOW, Tier.HIGH, False, False)
    _write(store, "tsk_1", [(i, read) for i in range(0, 500, 5)])  # 100 requests, one signature
    with store.read() as conn:
        full = chain_store.history(conn, "tsk_1", CONSEQUENCE)
        compact = chain_store.compact_history(conn, "tsk_1", CONSEQUENCE, since=T0 + timedelta(seconds=480))
    assert len(full) == 100
    # 480, 485, 490 and 495 (the window; 495 is also the newest of the signature)
    assert [s.at for s in compact.steps] == [T0 + timedelta(seconds=s) for s in (480, 485, 490, 495)]
    assert compact.requests == 100
    assert compact.allowed_actions == ("db.read",)


def test_a_sequence_within_seconds_fires_on_the_compact_history_from_the_newest_step_of_a_signature(
    tmp_path,
) -> None:
    """The compact history keeps the newest step of a signature: the one a ``within_seconds``
    sequence needs, even outside the burst window (older ones would be too old)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(engine)
    store = Store(engine)
    secret = Spec(StepKind.CREDENTIAL_REQUEST, "secrets.read", "conf", Outcome.ALLOW, Tier.LOW, False, False)
    _write(store, "tsk_w", [(0, secret), (100, secret), (200, secret)])
    export = Spec(StepKind.CREDENTIAL_REQUEST, "data.export", "ext", Outcome.ALLOW, Tier.LOW, False, False)
    cand = _candidate(T0 + timedelta(seconds=250), export)
    seq = Sequence(
        name="exfil", first=StepMatch(actions=("secrets.read",)), then=StepMatch(external=True), within_seconds=60
    )
    config = ChainConfig(
        detectors=Detectors(
            dangerous_sequence=SequenceDetectorConfig(sequences=(seq,)), burst=BurstConfig(window_seconds=10)
        )
    )
    with store.read() as conn:
        full = chain_store.history(conn, "tsk_w", CONSEQUENCE)
        compact = chain_store.compact_history(conn, "tsk_w", CONSEQUENCE, since=cand.at - timedelta(seconds=10))
    assert [s.at for s in compact.steps] == [T0 + timedelta(seconds=200)]
    assert _outcome(config, compact.steps, cand) == _outcome(config, full, cand)
    assert ("dangerous_sequence", "exfil", {}) in _outcome(config, compact.steps, cand)


def test_what_a_request_reads_of_its_chain_stays_constant_as_the_history_grows_from_1_to_1000(tmp_path) -> None:
    """Issue 14 item 6, without timing: the same statements and the same number of rows and steps
    whether the task already made 1, 100 or 1,000 requests (the whole history grows with them)."""
    from sqlalchemy import event

    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    migrate(engine)
    store = Store(engine)
    read = Spec(StepKind.CREDENTIAL_REQUEST, "db.read", "conf", Outcome.ALLOW, Tier.LOW, False, False)
    tool = Spec(StepKind.TOOL_CALL, "db.read", "conf", Outcome.ALLOW, Tier.LOW, False, False)
    seen: dict[int, tuple[int, int, int]] = {}
    for n in (1, 100, 1000):
        task_id = f"tsk_{n}"
        _write(store, task_id, [*[(i, read) for i in range(n)], (n, tool)])
        since = T0 + timedelta(seconds=n + 3600)  # the burst window: after every seeded step
        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)  # noqa: B023  # removed before the next iteration

        event.listen(engine, "before_cursor_execute", count)
        try:
            with store.read() as conn:
                compact = chain_store.compact_history(conn, task_id, CONSEQUENCE, since=since)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        fetched = len(compact.steps)
        with store.read() as conn:
            assert len(chain_store.history(conn, task_id, CONSEQUENCE)) == n + 1
        seen[n] = (len(statements), fetched, compact.requests)
    assert [s[:2] for s in seen.values()] == [seen[1][:2]] * 3, seen
    assert seen[1][1] == 2  # one credential request, one tool call: one signature each
    assert [s[2] for s in seen.values()] == [1, 100, 1000]  # the summary still counts every request
