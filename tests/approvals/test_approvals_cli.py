"""``nhi-broker approvals list|approve|deny`` and ``reviews list|fine`` against a running broker."""

from __future__ import annotations

import pytest
from support.broker import ADMIN_TOKEN
from typer.testing import CliRunner

from broker.cli.main import app

pytestmark = pytest.mark.openbao


@pytest.fixture()
def cli(approvals_broker):
    runner = CliRunner()
    env = {"NHI_BROKER_ADDR": approvals_broker.url, "NHI_BROKER_ADMIN_TOKEN": ADMIN_TOKEN}
    return lambda *args: runner.invoke(app, list(args), env=env)


def test_cli_lists_pending_approvals_refuses_the_owner_alone_and_approves(api, cli):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    listed = cli("approvals", "list")
    assert listed.exit_code == 0 and approval_id in listed.output and "payments.charge" in listed.output

    owner = cli("approvals", "approve", approval_id, "--approver", "demo-owner", "--reason", "mine")
    assert owner.exit_code == 1 and "four_eyes_required" in owner.output
    ok = cli("approvals", "approve", approval_id, "--approver", "frank", "--reason", "invoice 42")
    assert ok.exit_code == 0 and "approved" in ok.output
    assert approval_id not in cli("approvals", "list").output
    assert api.credential(task_id, "payments.charge", "prod-payments", approval_id).status_code == 200


def test_cli_denies_and_resolves_reviews(api, cli):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    denied = cli("approvals", "deny", approval_id, "--approver", "grace", "--reason", "unexpected", "--json")
    assert denied.exit_code == 0 and '"state": "denied"' in denied.output
    assert api.credential(task_id, "payments.charge", "prod-payments", approval_id).status_code == 403

    assert api.credential(task_id, "db.write", "demo-data").status_code == 200
    [review] = api.admin("GET", "/v1/reviews", params={"task_id": task_id}).json()["items"]
    assert review["review_id"] in cli("reviews", "list").output
    fine = cli("reviews", "fine", review["review_id"], "--reviewer", "dana", "--reason", "ok")
    assert fine.exit_code == 0 and "fine" in fine.output
