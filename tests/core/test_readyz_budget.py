"""/readyz runs its checks concurrently under one budget: a hanging OpenBao gives an unready
answer within the budget, not one client timeout per backend (issue 12, section 4)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import httpx
import pytest
from support.broker import start_broker

from tests.chain.tcp_proxy import BlackholeProxy

pytestmark = pytest.mark.openbao

BUDGET = 2.0
TOLERANCE = 3.0  # holds on a loaded machine; the old sequential checks took 3 x 5 s


def test_readyz_is_unready_within_its_budget_when_openbao_hangs(openbao, tmp_path):
    proxy = BlackholeProxy("127.0.0.1", int(openbao.address.rsplit(":", 1)[1]))
    via_proxy = SimpleNamespace(address=proxy.address, root_token=openbao.root_token)
    running = start_broker(tmp_path / "data", via_proxy, readiness_budget_seconds=BUDGET)  # type: ignore[arg-type]
    assert running.container.settings.openbao.timeout_seconds > BUDGET  # each check alone would outlast it
    try:
        with httpx.Client(base_url=running.url, timeout=60) as http:
            ready = http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["backend.vault_token"] == "ok"
            proxy.hold.set()  # OpenBao accepts connections and never answers
            first = http.get("/readyz").json()["checks"]
            assert first["backend.vault_token"] == f"unavailable: no answer within {BUDGET:g}s"
            for _ in range(3):  # repeated probes: in-flight checks are awaited, not started again
                started = time.monotonic()
                unready = http.get("/readyz")
                took = time.monotonic() - started
                assert unready.status_code == 503
                checks = unready.json()["checks"]
                assert checks["store"] == "ok" and checks["revocations"]["status"] == "ok"
                for kind in ("vault_token", "vault_kv", "postgres"):
                    # no answer within the budget, or (a later probe) the client timeout of a check in flight
                    assert checks[f"backend.{kind}"] in (f"unavailable: no answer within {BUDGET:g}s",
                                                         f"unavailable: OpenBao at {proxy.address} is unreachable")
                assert took < BUDGET + TOLERANCE, f"/readyz took {took:.1f}s with a {BUDGET}s budget"
            hanging = [t for t in threading.enumerate() if t.name.startswith("readyz-backend.")]
            assert len(hanging) <= 3  # at most one thread per check, however often it is probed
            proxy.hold.clear()
            deadline = time.monotonic() + 30
            while http.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "/readyz did not recover after OpenBao answered again"
                time.sleep(0.1)
    finally:
        proxy.hold.clear()
        running.stop()
        proxy.close()
