"""The registry cache of each process honours an admin change made on another process (issue 14).

Two real ``serve`` processes on one PostgreSQL database: both have the demo profile and resource
in their in-process cache; an admin changes them through one; the other's very next request
sees the change (the version counter is read with the task, so there is no window to wait out).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import hvac
import pytest
from support.replicas import ReplicaSet, start_replicas

pytestmark = [pytest.mark.ha, pytest.mark.openbao, pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture()
def pair(openbao, fresh_database, tmp_path: Path) -> Iterator[ReplicaSet]:
    base = Path("/tmp") / f"nhi-cache-{tmp_path.name}"
    rs = start_replicas(
        base,
        2,
        database_url=fresh_database(),
        openbao_addr=openbao.address,
        openbao_token=openbao.root_token.reveal(),
    )
    yield rs
    rs.stop()
    shutil.rmtree(base, ignore_errors=True)


def _task(c: httpx.Client, rs: ReplicaSet, url: str) -> str:
    r = c.post(f"{url}/v1/tasks", headers=rs.agent_headers(), json={"profile": "demo", "purpose": "cache"})
    assert r.status_code == 201, r.text
    return str(r.json()["task_id"])


def _credential(c: httpx.Client, rs: ReplicaSet, url: str, task: str, action: str, resource: str) -> httpx.Response:
    return c.post(
        f"{url}/v1/tasks/{task}/credentials",
        headers=rs.agent_headers(),
        json={"action": action, "resource": resource},
    )


def test_profile_change_on_one_process_is_honoured_by_the_other_on_its_next_request(pair: ReplicaSet):
    a, b = (r.url for r in pair.replicas)
    with httpx.Client(timeout=30) as c:
        tasks = {url: _task(c, pair, url) for url in (a, b)}
        for url in (a, b):  # both processes now hold the profile and resource in their cache
            r = _credential(c, pair, url, tasks[url], "db.read", "demo-data")
            assert r.status_code == 200, r.text
        profile = c.get(f"{a}/v1/admin/profiles/demo", headers=pair.admin_headers()).json()
        body = {k: profile[k] for k in ("allowed_actions", "ceiling", "max_lifetime_seconds", "description")}
        body["allowed_actions"] = [x for x in body["allowed_actions"] if x != "db.read"]
        r = c.put(f"{a}/v1/admin/profiles/demo", headers=pair.admin_headers(), json=body)
        assert r.status_code == 200, r.text
        r = _credential(c, pair, b, tasks[b], "db.read", "demo-data")
        assert r.status_code == 403, r.text
        assert "db.read" in r.text


def test_resource_change_on_one_process_is_honoured_by_the_other_on_its_next_request(pair: ReplicaSet, openbao):
    a, b = (r.url for r in pair.replicas)
    with httpx.Client(timeout=30) as c:
        task = _task(c, pair, b)
        r = _credential(c, pair, b, task, "db.read", "demo-data")
        assert r.status_code == 200, r.text
        resource = c.get(f"{a}/v1/admin/resources/demo-data", headers=pair.admin_headers()).json()
        assert resource["vault"]["policies"] == ["nhi-demo-data"]
        body = {k: resource[k] for k in ("kind", "sensitivity", "environment", "description") if k in resource}
        body["vault"] = {"policies": ["nhi-demo-secrets"]}
        r = c.put(f"{a}/v1/admin/resources/demo-data", headers=pair.admin_headers(), json=body)
        assert r.status_code == 200, r.text
        r = _credential(c, pair, b, task, "db.read", "demo-data")
        assert r.status_code == 200, r.text
        token = r.json()["credential"]["token"]
        info = hvac.Client(url=openbao.address, token=token).auth.token.lookup_self()["data"]
        assert "nhi-demo-secrets" in info["policies"] and "nhi-demo-data" not in info["policies"]
