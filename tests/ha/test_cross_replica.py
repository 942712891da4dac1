"""Two real ``serve`` replicas on one PostgreSQL and one OpenBao keep the one-process guarantees.

- A task's requests are serialised across replicas (advisory lock per task), so the chain
  detectors see every earlier step whichever replica handled it.
- A grant issued on one replica is known to the other's leak matching (LISTEN/NOTIFY).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hvac
import pytest
from sqlalchemy import create_engine, text
from support.replicas import ReplicaSet, start_replicas

pytestmark = [pytest.mark.ha, pytest.mark.openbao, pytest.mark.postgres, pytest.mark.slow]
TRIALS = 100


@pytest.fixture()
def pair(openbao, fresh_database, tmp_path: Path) -> Iterator[tuple[ReplicaSet, str]]:
    url = fresh_database()
    base = Path("/tmp") / f"nhi-ha-{tmp_path.name}"  # short paths; removed with the replicas
    rs = start_replicas(
        base,
        2,
        database_url=url,
        openbao_addr=openbao.address,
        openbao_token=openbao.root_token.reveal(),
        # only LISTEN/NOTIFY can tell B of A's grant in these tests (no periodic re-read)
        extra_config={"grant_feed_resync_seconds": 3600},
    )
    yield rs, url
    rs.stop()
    import shutil

    shutil.rmtree(base, ignore_errors=True)


def _open_task(client: httpx.Client, rs: ReplicaSet, url: str, purpose: str) -> str:
    r = client.post(f"{url}/v1/tasks", headers=rs.agent_headers(), json={"profile": "demo", "purpose": purpose})
    assert r.status_code == 201, r.text
    return str(r.json()["task_id"])


def _credential(
    client: httpx.Client, rs: ReplicaSet, url: str, task_id: str, action: str, resource: str
) -> httpx.Response:
    return client.post(
        f"{url}/v1/tasks/{task_id}/credentials",
        headers=rs.agent_headers(),
        json={"action": action, "resource": resource},
    )


def _issued(r: httpx.Response) -> bool:
    return r.status_code == 200 and r.json().get("credential") is not None


def _token_alive(addr: str, token: str) -> bool:
    try:
        hvac.Client(url=addr, token=token).auth.token.lookup_self()
        return True
    except hvac.exceptions.Forbidden:
        return False


def test_dangerous_sequence_split_across_two_replicas_never_lets_both_halves_through(pair, openbao) -> None:
    rs, db_url = pair
    a, b = rs.replicas
    engine = create_engine(db_url)
    violations: list[str] = []
    escalated = export_first = 0
    with httpx.Client(timeout=60) as ca, httpx.Client(timeout=60) as cb:
        rs.clients += [ca, cb]
        for i in range(TRIALS):
            task_id = _open_task(ca, rs, a.url, f"trial {i}")
            # mint before the barrier: both requests leave as close together as they can
            ha, hb = rs.agent_headers(), rs.agent_headers()
            barrier = threading.Barrier(2)
            out: dict[str, httpx.Response] = {}

            def read(
                task_id: str = task_id,
                h: dict[str, str] = ha,
                barrier: threading.Barrier = barrier,
                out: dict[str, httpx.Response] = out,
            ) -> None:
                barrier.wait()
                out["read"] = ca.post(
                    f"{a.url}/v1/tasks/{task_id}/credentials",
                    headers=h,
                    json={"action": "secrets.read", "resource": "demo-secrets"},
                )

            def export(
                task_id: str = task_id,
                h: dict[str, str] = hb,
                barrier: threading.Barrier = barrier,
                out: dict[str, httpx.Response] = out,
            ) -> None:
                barrier.wait()
                out["export"] = cb.post(
                    f"{b.url}/v1/tasks/{task_id}/credentials",
                    headers=h,
                    json={"action": "data.export", "resource": "demo-data"},
                )

            threads = [threading.Thread(target=read), threading.Thread(target=export)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            rr, re_ = out["read"], out["export"]
            assert rr.status_code in (200, 202, 403, 409), rr.text
            assert re_.status_code in (200, 202, 403, 409), re_.text
            with engine.connect() as conn:
                order = [
                    row.action
                    for row in conn.execute(
                        text("SELECT action FROM decisions WHERE task_id = :t ORDER BY created_at"), {"t": task_id}
                    )
                ]
            if _issued(rr) and _issued(re_) and order != ["data.export", "secrets.read"]:
                # both halves live, and the read was decided first: the sequence got through
                violations.append(f"{task_id}: both issued, decided in order {order}")
            if re_.status_code == 403 and re_.json()["error"]["code"] == "task_escalated":
                escalated += 1
                # the half that got through is dead at OpenBao: the escalation revoked the task
                assert order == ["secrets.read", "data.export"], order
                if _issued(rr):
                    assert not _token_alive(openbao.address, rr.json()["credential"]["token"]), task_id
                task = ca.get(f"{a.url}/v1/admin/tasks/{task_id}", headers=rs.admin_headers()).json()
                assert task["task"]["state"] == "quarantined", task["task"]
            elif order[:1] == ["data.export"]:
                export_first += 1
            else:
                violations.append(
                    f"{task_id}: read decided first ({order}) and no escalation: "
                    f"{rr.status_code} / {re_.status_code} {re_.text[:200]}"
                )
    engine.dispose()
    print(
        f"\ncross-replica sequence: {TRIALS} trials, {escalated} escalated (read decided first), "
        f"{export_first} export decided first (harmless order), {len(violations)} violations"
    )
    assert violations == []
    assert escalated > 0  # the race was real: the read won at least sometimes


def test_leak_of_a_grant_issued_on_one_replica_is_caught_by_the_other(pair, openbao) -> None:
    rs, _ = pair
    a, b = rs.replicas
    with httpx.Client(timeout=30) as c:
        rs.clients.append(c)
        task_id = _open_task(c, rs, a.url, "leak across replicas")
        r = _credential(c, rs, a.url, task_id, "db.read", "demo-data")
        assert _issued(r), r.text
        token = r.json()["credential"]["token"]
        issued_at = time.monotonic()
        body: dict[str, Any] = {}
        deadline = issued_at + 30
        while time.monotonic() < deadline:
            s = c.post(
                f"{b.url}/v1/scan", headers=rs.agent_headers(), json={"text": f"the tool printed {token} to its log"}
            )
            assert s.status_code == 200, s.text
            body = s.json()
            if body.get("leaks"):
                break
            time.sleep(0.02)
        seen_after = time.monotonic() - issued_at
        print(f"\ngrant issued on replica A matched by replica B's scan after {seen_after * 1000:.0f} ms")
        assert body.get("leaks"), body
        assert body["leaks"][0]["action"] == "task_escalated"
        task = c.get(f"{a.url}/v1/admin/tasks/{task_id}", headers=rs.admin_headers()).json()
        assert task["task"]["state"] == "quarantined"
        assert not _token_alive(openbao.address, token)
