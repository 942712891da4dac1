"""Wiring of approvals and reviews into the composition root (``Container.build`` calls
:func:`wire`): services, the credential flow, the admin routes, the approval webhook."""

from __future__ import annotations

from typing import Any

from broker.approvals.flow import CredentialFlow
from broker.approvals.reviews import ReviewService
from broker.approvals.service import ApprovalService
from broker.chain.alerts import WebhookAlerter


class _CloseOnStop:
    """Lets the container's ``close`` drain the approval webhook like it stops its workers."""

    def __init__(self, alerter: WebhookAlerter) -> None:
        self.alerter = alerter

    def stop(self) -> None:
        self.alerter.close(timeout=2.0)


def wire(container: Any) -> None:
    from broker.api import routes_approvals

    settings = container.settings
    notify = None
    if settings.approval_webhook_url:
        alerter = WebhookAlerter(
            settings.approval_webhook_url, timeout=settings.alert_webhook_timeout_seconds,
            policy=settings.outbound_policy(), field="approval_webhook_url",
        )
        notify = alerter.send
        container.workers.append(_CloseOnStop(alerter))
    container.approvals = ApprovalService(
        container.store, container.audit, ttl_seconds=settings.approval_ttl_seconds, notify=notify
    )

    def escalate(task_id: str, review_id: str, reason: str) -> dict[str, Any]:
        chain = container.chain_service()
        with chain.lock(task_id):
            report: dict[str, Any] = chain.flag_review(task_id, review_id, reason)
        return report

    container.reviews = ReviewService(container.store, container.audit, escalate)
    container.credential_flow = CredentialFlow(container.tasks, container.approvals, container.reviews)
    container.extra_routers.append(routes_approvals.router)
