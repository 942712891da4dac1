"""A task that escalates while one of its credentials is being issued loses that credential too.

The race: a request has passed its checks and is at OpenBao when the task escalates elsewhere
(another replica, the scanner, an administrator); the escalation revokes every grant recorded so
far, and the one being issued is not recorded yet. The grant's own write transaction reads the
task's state (under a share lock on PostgreSQL) and, finding it no longer active, the request
revokes the task's grants again after its commit, the new one included. Real OpenBao; the
escalation is made to land exactly in the window, from inside the backend call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.broker import RunningBroker, start_broker

from tests.chain.conftest import accessor_is_dead

pytestmark = pytest.mark.openbao


@pytest.fixture()
def racing_broker(openbao, tmp_path) -> Iterator[RunningBroker]:
    running = start_broker(tmp_path, openbao)
    yield running
    running.stop()


def test_a_grant_issued_while_the_task_escalated_is_revoked(racing_broker: RunningBroker) -> None:
    b = racing_broker
    container = b.container
    agent = b.agent()
    task_id = agent.open_task("demo", "escalated while issuing")["task_id"]
    backend = container.tasks.backends["vault_kv"]
    real_issue = backend.issue
    escalated: list[Any] = []

    def issue_then_escalate(request: Any) -> Any:
        credential = real_issue(request)  # live at OpenBao, not yet recorded by the broker
        escalated.append(
            container.chain.escalate_task(
                task_id, detector="admin_revoke", reason="escalated mid-issue", actor="test", steps=[]
            )
        )
        return credential

    backend.issue = issue_then_escalate  # type: ignore[method-assign]
    try:
        cred = agent.request_credential(task_id, "secrets.read", "demo-kv")
    finally:
        backend.issue = real_issue  # type: ignore[method-assign]
    assert escalated and escalated[0].task_state.value == "quarantined"
    # the escalation itself could not see the grant: it was revoked by the request after its commit
    root = b.openbao.root_token.reveal()
    assert accessor_is_dead(b.openbao.address, root, cred.fields["wrapping_accessor"])
    revoked = b.admin().audit(task_id=task_id, kind="task.revoked")
    assert any("issued while the task became quarantined" in e["data"]["reason"] for e in revoked), revoked
    # and the wrapped secret cannot be unwrapped
    import hvac

    with pytest.raises(hvac.exceptions.VaultError):
        hvac.Client(url=b.openbao.address).sys.unwrap(cred.secret("wrapping_token"))
