"""/readyz runs its checks concurrently under one budget: a hanging OpenBao gives an unready
answer within the budget, not one client timeout per backend (issue 12, section 4)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import httpx
import pytest
from support.broker import start_broker
from support.wait import HTTP_TIMEOUT, wait_until

from tests.chain.tcp_proxy import BlackholeProxy

pytestmark = pytest.mark.openbao

BUDGET = 2.0


def test_readyz_is_unready_within_its_budget_when_openbao_hangs(openbao, tmp_path):
    proxy = BlackholeProxy("127.0.0.1", int(openbao.address.rsplit(":", 1)[1]))
    via_proxy = SimpleNamespace(address=proxy.address, root_token=openbao.root_token)
    running = start_broker(tmp_path / "data", via_proxy, readiness_budget_seconds=BUDGET)  # type: ignore[arg-type]
    check_timeout = running.container.settings.openbao.timeout_seconds
    assert check_timeout > 10 * BUDGET  # each check alone would outlast the budget by far
    try:
        with httpx.Client(base_url=running.url, timeout=HTTP_TIMEOUT) as http:
            ready = http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["backend.vault_token"] == "ok"
            proxy.hold.set()  # OpenBao accepts connections and never answers
            first = http.get("/readyz").json()["checks"]
            assert first["backend.vault_token"] == f"unavailable: no answer within {BUDGET:g}s"
            for _ in range(3):  # repeated probes: in-flight checks are awaited, not started again
                # answered by the budget, never after a check's own client timeout: a probe that
                # waited for one would time out here (a deadline, not a stopwatch: the machine may be busy)
                unready = http.get("/readyz", timeout=check_timeout * 0.9)
                assert unready.status_code == 503
                checks = unready.json()["checks"]
                assert checks["store"] == "ok" and checks["revocations"]["status"] == "ok"
                for kind in ("vault_token", "vault_kv", "postgres"):
                    # no answer within the budget, or (a later probe) the client timeout of a check in flight
                    assert checks[f"backend.{kind}"] in (
                        f"unavailable: no answer within {BUDGET:g}s",
                        f"unavailable: OpenBao at {proxy.address} is unreachable",
                    )
            hanging = [t for t in threading.enumerate() if t.name.startswith("readyz-backend.")]
            backend_checks = [k for k in checks if k.startswith("backend.")]
            assert len(hanging) <= len(backend_checks)  # one thread per check at most, however often probed
            proxy.hold.clear()
            wait_until(lambda: http.get("/readyz").status_code == 200, what="/readyz ready after OpenBao answered")
    finally:
        proxy.hold.clear()
        running.stop()
        proxy.close()
