"""The composition root: the one place that picks adapters and wires services.

``Container.build(settings)`` migrates the store, loads the policy bundle, connects the
backends and returns an object the API, the CLI and the background workers share.
"""

from __future__ import annotations

import secrets as _secrets
import threading
import time as _time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from broker.audit import AuditLog
from broker.backends._openbao_http import OpenBaoHTTP
from broker.backends.openbao_token import OpenBaoTokenBackend
from broker.backends.port import CredentialBackend
from broker.chain import config as chain_config
from broker.chain.alerts import WebhookAlerter
from broker.chain.service import ChainService
from broker.chain.view import chain_view
from broker.config import Settings
from broker.errors import BrokerError, InvalidInput, NotFound
from broker.logging import get_logger
from broker.metrics import Metrics
from broker.models import Agent, Task, TaskState
from broker.policy import PolicyHolder
from broker.secrets import Fingerprinter, Secret
from broker.services.auth_failures import AuthFailureLog
from broker.services.authn import AgentAuthenticator
from broker.services.registry import RegistryService
from broker.services.revocation import RevocationService
from broker.services.tasks import CredentialResult, TaskService
from broker.store import outbox
from broker.store.db import make_engine, migrate
from broker.store.repo import Store, aware, utcnow

log = get_logger("nhi-broker")


