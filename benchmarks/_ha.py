"""Helpers of the HA benchmarks: start the `up --ha` topology in-process, drive agents through it."""

from __future__ import annotations

import shutil
import statistics
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from broker.identity import DevIssuer  # noqa: E402
from broker.topology.ports import free_block  # noqa: E402
from broker.topology.stack import HAStack  # noqa: E402


@contextmanager
def ha_stack(replicas: int = 3, database_url: str | None = None, port: int | None = None) -> Iterator[HAStack]:
    data_dir = Path("/tmp") / f"nhi-ha-bench-{uuid.uuid4().hex[:8]}"
    stack = HAStack(data_dir=data_dir, port=port or free_block(), replica_count=replicas, database_url=database_url)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


class AgentClient:
    """One agent: a dev-issuer identity and an HTTP client to the load balancer."""

    def __init__(self, stack: HAStack, subject: str = "demo-agent") -> None:
        self.issuer = DevIssuer.load_or_create(stack.data_dir)
        self.subject = subject
        self.url = stack.url
        self.http = httpx.Client(base_url=stack.url, timeout=60)

    def h(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.mint(self.subject)}"}

    def open_task(self) -> httpx.Response:
        return self.http.post("/v1/tasks", headers=self.h(), json={"profile": "demo", "purpose": "bench"})

    def credential(self, task_id: str, action: str, resource: str, approval_id: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"action": action, "resource": resource}
        if approval_id:
            body["approval_id"] = approval_id
        return self.http.post(f"/v1/tasks/{task_id}/credentials", headers=self.h(), json=body)

    def close(self) -> None:
        self.http.close()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values) * 1000, 1) if values else float("nan"),
        "p99_ms": round(pct(values, 99) * 1000, 1),
    }
