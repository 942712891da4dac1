"""``nhi-broker approvals list|approve|deny`` and ``reviews list|fine`` against a running broker."""

from __future__ import annotations

import pytest
from support.broker import ADMIN_TOKEN
from typer.testing import CliRunner

from broker.cli.main import app

pytestmark = pytest.mark.openbao


@pytest.fixture()
def cli(approvals_broker, people):
    """``cli(person, *args)``: the person's token in NHI_BROKER_PERSON_TOKEN (None: the admin token)."""
    runner = CliRunner()

    def run(person, *args):
        env = {
            "NHI_BROKER_ADDR": approvals_broker.url,
            "NHI_BROKER_ADMIN_TOKEN": ADMIN_TOKEN,
            "NHI_BROKER_PERSON_TOKEN": people.tokens[person] if person else "",
        }
        return runner.invoke(app, list(args), env=env)

    return run


def test_cli_lists_pending_approvals_refuses_the_owner_and_approves_as_the_person_of_the_token(api, cli):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    listed = cli("audra", "approvals", "list")
    assert listed.exit_code == 0 and approval_id in listed.output and "payments.charge" in listed.output

    owner = cli("demo-owner", "approvals", "approve", approval_id, "--reason", "mine")
    assert owner.exit_code == 1 and "four_eyes_required" in owner.output
    # no flag names the approver any more
    typed = cli("alice", "approvals", "approve", approval_id, "--approver", "frank", "--reason", "x")
    assert typed.exit_code != 0 and "--approver" in typed.output
    # without a person token there is nobody to approve as
    nobody = cli(None, "approvals", "approve", approval_id, "--reason", "invoice 42")
    assert nobody.exit_code == 1 and "NHI_BROKER_PERSON_TOKEN" in nobody.output
    ok = cli("alice", "approvals", "approve", approval_id, "--reason", "invoice 42")
    assert ok.exit_code == 0 and "approved" in ok.output and "person:alice" in ok.output
    assert approval_id not in cli(None, "approvals", "list").output
    assert api.credential(task_id, "payments.charge", "prod-payments", approval_id).status_code == 200


def test_cli_denies_and_resolves_reviews(api, cli):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    denied = cli("bob", "approvals", "deny", approval_id, "--reason", "unexpected", "--json")
    assert denied.exit_code == 0 and '"state": "denied"' in denied.output
    assert api.credential(task_id, "payments.charge", "prod-payments", approval_id).status_code == 403

    assert api.credential(task_id, "db.write", "demo-data").status_code == 200
    [review] = api.admin("GET", "/v1/reviews", params={"task_id": task_id}).json()["items"]
    assert review["review_id"] in cli("dana", "reviews", "list").output
    fine = cli("dana", "reviews", "fine", review["review_id"], "--reason", "ok")
    assert fine.exit_code == 0 and "fine" in fine.output
    view = api.admin("GET", f"/v1/reviews/{review['review_id']}").json()
    assert (view["state"], view["reviewer"]) == ("fine", "person:dana")
