"""Detection before or after issuance (``chain.yaml`` ``detection``), against real OpenBao.

A ``monitor``-mode decision is checked right after issuance by default: the credential goes out,
the detectors run, and on a hit every grant of the task is revoked at OpenBao. The bound is 50 ms
from the issuing response to every grant dead (benchmarks/post_issuance_latency.py prints p50/p99);
the test asserts the broker's part of it (grant committed -> OpenBao confirmed the revocation, from
the audit trail) with a margin for this shared machine, best of three trials, and the
client-observed time loosely.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import hvac
import pytest
import yaml
from support.broker import RunningBroker, start_broker
from support.wait import wait_until

from broker.chain import config as chain_config
from broker.chain.rules import ChainRules
from broker.client import CredentialDenied
from broker.errors import InvalidInput
from broker.models import Mode
from policies import DEFAULT_BUNDLE
from tests.chain.conftest import accessor_is_dead, token_is_dead

BOUND_MS = 50
MARGIN = 4  # the shared 2-core machine: other sessions' load lands on the measurement
# from the client's side the measurement also holds this process's own scheduling on that
# machine (and the lookups themselves): a looser deadline there, the bound on the broker's part
CLIENT_DEADLINE_MS = 1000
TRIALS = 3


def bundle_with(tmp_path: Path, **chain: object) -> Path:
    """The default bundle plus a sequence a monitor-tier read completes: secrets.read, then db.read."""
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    raw = yaml.safe_load((bundle / "chain.yaml").read_text())
    raw["detectors"]["dangerous_sequence"]["sequences"].append(
        {"name": "secret_then_read", "first": {"actions": ["secrets.read"]}, "then": {"actions": ["db.read"]}}
    )
    raw.update(chain)
    (bundle / "chain.yaml").write_text(yaml.safe_dump(raw))
    return bundle


@pytest.fixture
def post_broker(openbao, tmp_path):
    running = start_broker(tmp_path / "broker", openbao, policy_dir=bundle_with(tmp_path))
    yield running
    running.stop()


def _all_dead(client: hvac.Client, tokens: list[str], accessors: list[str]) -> bool:
    for token in tokens:
        try:
            client.auth.token.lookup(token)
            return False
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
            pass
    for accessor in accessors:
        try:
            client.auth.token.lookup_accessor(accessor)
            return False
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
            pass
    return True


def _one_trial(b: RunningBroker) -> tuple[float, float]:
    """One task: db.read, secrets.read, then the db.read that completes secret_then_read. Asserts
    the grant is issued and then every grant of the task dies at OpenBao; returns (ms from the
    issuing response to all dead as the client sees it, ms the broker took from the grant's commit
    to OpenBao confirming the revocation — from its audit trail)."""
    agent, admin = b.agent(), b.admin()
    root = b.openbao.root_token.reveal()
    checker = hvac.Client(url=b.openbao.address, token=root)
    task_id = agent.open_task("demo", "read, fetch a secret, read again")["task_id"]
    first = agent.request_credential(task_id, "db.read", "demo-data")
    assert first.decision["mode"] == "monitor" and first.decision["detection"] == "post_issuance"
    secret = agent.request_credential(task_id, "secrets.read", "demo-secrets")
    assert secret.decision["mode"] == "inline" and secret.decision["detection"] == "pre_issuance"
    assert not token_is_dead(b.openbao.address, first.secret("token"))

    # the monitor-tier read completes secret_then_read: it is issued (no wait for the chain) ...
    late = agent.request_credential(task_id, "db.read", "demo-data")
    answered = time.perf_counter()
    assert late.issued and late.decision["outcome"] == "allow"
    assert late.decision["detection"] == "post_issuance"
    tokens = [first.secret("token"), late.secret("token")]
    accessors = [secret.fields["accessor"]]  # single use: looked up by accessor, not consumed
    # ... and right after, every grant of the task is dead at OpenBao (a real lookup fails)
    while not _all_dead(checker, tokens, accessors):
        if time.perf_counter() - answered > 10:
            raise AssertionError("grants of the escalated task still alive 10 s after issuance")
    client_ms = (time.perf_counter() - answered) * 1000
    for token in tokens:
        assert token_is_dead(b.openbao.address, token)
    assert accessor_is_dead(b.openbao.address, root, secret.fields["accessor"])

    escalated = wait_until(
        lambda: admin.audit(task_id=task_id, kind="task.escalated"), what="the post-issuance escalation audited"
    )
    data = escalated[0]["data"]
    assert data["detector"] == "dangerous_sequence" and data["rule"] == "secret_then_read"
    assert data["detection"] == "post_issuance"
    assert data["steps"][-1]["ref"] == late.decision["decision_id"]
    assert admin.task(task_id)["task"]["state"] == "quarantined"

    # the broker's own part of the bound, from its audit trail: the grant committed -> OpenBao
    # confirmed the task's revocation (the revocation is audited after OpenBao answered)
    events = admin.audit(task_id=task_id)
    issued = next(
        e for e in events if e["kind"] == "credential.issued" and e["data"]["grant_id"] == late.fields["grant_id"]
    )
    revoked = [e for e in events if e["kind"] == "credential.revoked"]
    assert revoked
    return client_ms, (max(_ts(e) for e in revoked) - _ts(issued)).total_seconds() * 1000


@pytest.mark.openbao
def test_monitor_grant_dies_at_openbao_within_bound_when_a_detector_fires_after_issuance(post_broker: RunningBroker):
    # every trial must kill every grant (asserted inside); the bound is asserted on the best of
    # TRIALS: other sessions' load on this shared machine only ever adds to a trial's time, while
    # a mechanism that waited (for a worker tick, for the next request) would miss it in all
    trials = [_one_trial(post_broker) for _ in range(TRIALS)]
    client_ms = min(c for c, _ in trials)
    broker_ms = min(b for _, b in trials)
    assert broker_ms <= BOUND_MS * MARGIN, f"{trials}: ms from the grant's commit to OpenBao's revocation"
    assert client_ms <= CLIENT_DEADLINE_MS, f"{trials}: ms from the issuing response to every grant dead"


def _ts(event: dict[str, object]) -> datetime:
    raw = datetime.fromisoformat(str(event["ts"]))
    return raw if raw.tzinfo else raw.replace(tzinfo=UTC)


@pytest.mark.openbao
def test_every_decision_records_whether_detection_ran_before_or_after_issuance(post_broker: RunningBroker):
    agent, admin = post_broker.agent(), post_broker.admin()
    task_id = agent.open_task("demo", "one of each")["task_id"]
    monitor = agent.request_credential(task_id, "db.read", "demo-data")
    inline = agent.request_credential(task_id, "secrets.read", "demo-secrets")
    with pytest.raises(CredentialDenied) as refused:  # not in the demo profile: a deny
        agent.request_credential(task_id, "iam.modify", "demo-data")
    denied = refused.value
    assert denied.decision["outcome"] == "deny"
    expected = {
        monitor.decision["decision_id"]: "post_issuance",
        inline.decision["decision_id"]: "pre_issuance",
        denied.decision["decision_id"]: "pre_issuance",  # nothing to issue: checked before, as ever
    }
    for decision_id, detection in expected.items():
        assert admin.decision(decision_id)["detection"] == detection  # explain shows it
    chain = admin.task(task_id)["chain"]
    steps = {s["ref"]: s["decision"]["detection"] for s in chain["steps"] if "decision" in s}
    assert steps == expected  # and the chain view


@pytest.mark.openbao
def test_monitor_in_pre_issuance_denies_the_completing_read_before_anything_is_issued(openbao, tmp_path):
    bundle = bundle_with(tmp_path, detection={"pre_issuance": ["inline", "review", "monitor"]})
    running = start_broker(tmp_path / "broker", openbao, policy_dir=bundle)
    try:
        agent = running.agent()
        task_id = agent.open_task("demo", "checked before issuance")["task_id"]
        agent.request_credential(task_id, "secrets.read", "demo-secrets")
        with pytest.raises(CredentialDenied) as exc:
            agent.request_credential(task_id, "db.read", "demo-data")
        assert exc.value.code == "task_escalated" and "credential" not in exc.value.body
        assert exc.value.decision["detection"] == "pre_issuance"
    finally:
        running.stop()


def test_detection_setting_round_trips_through_the_bundle_loader(tmp_path):
    bundle = bundle_with(tmp_path, detection={"pre_issuance": ["review", "inline", "monitor"]})
    rules = ChainRules(bundle, lambda: {a: None for a in ("db.read", "secrets.read", "data.export")})  # type: ignore[misc]
    assert rules.current.config.detection.pre_issuance == (Mode.REVIEW, Mode.INLINE, Mode.MONITOR)
    default = chain_config.load(DEFAULT_BUNDLE)
    assert default.detection.pre_issuance == (Mode.INLINE, Mode.REVIEW)
    assert not default.detection.before_issuance(Mode.MONITOR)


@pytest.mark.parametrize(
    ("detection", "field", "message"),
    [
        ({"pre_issuance": ["review"]}, "detection.pre_issuance", "must list inline"),
        ({"pre_issuance": ["inline", "sometimes"]}, r"detection.pre_issuance\[1\]", "monitor"),
        ({"pre_issuance": ["inline", "inline"]}, "detection.pre_issuance", "twice"),
        ({"post_issuance": ["monitor"]}, "detection.post_issuance", "Extra inputs"),
    ],
)
def test_detection_setting_is_validated_naming_the_field(detection, field, message):
    with pytest.raises(InvalidInput, match=rf"chain.yaml:{field}.*{message}"):
        chain_config.parse({"detection": detection})