def load_or_create_key(path: Path) -> bytes:
    """A 32-byte key kept in a 0600 file under the data dir (created on first use)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = path.open("x")
        path.chmod(0o600)
        with fd:
            fd.write(_secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


class StoreReplayGuard:
    """Replay guard shared by every replica: a jti is recorded once in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def check_and_record(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        return self.store.record_jti(issuer, jti, expires_at)


@dataclass
class Container:
    settings: Settings
    store: Store
    audit: AuditLog
    fingerprint: Fingerprinter
    backends: dict[str, CredentialBackend]
    registry: RegistryService
    tasks: TaskService
    revocations: RevocationService
    authenticator: AgentAuthenticator
    metrics: Metrics
    engine_holder: Any
    chain: ChainService | None = None
    scanning: Any = None  # broker.services.scanning.ScanService
    approvals: Any = None  # broker.approvals.ApprovalService (step-up approvals)
    reviews: Any = None  # broker.approvals.ReviewService (post-action review queue)
    credential_flow: Any = None  # broker.approvals.flow.CredentialFlow
    rotation: Any = None  # rotation.service.RotationService (static secrets the broker rotates)
    scans: Any = None  # rotation.scans.ScanService (scheduled leak scans, issue 7)
    extra_routers: list[Any] = field(default_factory=list)
    workers: list[Any] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def build(cls, settings: Settings) -> Container:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url())
        migrate(engine)
        store = Store(engine)
        audit = AuditLog(store)
        key = (bytes.fromhex(settings.fingerprint_key.get_secret_value())
               if settings.fingerprint_key.get_secret_value()
               else load_or_create_key(settings.data_dir / "fingerprint.key"))
        fingerprint = Fingerprinter(key)
        holder = PolicyHolder.load(settings.policy_dir)  # a bad bundle stops start-up (file:line)
        http = OpenBaoHTTP(settings.openbao.addr, Secret(settings.openbao.token.get_secret_value()),
                           timeout=settings.openbao.timeout_seconds)
        token_backend = OpenBaoTokenBackend(http)
        token_backend.bootstrap()
        backends = _build_backends(settings, http, token_backend, fingerprint)
        revocations = RevocationService(store, audit, backends)
        metrics = Metrics()
        tasks = TaskService(store, audit, holder.engine, holder.catalog, backends, revocations, fingerprint)
        registry = RegistryService(store, audit, backends, holder.catalog)
        authenticator = AgentAuthenticator(_build_verifier(settings, store), store, audit, AuthFailureLog(
            audit, interval_seconds=settings.limits.auth_failed_audit_interval_seconds))
        container = cls(settings=settings, store=store, audit=audit, fingerprint=fingerprint, backends=backends,
                        registry=registry, tasks=tasks, revocations=revocations, authenticator=authenticator,
                        metrics=metrics, engine_holder=holder)
        container.wire_chain()
        container.scanning = _build_scanning(container, key)
        tasks.on_issued.append(container.scanning.on_issued)
        _wire_approvals(container)
        _wire_rotation(container, http)
        _wire_scans(container)
        return container

    def handle_leak(self, match: Any, fingerprint: str, source: str) -> dict[str, Any]:
        """A broker-issued secret was seen in ``source``: an incident. While its grant is active, the
        grant is revoked and its task escalated (detector ``leaked_secret``) through the chain."""
        with self.store.read() as conn:
            grant = self.store.get_grant(conn, match.grant_id)
            task = self.store.get_task(conn, match.task_id)
        active = grant is not None and grant["state"] == "active"
        self.audit.record("finding.leaked_grant", actor=source, task_id=match.task_id,
                          outcome="escalating" if active else "already_inactive",
                          data={"grant_id": match.grant_id, "agent": match.agent, "fingerprint": fingerprint,
                                "source": source})
        if not active:
            return {"action": "none"}
        if task is not None and task.state is TaskState.ACTIVE:
            chain = self.chain_service()
            with chain.lock(match.task_id):
                chain.report_leak(match.task_id, match.grant_id, {"source": source, "fingerprint": fingerprint})
            return {"action": "task_escalated"}
        assert grant is not None  # active implies found
        self.revocations.revoke_grant(grant, reason=f"leaked in {source}", actor="broker")
        return {"action": "grant_revoked"}

    def wire_chain(self) -> None:
        """Chain detectors (``chain.yaml`` of the policy bundle) into the request flow."""
        holder = self.engine_holder
        alerter = (WebhookAlerter(self.settings.alert_webhook_url,
                                  timeout=self.settings.alert_webhook_timeout_seconds,
                                  policy=self.settings.outbound_policy())
                   if self.settings.alert_webhook_url else None)
        self.chain = ChainService(
            self.store, self.audit, self.revocations,
            chain_config.load(self.settings.policy_dir, catalog=holder.catalog()), holder.catalog,
            self.fingerprint, alerter=alerter,
            on_escalated=lambda detector: self.metrics.escalations.labels(detector).inc())
        self.tasks.chain_guard = self.chain
        self.tasks.on_issued.append(self.chain.after_issue)

    def chain_service(self) -> ChainService:
        if self.chain is None:
            raise BrokerError("the chain service is not wired")
        return self.chain

    # -- request flow ---------------------------------------------------------------------------
    def credentials(self, agent: Agent, task_id: str, action: str, resource: str,
                    approval_id: str | None = None) -> CredentialResult:
        """Decide and issue; step-up approvals are opened, checked and consumed by the credential
        flow (broker.approvals.flow); an error looking an approval up never yields a credential."""
        with self.chain_service().lock(task_id):  # one request of a task at a time through the detectors
            result: CredentialResult = self.credential_flow.request(agent, task_id, action, resource,
                                                                    approval_id)
        self.metrics.decisions.labels(result.decision.outcome.value, result.decision.tier.value,
                                      result.decision.mode.value).inc()
        if result.credential is not None:
            self.metrics.issued.labels(result.credential.kind).inc()
        return result

    def report_unwrap_failure(self, agent: Agent, task_id: str, grant_id: str) -> dict[str, Any]:
        """The agent says unwrapping its wrapped secret failed. If nobody but the agent could have
        unwrapped it (not revoked, not expired, no longer pending), someone intercepted it: the
        credential was tampered with — audited and the task escalated (``unwrap_tampered``)."""
        task = self.tasks.task_for(agent, task_id)
        with self.store.read() as conn:
            grant = self.store.get_grant(conn, grant_id)
        if grant is None or grant["task_id"] != task.task_id:
            raise NotFound(f'grant "{grant_id}" of task "{task_id}" not found')
        backend = self.backends.get(grant["backend"])
        judge = getattr(backend, "judge_unwrap_failure", None)
        if judge is None:
            raise InvalidInput("grant_id", f'grant "{grant_id}" is not a wrapped secret (backend {grant["backend"]})')
        expires_at = aware(grant["expires_at"])
        assert expires_at is not None
        verdict = str(judge(grant["revocation"], expires_at=expires_at, revoked=grant["state"] == "revoked"))
        body: dict[str, Any] = {"grant_id": grant_id, "verdict": verdict, "escalation": None}
        if verdict == "tampered":
            self.audit.record("credential.tampered", actor=agent.name, task_id=task_id, outcome="tampered",
                              data={"grant_id": grant_id, "backend": grant["backend"],
                                    "wrapping_accessor": grant["accessor"]})
            if task.state is TaskState.ACTIVE:
                body["escalation"] = self.escalate(
                    task_id, detector="unwrap_tampered", actor=agent.name, steps=[grant_id],
                    reason=f"the wrapped secret of grant {grant_id} was unwrapped by someone else")
            # the secret itself is now in unknown hands: rotate it when the broker manages it
            body["rotated"] = self._rotate_managed(grant["fingerprints"] or [], actor=agent.name,
                                                   why=f"wrapped secret of grant {grant_id} intercepted")
        else:
            self.audit.record("credential.unwrap_failed", actor=agent.name, task_id=task_id, outcome=verdict,
                              data={"grant_id": grant_id, "backend": grant["backend"]})
        return body

    def _rotate_managed(self, fingerprints: list[str], *, actor: str, why: str) -> list[str]:
        rotated: list[str] = []
        if self.rotation is None:
            return rotated
        for name in dict.fromkeys(n for n in map(self.rotation.match_fingerprint, fingerprints) if n):
            result = self.rotation.rotate(name, reason="leak", actor=actor)
            log.warning("managed_secret.rotated_after_tampering", name=name, outcome=result.outcome, why=why)
            rotated.append(name)
        return rotated

    def get_task(self, task_id: str) -> Task:
        with self.store.read() as conn:
            task = self.store.get_task(conn, task_id)
        if task is None:
            raise NotFound(f'task "{task_id}" does not exist')
        return task

    def escalate(self, task_id: str, *, detector: str, reason: str, actor: str,
                 steps: list[str]) -> dict[str, Any]:
        """Escalate from outside the request flow (admin revoke: ``admin_revoke``)."""
        from broker.chain.model import Hit

        chain = self.chain_service()
        with chain.lock(task_id):
            report = chain.escalate(task_id, Hit(detector=detector, reason=reason, steps=(),
                                                 extra={"step_refs": steps} if steps else {}), actor=actor)
        return {k: report[k] for k in ("revocations_queued", "revocations_completed", "revocations_pending")}

    def task_view(self, task_id: str) -> dict[str, Any]:
        from broker.api.presenters import task_body  # presentation helper, no HTTP dependency

        task = self.get_task(task_id)
        summary = self.tasks.chain_summary(task_id)
        return {"task": task_body(task), "chain": {"summary": summary.to_dict(), **chain_view(self.store, task_id)}}

    # -- ops --------------------------------------------------------------------------------------
    def revocation_backlog(self) -> tuple[int, float | None]:
        with self.store.read() as conn:
            return outbox.pending_count(conn), outbox.oldest_pending_age(conn, utcnow())

    def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            with self.store.read() as conn:
                pending = outbox.pending_count(conn)
                oldest = outbox.oldest_pending_age(conn, utcnow())
            checks["store"] = "ok"
            stuck = oldest is not None and oldest > self.settings.revocation_stuck_seconds
            runs = [w.last_run for w in self.workers if getattr(w, "last_run", None)]
            checks["revocations"] = {"pending": pending, "oldest_pending_seconds": oldest,
                                     "status": "stuck" if stuck else "ok",
                                     "worker_last_run_seconds_ago": round(_time.time() - max(runs), 3)
                                     if runs else None}
        except Exception as exc:  # readiness reports, never raises
            checks["store"] = f"error: {type(exc).__name__}"
            stuck = True
        for kind, backend in self.backends.items():
            try:
                backend.check_alive()
                checks[f"backend.{kind}"] = "ok"
            except BrokerError as exc:
                checks[f"backend.{kind}"] = f"unavailable: {exc.message}"
        ready = checks.get("store") == "ok" and not stuck and all(
            v == "ok" for k, v in checks.items() if k.startswith("backend."))
        return {"ready": ready, "checks": checks}

    def reload_policies(self, trigger: str = "api", actor: str = "broker") -> dict[str, Any]:
        """Reload the policy bundle; a bad bundle is refused and the old one stays in force.
        Either way the attempt is audited (``policy.reloaded`` / ``policy.reload_refused``)."""
        result = self.engine_holder.reload(trigger)
        self._after_reload(result, actor)
        return dict(result.to_dict())

    def watch_policies(self, interval_seconds: float) -> None:
        """Reload the bundle when its files change (polled), audited like an API reload."""
        if interval_seconds > 0:
            self.workers.append(self.engine_holder.watch(interval_seconds,
                                                         lambda r: self._after_reload(r, "policy-watcher")))

    def _after_reload(self, result: Any, actor: str) -> None:
        event = result.audit_event()
        self.audit.record(event["kind"], actor=actor, outcome="ok" if result.ok else "refused", data=event["data"])
        if result.ok and result.changed and self.chain is not None:
            # the chain detectors are configured in the same bundle (chain.yaml)
            from broker.chain.detectors import inline_detectors

            config = chain_config.load(self.settings.policy_dir, catalog=self.engine_holder.catalog())
            self.chain.config, self.chain.detectors = config, inline_detectors(config)

    def policy_info(self) -> dict[str, Any]:
        return dict(self.engine_holder.info())

    def close(self) -> None:
        self._stop.set()
        for w in self.workers:
            w.stop()
        alerter = self.chain.alerter if self.chain is not None else None
        if isinstance(alerter, WebhookAlerter):
            alerter.close(timeout=2.0)
        self.authenticator.failures.flush()  # counts of aggregated auth.failed events
        self.store.engine.dispose()


