"""``nhi-broker people ...`` against a running broker: an admin creates a person and their token
(printed once, alone on stdout), the person acts with it from NHI_BROKER_PERSON_TOKEN, the admin
revokes it and it stops working."""

from __future__ import annotations

import re

import pytest
from support.broker import ADMIN_TOKEN
from typer.testing import CliRunner

from broker.cli.main import app

pytestmark = pytest.mark.openbao


@pytest.fixture()
def cli(approvals_broker):
    runner = CliRunner()

    def run(*args, person_token=""):
        env = {
            "NHI_BROKER_ADDR": approvals_broker.url,
            "NHI_BROKER_ADMIN_TOKEN": ADMIN_TOKEN,
            "NHI_BROKER_PERSON_TOKEN": person_token,
        }
        return runner.invoke(app, list(args), env=env)

    return run


def test_cli_creates_a_person_and_a_token_that_acts_as_them_until_revoked(api, cli):
    made = cli("people", "put", "frank", "--role", "approver", "--display-name", "Frank")
    assert made.exit_code == 0 and "frank  roles: approver" in made.output
    created = cli("people", "token", "create", "frank", "--ttl", "2h", "--description", "cli test")
    assert created.exit_code == 0, created.output
    # the token alone on its line of stdout (the in-process broker of the test logs there too)
    token = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"nbp_[0-9a-f]{24}_[A-Za-z0-9_-]{43}", token)

    me = cli("people", "whoami", person_token=token)
    assert me.exit_code == 0 and '"actor": "person:frank"' in me.output

    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    ok = cli("approvals", "approve", approval_id, "--reason", "cli", person_token=token)
    assert ok.exit_code == 0 and "approved" in ok.output

    listed = cli("people", "token", "list", "frank")
    [line] = [x for x in listed.output.splitlines() if "active" in x]
    token_id = line.split()[0]
    assert token not in listed.output and token[len("nbp_") + 25 :] not in listed.output
    assert cli("people", "token", "revoke", "frank", token_id).exit_code == 0
    after = cli("people", "whoami", person_token=token)
    assert after.exit_code == 1 and "revoked" in after.output
    # a person without the admin role cannot administer people through the CLI
    other = api.admin("POST", "/v1/admin/people/alice/tokens", {"ttl_seconds": 3600}).json()["token"]
    refused = cli("people", "put", "mallory", "--role", "admin", person_token=other)
    assert refused.exit_code == 1 and "role_required" in refused.output
    bad = cli("people", "token", "create", "frank", "--ttl", "forever")
    assert bad.exit_code == 1 and "--ttl" in bad.output
