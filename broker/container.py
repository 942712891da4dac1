"""The composition root: the one place that picks adapters and wires services.

``Container.build(settings)`` migrates the store, loads the policy bundle, connects the backends
and builds every service with all its collaborators as constructor arguments. It decides nothing
and starts nothing: the runner (``nhi-broker up``/``serve``, a test harness) starts the background
workers through :mod:`broker.runtime` and calls :meth:`Container.close` on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from broker.approvals.flow import CredentialFlow
from broker.approvals.notify import formatter
from broker.approvals.reviews import ReviewService
from broker.approvals.service import ApprovalService, Notifier
from broker.audit import AuditLog
from broker.audit.guard import AuditGuard
from broker.audit.reading import AuditReader
from broker.audit.wiring import audit_key, build_guard
from broker.backends import openbao_auth
from broker.backends.kinds import BackendDeps, aws_backend, build_backends
from broker.backends.openbao_auth import TokenRenewer
from broker.backends.openbao_http import OpenBaoHTTP
from broker.backends.openbao_kv_reader import kv_reader_factory
from broker.backends.openbao_token import OpenBaoTokenBackend
from broker.backends.port import CredentialBackend
from broker.chain.alerts import WebhookAlerter
from broker.chain.locks import LocalTaskLocks, PostgresTaskLocks, TaskLocks
from broker.chain.post_issuance import PostIssuancePool
from broker.chain.rules import ChainRules
from broker.chain.service import ChainService
from broker.config import IssuerSettings, Settings
from broker.gateway import Gateway
from broker.identity import DevIssuer, IdentityVerifier, IssuerConfig
from broker.identity.access_tokens import AccessTokens, BrokerSigningKey
from broker.identity.dpop import DPoPSettings, DPoPVerifier
from broker.identity.oidc_login import OidcCodeFlow
from broker.identity.replay import StoreReplayGuard
from broker.keys import fingerprint_key
from broker.metrics import Metrics
from broker.people.service import PeopleService, token_key
from broker.people.sessions import ConsoleSessions, session_key
from broker.policy import PolicyHolder
from broker.secrets import Fingerprinter, Secret
from broker.services.auth_failures import AuthFailureLog
from broker.services.authn import AgentAuthenticator
from broker.services.events import EventService
from broker.services.health import HealthService
from broker.services.incidents import IncidentService
from broker.services.policies import PolicyService
from broker.services.registry import RegistryService
from broker.services.revocation import RevocationService
from broker.services.scan_jobs import ScanJobService, build_scan_jobs
from broker.services.scanning import LiveScanner
from broker.services.tasks import TaskService
from broker.services.token_exchange import TokenExchangeService
from broker.store.db import make_engine, migrate
from broker.store.repo import Store
from broker.workers import Heartbeat
from rotation.kv import OpenBaoKV
from rotation.managed import RotationManagedSecrets
from rotation.playbooks.aws_iam_key import AwsIamKeyPlaybook
from rotation.playbooks.base import Kind
from rotation.playbooks.database_root import DatabaseRootPlaybook
from rotation.playbooks.kv_generated import KvGeneratedPlaybook
from rotation.playbooks.postgres_password import PostgresPasswordPlaybook
from rotation.service import RotationService
from scanners.engine import Scanner
from scanners.kingfisher import default_engine
from scanners.known import KnownSecretIndex


@dataclass(frozen=True, slots=True)
class Container:
    settings: Settings
    store: Store
    audit: AuditLog
    fingerprint: Fingerprinter
    fingerprint_key: bytes
    policies: PolicyHolder
    policy_admin: PolicyService
    openbao: OpenBaoHTTP
    backends: dict[str, CredentialBackend]
    registry: RegistryService
    revocations: RevocationService
    revocation_heartbeat: Heartbeat
    chain: ChainService
    tasks: TaskService
    incidents: IncidentService
    events: EventService
    scanning: LiveScanner
    people: PeopleService
    console_sessions: ConsoleSessions  # the web console's signed-in sessions (docs/console.md)
    console_sign_in: OidcCodeFlow | None  # None: no human issuer signs people in
    approvals: ApprovalService
    reviews: ReviewService
    credentials: CredentialFlow
    gateway: Gateway  # the credential-injecting gateway (resource kind http_api)
    rotation: RotationService
    scan_jobs: ScanJobService
    authenticator: AgentAuthenticator
    signing_key: BrokerSigningKey
    token_exchange: TokenExchangeService
    health: HealthService
    metrics: Metrics
    alerter: WebhookAlerter | None
    approval_notifier: WebhookAlerter | None
    openbao_renewer: TokenRenewer | None  # the broker's own OpenBao token; started by the runner
    audit_guard: AuditGuard  # verification + signed checkpoints; the runner starts it
    audit_reader: AuditReader  # the chain's status for the console (read-only, incremental)

    @classmethod
    def build(cls, settings: Settings) -> Container:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url())
        migrate(engine)
        store = Store(engine)
        audit = AuditLog(store, audit_key(settings.audit, settings.data_dir, create=True))
        audit.check_key()  # a chain keyed with another key stops start-up (restore the key)
        key = fingerprint_key(settings)
        fingerprint = Fingerprinter(key)
        policies = PolicyHolder.load(settings.policy_dir)  # a bad bundle stops start-up (file:line)
        chain_rules = ChainRules(settings.policy_dir, policies.catalog)
        bao = settings.openbao
        openbao, openbao_renewer = openbao_auth.connect(
            bao.addr,
            timeout=bao.timeout_seconds,
            auth=bao.auth,
            token=Secret(bao.token.get_secret_value()),
            renew_token=bao.renew_token,
            approle_mount=bao.approle_mount,
            approle_role_id=bao.approle_role_id,
            approle_secret_id=Secret(bao.approle_secret_id.get_secret_value()),
        )
        token_backend = OpenBaoTokenBackend(openbao)
        token_backend.bootstrap()
        aws = aws_backend(settings) if settings.aws.enabled else None  # one instance: kind aws and SigV4
        backends = build_backends(BackendDeps(settings, openbao, fingerprint, token_backend, policies.catalog, aws))
        metrics = Metrics()
        approval_notifier = _webhook(settings.approval_webhook_url, settings, field="approval_webhook_url")
        sign_in = _sign_in_verifier(settings, store)
        people = PeopleService(
            store,
            audit,
            token_key=token_key(key),
            admin_token=Secret(settings.admin_token.get_secret_value()),
            sign_in=sign_in,
            human_issuers=[h.issuer for h in settings.human_issuers],
            max_token_ttl_seconds=settings.person_token_max_ttl_seconds,
        )
        approvals = ApprovalService(
            store,
            audit,
            ttl_seconds=settings.approval_ttl_seconds,
            parties=people.parties,
            console_url=settings.resolved_console_url(),
            notify=_approval_notify(approval_notifier, settings),
        )
        # a quarantined, ended or expired task's open approvals and pending reviews are cancelled in
        # the transaction that ends it; the review service needs the chain, so it is bound late
        revocations = RevocationService(
            store,
            audit,
            backends,
            on_task_closed=(
                approvals.cancel_for_task,
                lambda conn, task_id, state, reason: reviews.cancel_for_task(conn, task_id, state, reason),
            ),
        )
        alerter = _webhook(settings.alert_webhook_url, settings, field="alert_webhook_url")
        chain = ChainService(
            store,
            audit,
            revocations,
            chain_rules,
            policies.catalog,
            fingerprint,
            task_locks(settings),
            alerter=alerter,
            on_escalated=lambda detector: metrics.escalations.labels(detector).inc(),
            post_issuance=PostIssuancePool(),
        )
        kv = OpenBaoKV(openbao)
        rotation = RotationService(
            store,
            audit,
            fingerprint,
            kv,
            {
                Kind.KV_GENERATED: KvGeneratedPlaybook(kv, fingerprint),
                Kind.POSTGRES_PASSWORD: PostgresPasswordPlaybook(openbao),
                Kind.DATABASE_ROOT: DatabaseRootPlaybook(openbao),
                # the broker's AWS credentials: boto3's standard chain; endpoints under the outbound policy
                Kind.AWS_IAM_KEY: AwsIamKeyPlaybook(outbound=settings.outbound_policy()),
            },
        )
        known = KnownSecretIndex(key)
        # the live scanner and the task service meet in two directions: issuance feeds the
        # scanner's index (``on_issued``) and a leak the scanner sees reaches the chain through the
        # incident service, which needs the task service; the leak handler is therefore bound late
        # Kingfisher (when installed) under the broker's layers; the runner starts its compile in the
        # background (start_workers), meanwhile the broker's full own rule set runs (docs/scanning.md)
        scanning = LiveScanner(
            Scanner(key=key, known=known, engine=default_engine()),
            known,
            store,
            audit,
            on_leak=lambda match, fp, source: incidents.handle_leak(match, fp, source),
        )
        tasks = TaskService(
            store,
            audit,
            policies.engine,
            policies.catalog,
            backends,
            revocations,
            fingerprint,
            chain,
            on_issued=(scanning.on_issued,),
        )
        incidents = IncidentService(store, audit, tasks, chain, revocations, backends, rotation)
        scanning.load_known()
        reviews = ReviewService(store, audit, chain.flag_review_locked, people.parties)
        heartbeat = Heartbeat()
        workloads = _verifier(settings, store)
        signing_key = BrokerSigningKey.load_or_create(
            settings.token_exchange.signing_key_file or settings.data_dir / "token-signing.pem"
        )
        access = AccessTokens(
            signing_key, issuer=settings.token_issuer(), max_ttl_seconds=settings.token_exchange.max_ttl_seconds
        )
        dpop = DPoPVerifier(StoreReplayGuard(store), DPoPSettings(settings.token_exchange.dpop_iat_window_seconds))
        authenticator = AgentAuthenticator(
            workloads,
            store,
            audit,
            access,
            dpop,
            AuthFailureLog(audit, interval_seconds=settings.limits.auth_failed_audit_interval_seconds),
        )
        credentials = CredentialFlow(tasks, approvals, reviews, chain, metrics)
        guard = build_guard(audit, settings.audit, settings.data_dir, metrics.registry, alerter)
        return cls(
            settings=settings,
            store=store,
            audit=audit,
            fingerprint=fingerprint,
            fingerprint_key=key,
            policies=policies,
            policy_admin=PolicyService(policies, chain_rules, audit),
            openbao=openbao,
            backends=backends,
            registry=RegistryService(store, audit, backends, policies.catalog, lambda: workloads.issuers),
            revocations=revocations,
            revocation_heartbeat=heartbeat,
            chain=chain,
            tasks=tasks,
            incidents=incidents,
            events=EventService(tasks, chain, scanning, audit),
            scanning=scanning,
            people=people,
            console_sessions=ConsoleSessions(
                store,
                audit,
                key=session_key(key),
                idle_timeout_seconds=settings.console.idle_timeout_seconds,
                max_session_seconds=settings.console.max_session_seconds,
            ),
            console_sign_in=_console_sign_in(settings, sign_in),
            approvals=approvals,
            reviews=reviews,
            credentials=credentials,
            rotation=rotation,
            gateway=Gateway(credentials, store, audit, scanning, fingerprint, settings.gateway),
            scan_jobs=build_scan_jobs(
                store,
                audit,
                settings,
                key,
                on_leak=incidents.handle_leak,
                managed=RotationManagedSecrets(rotation),
                live_index=known,
                alert=alerter.send if alerter is not None else None,
                kv=kv_reader_factory(openbao),
                engine=scanning.scanner.engine,
            ),
            authenticator=authenticator,
            signing_key=signing_key,
            token_exchange=TokenExchangeService(
                workloads,
                agents=authenticator,
                humans=_human_verifier(settings, store),
                human_claims={h.issuer: tuple(h.claims) for h in settings.human_issuers},
                tokens=access,
                dpop=dpop,
                audit=audit,
                tasks=tasks,
                require_dpop=settings.token_exchange.require_dpop,
                mcp_resources={m.url: m.server_agent for m in settings.token_exchange.mcp_resources},
            ),
            health=HealthService(
                store,
                backends,
                stuck_after_seconds=settings.revocation_stuck_seconds,
                revocation_heartbeat=heartbeat,
                budget_seconds=settings.readiness_budget_seconds,
            ),
            metrics=metrics,
            alerter=alerter,
            approval_notifier=approval_notifier,
            openbao_renewer=openbao_renewer,
            audit_guard=guard,
            audit_reader=AuditReader(audit, guard, full_every_seconds=settings.audit.verify_interval_seconds),
        )

    def close(self) -> None:
        """Drain the webhooks and release the store (workers are the runner's to stop first)."""
        self.chain.close()  # post-issuance checks in flight finish first (they may revoke and alert)
        for hook in (self.alerter, self.approval_notifier):
            if hook is not None:
                hook.close(timeout=2.0)
        self.chain.locks.close()
        self.gateway.close()
        self.authenticator.failures.flush()  # counts of aggregated auth.failed events
        self.store.engine.dispose()


def task_locks(settings: Settings) -> TaskLocks:
    """In-process locks on SQLite; advisory locks shared by every replica on PostgreSQL."""
    url = settings.resolved_database_url()
    return PostgresTaskLocks(url) if url.startswith("postgresql") else LocalTaskLocks()


def _webhook(url: str | None, settings: Settings, *, field: str) -> WebhookAlerter | None:
    """A webhook under the outbound policy: checked now, and before each delivery (names resolved)."""
    return (
        WebhookAlerter(
            url, timeout=settings.alert_webhook_timeout_seconds, policy=settings.outbound_policy(), field=field
        )
        if url
        else None
    )


def _approval_notify(hook: WebhookAlerter | None, settings: Settings) -> Notifier | None:
    if hook is None:
        return None
    shape = formatter(settings.approval_webhook_format)
    return lambda payload: hook.send(shape(payload))


def _issuer_config(i: IssuerSettings) -> IssuerConfig:
    return IssuerConfig(
        issuer=i.issuer,
        audiences=tuple(i.audiences),
        jwks_file=i.jwks_file,
        jwks_url=i.jwks_url,
        public_key_pem=i.public_key_pem,
        algorithms=tuple(i.algorithms),
        max_token_age_seconds=i.max_token_age_seconds,
        leeway_seconds=i.leeway_seconds,
        require_jti=i.require_jti,
        jwks_cache_seconds=i.jwks_cache_seconds,
    )


def _human_verifier(settings: Settings, store: Store) -> IdentityVerifier | None:
    """People (actor tokens of a token exchange) come from their own issuers, never the agents'."""
    if not settings.human_issuers:
        return None
    return IdentityVerifier(
        [_issuer_config(i) for i in settings.human_issuers],
        StoreReplayGuard(store),
        outbound=settings.outbound_policy(),
    )


def _sign_in_verifier(settings: Settings, store: Store) -> IdentityVerifier | None:
    """People signing in (approvals, reviews, audit, admin) with an ID token: only the human issuers
    that name ``sign_in_audiences``, and only those audiences (never the actor-token audiences)."""
    configs = [
        replace(_issuer_config(i), audiences=tuple(i.sign_in_audiences))
        for i in settings.human_issuers
        if i.sign_in_audiences
    ]
    return IdentityVerifier(configs, StoreReplayGuard(store), outbound=settings.outbound_policy()) if configs else None


def _console_sign_in(settings: Settings, verifier: IdentityVerifier | None) -> OidcCodeFlow | None:
    """The console's OIDC code flow against the configured human issuer (docs/console.md)."""
    chosen = settings.console_sign_in()
    if chosen is None or verifier is None:
        return None
    issuer, client_id = chosen
    return OidcCodeFlow(
        issuer=issuer.issuer,
        client_id=client_id,
        client_secret=Secret(settings.console.client_secret.get_secret_value()),
        discovery_url=settings.console.discovery_url,
        scopes=settings.console.scopes,
        verifier=verifier,
        policy=settings.outbound_policy(),
    )


def _verifier(settings: Settings, store: Store) -> IdentityVerifier:
    configs = [_issuer_config(i) for i in settings.issuers]
    if settings.dev_issuer:
        configs.append(DevIssuer.load_or_create(settings.data_dir).issuer_config())
    return IdentityVerifier(configs, StoreReplayGuard(store), outbound=settings.outbound_policy())