def _iso(value: Any) -> str | None:
    v = aware(value) if isinstance(value, datetime) else None
    return v.isoformat() if v else None


def _build_backends(settings: Settings, http: OpenBaoHTTP, token_backend: OpenBaoTokenBackend,
                    fingerprint: Fingerprinter) -> dict[str, CredentialBackend]:
    from broker.backends.openbao_kv import OpenBaoKVBackend
    from broker.backends.postgres import PostgresBackend

    backends: dict[str, CredentialBackend] = {
        "vault_token": token_backend,
        "vault_kv": OpenBaoKVBackend(http, fingerprinter=fingerprint, public_addr=settings.openbao.public_addr),
        "postgres": PostgresBackend(http),
    }
    if settings.aws.enabled:
        from broker.backends.aws_sts import AwsClientSettings, AwsRevocationMode, AwsStsBackend

        backends["aws"] = AwsStsBackend(AwsClientSettings(region=settings.aws.region,
                                                          endpoint_url=settings.aws.endpoint_url),
                                        mode=AwsRevocationMode(settings.aws.revocation_mode),
                                        outbound=settings.outbound_policy())
    return backends


def _wire_rotation(container: Container, http: OpenBaoHTTP) -> None:
    """Rotation of managed static secrets: playbooks, service, admin routes, schedule worker."""
    from broker.api import routes_rotation
    from rotation.kv import OpenBaoKV
    from rotation.playbooks.aws_iam_key import AwsIamKeyPlaybook
    from rotation.playbooks.base import Kind
    from rotation.playbooks.database_root import DatabaseRootPlaybook
    from rotation.playbooks.kv_generated import KvGeneratedPlaybook
    from rotation.playbooks.postgres_password import PostgresPasswordPlaybook
    from rotation.service import RotationService
    from rotation.worker import RotationWorker

    kv = OpenBaoKV(http)
    container.rotation = RotationService(container.store, container.audit, container.fingerprint, kv, {
        Kind.KV_GENERATED: KvGeneratedPlaybook(kv, container.fingerprint),
        Kind.POSTGRES_PASSWORD: PostgresPasswordPlaybook(http),
        Kind.DATABASE_ROOT: DatabaseRootPlaybook(http),
        # the broker's AWS credentials: boto3's standard chain; endpoints under the outbound policy
        Kind.AWS_IAM_KEY: AwsIamKeyPlaybook(outbound=container.settings.outbound_policy()),
    })
    container.extra_routers.append(routes_rotation.router)
    container.workers.append(RotationWorker(container.rotation).start())


