"""Choosing the audit key provider and the checkpoint sinks from the settings (composition only)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from broker.audit.guard import AlertSender, AuditGuard, AuditMetrics
from broker.audit.keys import AuditKey, load_key_file, parse_hex_key
from broker.audit.log import AuditLog
from broker.audit.sinks import build_sinks
from broker.config import AuditSettings


def audit_key(settings: AuditSettings, data_dir: Path, *, create: bool) -> AuditKey:
    """From ``audit.key`` (env ``NHI_BROKER_AUDIT__KEY``) or the key file (``audit.key_file``,
    default ``<data_dir>/audit.key``). ``create`` only for the broker itself, never for verify."""
    value = settings.key.get_secret_value()
    if value:
        return parse_hex_key(value, source="audit.key")
    return load_key_file(settings.key_file or data_dir / "audit.key", create=create)


def build_guard(
    audit: AuditLog, settings: AuditSettings, data_dir: Path, registry: CollectorRegistry, alert: AlertSender | None
) -> AuditGuard:
    """Builds; starts nothing (the runner calls ``start``)."""
    return AuditGuard(
        audit,
        build_sinks(settings.sinks, data_dir),
        AuditMetrics(registry),
        alert=alert,
        checkpoint_interval=settings.checkpoint_interval_seconds,
        verify_interval=settings.verify_interval_seconds,
    )
