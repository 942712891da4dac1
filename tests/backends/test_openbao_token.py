"""Child tokens under a per-task parent, against a real OpenBao dev server: the pooled request
path client (``OpenBaoHTTP.call``) and its error translation."""

from __future__ import annotations

import uuid

import hvac
import pytest
from support.backend_requests import make_request, make_resource, make_task

from broker.backends.openbao_http import OpenBaoHTTP, PermissionDenied
from broker.backends.openbao_token import OpenBaoTokenBackend
from broker.errors import NotFound, UpstreamError, UpstreamUnavailable
from broker.secrets import Secret

pytestmark = pytest.mark.openbao


@pytest.fixture
def backend(openbao_http: OpenBaoHTTP) -> OpenBaoTokenBackend:
    with openbao_http.client() as c:
        c.sys.create_or_update_acl_policy(name="nhi-test-read", policy='path "secret/*" { capabilities = ["read"] }')
    b = OpenBaoTokenBackend(openbao_http)
    b.bootstrap()
    return b


def _lookup(addr: str, token: str) -> dict:
    return hvac.Client(url=addr, token=token).auth.token.lookup_self()["data"]


def test_child_token_carries_the_resource_policy_and_lives_under_the_task_parent(backend, openbao):
    resource = make_resource("vault_token", backend.validate_settings({"vault": {"policies": ["nhi-test-read"]}}))
    task = make_task()
    handles: list[dict] = []
    cred = backend.issue(make_request(resource, "db.read", task=task, persist_handle=handles.append))
    info = _lookup(openbao.address, cred.secrets["token"].reveal())
    assert "nhi-test-read" in info["policies"] and info["meta"]["nhi_task"] == task.task_id
    assert handles and handles[0]["kind"] == "task-parent"  # written before the child existed
    backend.revoke({"accessor": handles[0]["accessor"], "kind": "task-parent"})
    with pytest.raises(hvac.exceptions.Forbidden):
        _lookup(openbao.address, cred.secrets["token"].reveal())


def test_a_parent_revoked_behind_the_brokers_back_fails_one_request_then_a_new_parent_serves(backend, openbao):
    resource = make_resource("vault_token", backend.validate_settings({"vault": {"policies": ["nhi-test-read"]}}))
    task = make_task()
    handles: list[dict] = []
    backend.issue(make_request(resource, "db.read", task=task, persist_handle=handles.append))
    hvac.Client(url=openbao.address, token=openbao.root_token.reveal()).auth.token.revoke_accessor(
        handles[0]["accessor"]
    )
    with pytest.raises(UpstreamError, match="permission denied"):
        backend.issue(make_request(resource, "db.read", task=task, persist_handle=handles.append))
    cred = backend.issue(make_request(resource, "db.read", task=task, persist_handle=handles.append))
    assert len(handles) == 2 and handles[1]["accessor"] != handles[0]["accessor"]
    assert _lookup(openbao.address, cred.secrets["token"].reveal())["meta"]["nhi_task"] == task.task_id


def test_call_translates_openbao_errors_into_the_broker_tree(openbao_http: OpenBaoHTTP):
    with pytest.raises(NotFound):
        openbao_http.call("GET", f"/v1/secret/data/nothing-{uuid.uuid4().hex}")
    with pytest.raises(PermissionDenied, match="permission denied"):
        openbao_http.call("POST", "/v1/auth/token/create", token=Secret("not-a-token"), body={"ttl": "60s"})
    down = OpenBaoHTTP("http://127.0.0.1:9", Secret("x"), timeout=2)
    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        down.call("GET", "/v1/sys/health")