def _wire_scans(container: Container) -> None:
    """Scheduled leak scans: the service and its admin routes; the scheduler starts with the
    workers (``rotation.scans.start_scheduler`` in ``run_server``)."""
    from broker.api import routes_scans
    from rotation.scans import build_scans

    container.scans = build_scans(container)
    container.extra_routers.append(routes_scans.router)


def _build_scanning(container: Container, key: bytes) -> Any:
    from broker.services.scanning import ScanService
    from scanners.engine import Scanner
    from scanners.known import KnownSecretIndex

    known = KnownSecretIndex(key)
    service = ScanService(Scanner(key=key, known=known), known, container.store, container.audit,
                          container.handle_leak)
    service.load_known()
    return service


def _wire_approvals(container: Container) -> None:
    from broker.approvals.wiring import wire

    wire(container)


def _build_verifier(settings: Settings, store: Store) -> Any:
    from broker.identity import DevIssuer, IdentityVerifier, IssuerConfig

    configs = [IssuerConfig(issuer=i.issuer, audiences=tuple(i.audiences), jwks_file=i.jwks_file,
                            jwks_url=i.jwks_url, public_key_pem=i.public_key_pem, algorithms=tuple(i.algorithms),
                            max_token_age_seconds=i.max_token_age_seconds, leeway_seconds=i.leeway_seconds,
                            require_jti=i.require_jti, jwks_cache_seconds=i.jwks_cache_seconds)
               for i in settings.issuers]
    if settings.dev_issuer:
        configs.append(DevIssuer.load_or_create(settings.data_dir).issuer_config())
    return IdentityVerifier(configs, StoreReplayGuard(store), outbound=settings.outbound_policy())
