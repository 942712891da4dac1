"""Prometheus metrics (a private registry per container, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "nhi_http_request_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )
        self.decisions = Counter(
            "nhi_decisions_total", "Decisions by outcome and tier", ["outcome", "tier", "mode"], registry=self.registry
        )
        self.issued = Counter("nhi_credentials_issued_total", "Credentials issued", ["backend"], registry=self.registry)
        self.escalations = Counter(
            "nhi_task_escalations_total", "Task escalations", ["detector"], registry=self.registry
        )
        self.revocations_pending = Gauge(
            "nhi_revocations_pending", "Revocations not yet confirmed", registry=self.registry
        )
        self.revocation_oldest = Gauge(
            "nhi_revocations_oldest_pending_seconds", "Age of the oldest pending revocation", registry=self.registry
        )

    @staticmethod
    def route_of(path: str) -> str:
        """The path with its ids replaced, so labels (and log lines) do not grow with traffic."""
        return "/".join(
            "{id}" if part.startswith(("tsk_", "dec_", "grt_", "apr_")) else part for part in path.split("/")
        )

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        self.requests.labels(method, self.route_of(path), str(status)).observe(seconds)

    def refresh(self, backlog: tuple[int, float | None]) -> None:
        """``backlog``: (pending revocations, age of the oldest) from the health service."""
        pending, oldest = backlog
        self.revocations_pending.set(pending)
        self.revocation_oldest.set(oldest or 0)
