"""Plant known secrets, drive the whole flow, and search every log line and stored row for them."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select

from broker.logging import configure_logging
from broker.store import tables as t

pytestmark = pytest.mark.openbao


def test_issued_tokens_and_admin_token_never_appear_in_logs_audit_or_store(broker, capsys):
    configure_logging("json", "DEBUG")
    agent = broker.agent()
    planted: list[str] = [
        broker.openbao.root_token.reveal(),
        "test-admin-token-0123456789abcdef",
        (broker.data_dir / "audit.key").read_text().strip(),
    ]  # the audit key too
    with agent.task("demo", purpose="leak hunt") as task:
        for action, resource in (("db.read", "demo-data"), ("secrets.read", "demo-secrets")):
            planted.append(task.credential(action, resource).secret("token"))
        assert task.credential("payments.charge", "prod-payments").decision["outcome"] == "step_up"
    broker.admin().revoke_task(agent.open_task("demo", "x")["task_id"], reason="test")
    broker.revocation_worker.run_once()

    dumps = []
    with broker.container.store.read() as conn:
        for table in t.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                dumps.append(json.dumps(dict(row._mapping), default=str))
    stored = "\n".join(dumps)
    audit = json.dumps(broker.admin().audit(limit=10000))
    logs = capsys.readouterr()
    haystacks = {"store": stored, "audit": audit, "stdout": logs.out, "stderr": logs.err}
    for secret in planted:
        for where, text in haystacks.items():
            assert secret not in text, f"a planted secret appeared in {where}"
    # and the fingerprints that stand in for them are there
    assert "fingerprints" in stored


def test_redaction_processor_masks_secret_keys_and_values():
    from broker.logging import redact_processor
    from broker.secrets import Secret

    out = redact_processor(
        None,
        "info",
        {
            "event": "x",
            "token": "abc",
            "nested": {"password": "p", "ok": 1},
            "value": Secret("s3cr3t"),
            "accessor": "acc",
        },
    )
    text = json.dumps(out)
    assert "abc" not in text and '"p"' not in text and "s3cr3t" not in text
    assert out["accessor"] == "acc" and out["nested"]["ok"] == 1


def test_secret_type_never_prints():
    from broker.secrets import Secret

    s = Secret("hunter2-very-secret")
    buf = io.StringIO()
    print(s, repr(s), f"{s}", str([s]), file=buf)
    assert "hunter2" not in buf.getvalue()
