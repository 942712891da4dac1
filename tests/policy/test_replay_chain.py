"""Replay reproduces the chain detectors' decisions from the recorded chain (issue 12, section 4):
an unchanged bundle reports 0 changes over a store where ``burst``, ``dangerous_sequence`` and
``ceiling_exceeded`` fired; a candidate ``chain.yaml`` changes exactly what it should."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from broker.chain import config as chain_config
from broker.chain.replay import ChainReplay
from broker.cli.main import app
from broker.client import CredentialDenied
from broker.identity.dev_issuer import DEV_ISSUER
from broker.policy import CedarDecisionEngine, load_bundle
from broker.policy.replay import replay
from policies import DEFAULT_BUNDLE

pytestmark = pytest.mark.openbao


def _denied_by(agent, task_id: str, action: str, resource: str) -> str:
    with pytest.raises(CredentialDenied) as exc:
        agent.request_credential(task_id, action, resource)
    return str(exc.value.decision["decision_id"])


@pytest.fixture(scope="module")
def chain_traffic(broker) -> dict[str, str]:
    """Decisions the chain detectors changed, in the broker's store: decision ids by detector."""
    admin = broker.admin()
    admin.put("profiles", "low-ceiling", {"allowed_actions": ["db.read", "secrets.read"], "ceiling": "medium"})
    admin.put(
        "agents",
        "demo-agent",
        {
            "owner": "demo-owner",
            "profiles": ["demo", "low-ceiling"],
            "identities": [{"issuer": DEV_ISSUER, "subject": "demo-agent"}],
        },
    )
    agent = broker.agent()
    ids: dict[str, str] = {}
    burst = agent.open_task("demo", "burst")["task_id"]
    for _ in range(5):
        agent.request_credential(burst, "payments.charge", "prod-payments")  # step-up (critical)
    ids["burst"] = _denied_by(agent, burst, "payments.charge", "prod-payments")
    sequence = agent.open_task("demo", "secret then export")["task_id"]
    agent.request_credential(sequence, "secrets.read", "demo-secrets")
    ids["dangerous_sequence"] = _denied_by(agent, sequence, "data.export", "demo-data")
    ceiling = agent.open_task("low-ceiling", "above its ceiling")["task_id"]
    agent.request_credential(ceiling, "db.read", "demo-data")
    ids["ceiling_exceeded"] = _denied_by(agent, ceiling, "secrets.read", "demo-secrets")
    # a sequence completed by a reported tool call (an event, not a decision) quarantines the task
    by_event = agent.open_task("demo", "reads then reports an export")["task_id"]
    agent.request_credential(by_event, "secrets.read", "demo-secrets")
    body = agent.report_event(by_event, "tool_call", action="data.export", resource="demo-data")
    assert body["escalation"]["detector"] == "dangerous_sequence"
    plain = agent.open_task("demo", "nothing special")["task_id"]
    agent.request_credential(plain, "db.read", "demo-data")
    agent.end_task(plain)
    return ids


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, ["policy", "replay", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _changed(output: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s+(dec_[0-9a-f]+)\s.*: (\S+)", output, re.MULTILINE)}


def test_store_replay_of_the_unchanged_bundle_reproduces_every_chain_decision(broker, chain_traffic):
    output = _run("--bundle", str(DEFAULT_BUNDLE), "--data-dir", str(broker.data_dir), "--fail-on-change")
    assert re.search(r"replayed \d+: 0 changed", output), output


def test_store_replay_with_since_still_sees_the_earlier_chain(broker, chain_traffic):
    with broker.container.store.read() as conn:
        decision = broker.container.store.decisions(conn, limit=100000)
    burst_row = next(r for r in decision if r.decision_id == chain_traffic["burst"])
    output = _run(
        "--bundle",
        str(DEFAULT_BUNDLE),
        "--data-dir",
        str(broker.data_dir),
        "--since",
        burst_row.created_at.isoformat() + ("" if burst_row.created_at.tzinfo else "+00:00"),
    )
    assert re.search(r"replayed \d+: 0 changed", output), output


def _candidate(tmp_path: Path, **detectors: object) -> Path:
    bundle = tmp_path / "candidate"
    shutil.copytree(DEFAULT_BUNDLE, bundle, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    raw = yaml.safe_load((bundle / "chain.yaml").read_text())
    raw["detectors"].update(detectors)
    (bundle / "chain.yaml").write_text(yaml.safe_dump(raw))
    return bundle


def test_a_candidate_chain_config_changes_exactly_the_decisions_it_should(broker, chain_traffic, tmp_path):
    looser = _candidate(tmp_path, burst={"enabled": True, "max_requests": 10, "window_seconds": 60, "min_tier": "high"})
    changed = _changed(_run("--bundle", str(looser), "--data-dir", str(broker.data_dir)))
    assert set(changed) == {chain_traffic["burst"]}  # the sixth request would now wait for approval
    assert changed[chain_traffic["burst"]].startswith("deny→step_up")


def test_jsonl_replay_rebuilds_the_chain_from_the_records_in_the_file(broker, chain_traffic):
    with broker.container.store.read() as conn:
        records = [dict(r.record) for r in broker.container.store.decisions(conn, limit=100000)]
    bundle = load_bundle(DEFAULT_BUNDLE)
    engine = CedarDecisionEngine(bundle)
    without_chain = replay(records, engine)
    assert chain_traffic["burst"] in {c.decision_id for c in without_chain.changes}  # the old behaviour
    chain = ChainReplay(chain_config.load(DEFAULT_BUNDLE, catalog=bundle.catalog))
    with_chain = replay(records, engine, chain=chain)
    assert with_chain.changes == () and with_chain.replayed == len(records)


def test_replay_shows_when_a_candidate_moves_monitor_decisions_before_issuance(broker, chain_traffic, tmp_path):
    bundle = _candidate(tmp_path)
    raw = yaml.safe_load((bundle / "chain.yaml").read_text())
    raw["detection"] = {"pre_issuance": ["inline", "review", "monitor"]}
    (bundle / "chain.yaml").write_text(yaml.safe_dump(raw))
    output = _run("--bundle", str(bundle), "--data-dir", str(broker.data_dir))
    changed = _changed(output)
    assert changed and set(changed.values()) == {"detection"}, output  # nothing else differs
    assert "detection post_issuance→pre_issuance" in output
    with broker.container.store.read() as conn:
        records = {r.decision_id: r.record for r in broker.container.store.decisions(conn, limit=100000)}
    assert {records[d]["mode"] for d in changed} == {"monitor"}
    assert all(records[d]["detection"] == "post_issuance" for d in changed)
