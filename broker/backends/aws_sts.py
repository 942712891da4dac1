"""AWS STS sessions (resource kind ``aws``).

Resource settings: ``{"aws": {"role_arn", "region"?, "endpoint_url"?, "resources"?: [ARN...],
"actions"?: {"storage.read": ["s3:GetObject", ...]}, "revocation"?: "tag_deny"|"per_task_role"}}``.

The broker assumes the role with its own AWS credentials (boto3's standard chain, or explicit
ones in :class:`AwsClientSettings`) and narrows it with an inline session policy (the AWS actions
mapped to the broker action, on ``aws.resources``), session tags ``nhi-task``, ``nhi-agent``,
``nhi-action``, ``nhi-grant`` (task and grant transitive, so role chaining cannot shed them),
``SourceIdentity`` = the agent and ``RoleSessionName`` from the task. ``DurationSeconds`` is the
tier's TTL raised to STS's 900 s minimum; the grant's own expiry stays the tier's TTL, and when the
session outlasts it the grant's reference says ``revoke_at_expiry``: the expiry sweeper denies the
session (as a revocation would) once the grant expires.

STS cannot revoke one session, so revocation is a policy on the role (see docs/backends.md):

- ``tag_deny`` (default): a Deny on ``aws:PrincipalTag/nhi-grant`` (one grant) or
  ``aws:PrincipalTag/nhi-task`` (the task handle) in the role's inline policy
  ``nhi-broker-revocations``. Real AWS evaluates it on every request of a live session.
- ``per_task_role``: the first grant of a task creates a role for that task (trusting only the
  broker, carrying the base role's policies); revoking the task attaches deny-all to it and
  closes its trust policy. Hard revocation that does not rely on condition keys.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from broker.backends import _aws_policy as pol
from broker.backends.names import refuse_unknown, section
from broker.backends.port import IssuedCredential, IssueRequest
from broker.errors import BrokerError, InvalidInput, NotFound, UpstreamError, UpstreamUnavailable
from broker.netpolicy import OutboundPolicy
from broker.secrets import Secret

KIND = "aws"
ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/((?:[\w+=,.@-]+/)*)([\w+=,.@-]{1,64})$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
STS_MIN, STS_MAX = 900, 43200
OUTLIVES_SLACK = 5  # seconds of clock and rounding difference between STS's expiry and ours


class AwsRevocationMode(enum.StrEnum):
    TAG_DENY = "tag_deny"
    PER_TASK_ROLE = "per_task_role"


@dataclass(frozen=True, slots=True)
class AwsClientSettings:
    """How the broker reaches AWS. Without keys, boto3's standard credential chain is used."""

    region: str = "us-east-1"
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    connect_timeout: float = 3.0
    read_timeout: float = 10.0


class AwsStsBackend:
    kind = KIND
    self_expiring = True  # see CredentialBackend.self_expiring

    def __init__(
        self,
        client_settings: AwsClientSettings | None = None,
        *,
        mode: AwsRevocationMode = AwsRevocationMode.TAG_DENY,
        task_role_path: str = "/nhi-broker/tasks/",
        permissions_boundary_arn: str | None = None,
        role_ready_timeout: float = 15.0,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        """``outbound``: where a resource's ``aws.endpoint_url`` may point (broker/netpolicy.py);
        the composition root passes the configured policy, the default allows loopback (moto)."""
        self.outbound = outbound if outbound is not None else OutboundPolicy(allow_loopback=True)
        self.settings = client_settings or AwsClientSettings()
        self.mode = AwsRevocationMode(mode)
        self.task_role_path = task_role_path
        self.permissions_boundary_arn = permissions_boundary_arn
        self.role_ready_timeout = role_ready_timeout
        self._lock = threading.Lock()
        self._role_locks: dict[str, threading.Lock] = {}
        self._clients: dict[tuple[str, str, str | None], Any] = {}
        self._handled: set[tuple[str, str]] = set()  # (task, role) whose task handle was returned
        self._task_roles: dict[tuple[str, str], str] = {}
        self._principal: str | None = None

    def __repr__(self) -> str:
        return f"AwsStsBackend(region={self.settings.region!r}, mode={self.mode.value!r})"

    # -- clients ----------------------------------------------------------------------------
    def _client(self, service: str, region: str | None = None, endpoint_url: str | None = None) -> Any:
        region = region or self.settings.region
        endpoint_url = endpoint_url or self.settings.endpoint_url
        key = (service, region, endpoint_url)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                s = self.settings
                session = boto3.session.Session(
                    aws_access_key_id=s.access_key_id,
                    aws_secret_access_key=s.secret_access_key.reveal() if s.secret_access_key else None,
                    aws_session_token=s.session_token.reveal() if s.session_token else None,
                    region_name=region,
                )
                config = botocore.config.Config(
                    connect_timeout=s.connect_timeout,
                    read_timeout=s.read_timeout,
                    retries={"max_attempts": 2, "mode": "standard"},
                )
                client = session.client(service, endpoint_url=endpoint_url, config=config)
                self._clients[key] = client
            return client

    def _iam(self, where: Mapping[str, Any]) -> Any:
        return self._client("iam", where.get("region"), where.get("endpoint_url"))

    def _sts(self, where: Mapping[str, Any]) -> Any:
        return self._client("sts", where.get("region"), where.get("endpoint_url"))

    # -- settings ---------------------------------------------------------------------------
    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        aws = section(settings, "aws", KIND, '{"role_arn": "arn:aws:iam::123456789012:role/...", ...}')
        refuse_unknown(
            "aws",
            aws,
            {
                "role_arn",
                "region",
                "endpoint_url",
                "resources",
                "actions",
                "revocation",
                "role_name",
                "max_session_duration",
            },
            KIND,
        )
        role_arn = aws.get("role_arn")
        m = ROLE_ARN.match(role_arn) if isinstance(role_arn, str) else None
        if m is None:
            raise InvalidInput("aws.role_arn", "must be an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name>")
        out: dict[str, Any] = {"role_arn": role_arn, "role_name": m.group(4)}
        region = aws.get("region", self.settings.region)
        if not isinstance(region, str) or not REGION.match(region):
            raise InvalidInput("aws.region", f'"{region}" is not an AWS region name (e.g. "us-east-1")')
        out["region"] = region
        if aws.get("endpoint_url") is not None:
            # checked (names resolved) before the iam:GetRole below contacts it
            if not isinstance(aws["endpoint_url"], str):
                raise InvalidInput("aws.endpoint_url", "must be an https:// URL")
            self.outbound.check_resolved(aws["endpoint_url"], field="aws.endpoint_url")
            out["endpoint_url"] = str(aws["endpoint_url"]).rstrip("/")
        out["resources"] = _resources(aws.get("resources", ["*"]))
        if aws.get("actions") is not None:
            out["actions"] = _actions(aws["actions"])
        revocation = aws.get("revocation", self.mode.value)
        if revocation not in {m.value for m in AwsRevocationMode}:
            raise InvalidInput("aws.revocation", f'"{revocation}" is not one of ["per_task_role", "tag_deny"]')
        out["revocation"] = revocation
        for action in sorted(set(pol.DEFAULT_ACTIONS) | set(out.get("actions", {}))):
            if (
                len(pol.session_policy(pol.actions_for(action, out.get("actions")) or ["s3:x"], out["resources"]))
                > pol.SESSION_POLICY_LIMIT
            ):
                raise InvalidInput(
                    "aws.resources",
                    f'the session policy for "{action}" exceeds STS\'s '
                    f"{pol.SESSION_POLICY_LIMIT} characters; use wildcards",
                )
        with _translate("iam:GetRole"):
            try:
                role = self._iam(out).get_role(RoleName=out["role_name"])["Role"]
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "NoSuchEntity":
                    raise
                raise InvalidInput(
                    "aws.role_arn", f'role "{out["role_name"]}" does not exist in account {m.group(2)}'
                ) from exc
        if role.get("Arn") != role_arn:
            raise InvalidInput(
                "aws.role_arn", f'the role "{out["role_name"]}" has ARN {role.get("Arn")}, not {role_arn}'
            )
        out["max_session_duration"] = int(role.get("MaxSessionDuration") or 3600)
        return {"aws": out}

    # -- port -------------------------------------------------------------------------------
    def issue(self, request: IssueRequest) -> IssuedCredential:
        aws = request.resource.settings["aws"]
        actions = pol.actions_for(request.action.name, aws.get("actions"))
        if not actions:
            raise InvalidInput(
                "action",
                f'resource "{request.resource.name}" maps no AWS actions to '
                f'"{request.action.name}"; set aws.actions["{request.action.name}"]',
            )
        mode = AwsRevocationMode(aws.get("revocation", self.mode.value))
        task_id = request.task.task_id
        where = {k: aws[k] for k in ("region", "endpoint_url") if k in aws}
        role_name = aws["role_name"] if mode is AwsRevocationMode.TAG_DENY else _task_role_name(task_id, aws)
        handle = self._task_handle(request, mode, role_name, where)  # write-ahead, before any role exists
        try:
            return self._issue(request, aws, actions, mode, role_name, where, handle)
        except BaseException:
            if handle is not None:  # not recorded anywhere: the next grant must hand it out again
                with self._lock:
                    self._handled.discard((task_id, role_name))
            raise

    def _issue(
        self,
        request: IssueRequest,
        aws: Mapping[str, Any],
        actions: list[str],
        mode: AwsRevocationMode,
        role_name: str,
        where: dict[str, Any],
        handle: dict[str, Any] | None,
    ) -> IssuedCredential:
        task_id = request.task.task_id
        fresh = False
        role_arn = aws["role_arn"]
        if mode is AwsRevocationMode.PER_TASK_ROLE:
            role_arn, fresh = self._task_role(task_id, role_name, aws, where)
        duration = max(STS_MIN, min(request.ttl_seconds, int(aws.get("max_session_duration", 3600)), STS_MAX))
        tags = [
            {"Key": pol.TAG_TASK, "Value": pol.tag_value(task_id)},
            {"Key": pol.TAG_AGENT, "Value": pol.tag_value(request.agent.name)},
            {"Key": pol.TAG_ACTION, "Value": pol.tag_value(request.action.name)},
            {"Key": pol.TAG_GRANT, "Value": pol.tag_value(request.grant_id)},
        ]
        kwargs = {
            "RoleArn": role_arn,
            "RoleSessionName": pol.session_name(task_id),
            "DurationSeconds": duration,
            "Policy": pol.session_policy(actions, aws["resources"]),
            "Tags": tags,
            "TransitiveTagKeys": [pol.TAG_TASK, pol.TAG_GRANT],
            "SourceIdentity": pol.source_identity(request.agent.name),
        }
        resp = self._assume(where, kwargs, retry_access_denied=fresh)
        creds = resp["Credentials"]
        aws_expiry = _aware(creds["Expiration"])
        expires = min(aws_expiry, datetime.now(UTC) + timedelta(seconds=request.ttl_seconds))
        reference: dict[str, Any] = {
            "mode": mode.value,
            "scope": "grant",
            "role_name": role_name,
            "task_id": task_id,
            "grant_id": request.grant_id,
            **where,
        }
        outlives = aws_expiry - expires > timedelta(seconds=OUTLIVES_SLACK)
        if outlives:  # STS's 900 s minimum outlasts the decision: deny the session at expiry
            reference["revoke_at_expiry"] = True
        public = {
            "access_key_id": creds["AccessKeyId"],
            "expires_at": expires.isoformat(),
            "aws_expires_at": aws_expiry.isoformat(),
            "region": aws["region"],
            "role_arn": role_arn,
            "assumed_role_arn": resp.get("AssumedRoleUser", {}).get("Arn"),
            "session_name": kwargs["RoleSessionName"],
            "actions": sorted(set(actions)),
        }
        if "endpoint_url" in aws:
            public["endpoint_url"] = aws["endpoint_url"]
        return IssuedCredential(
            kind=KIND,
            public=public,
            secrets={
                "access_key_id": Secret(creds["AccessKeyId"]),
                "secret_access_key": Secret(creds["SecretAccessKey"]),
                "session_token": Secret(creds["SessionToken"]),
            },
            expires_at=expires,
            revocation=reference,
            accessor=creds["AccessKeyId"],
            task_handle=handle,
            covered_by_task_handle=True,
            backend_expires_at=aws_expiry if outlives else None,
        )

    def _task_handle(
        self, request: IssueRequest, mode: AwsRevocationMode, role_name: str, where: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The task-level revocation reference for (task, role), once per process: handed to
        ``request.persist_handle`` before anything is created (write-ahead), else returned as
        ``task_handle`` with the credential. Duplicates after a restart are harmless (idempotent)."""
        key = (request.task.task_id, role_name)
        with self._lock:
            if key in self._handled:
                return None
            self._handled.add(key)
        handle = {
            "mode": mode.value,
            "scope": "task",
            "role_name": role_name,
            "task_id": request.task.task_id,
            **where,
        }
        if request.persist_handle is None:
            return handle
        try:
            request.persist_handle(handle)
        except BaseException:
            with self._lock:
                self._handled.discard(key)
            raise
        return None

    def _assume(self, where: Mapping[str, Any], kwargs: dict[str, Any], *, retry_access_denied: bool) -> Any:
        deadline = time.monotonic() + (self.role_ready_timeout if retry_access_denied else 0)
        delay = 0.2
        while True:
            try:
                with _translate("sts:AssumeRole"):
                    return self._sts(where).assume_role(**kwargs)
            except UpstreamError as exc:
                # a role IAM has just created is not assumable everywhere yet (eventual consistency)
                if "AccessDenied" not in exc.message or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def revoke(self, reference: Mapping[str, Any]) -> None:
        role_name, scope = reference.get("role_name"), reference.get("scope")
        if not isinstance(role_name, str) or not role_name or scope not in ("grant", "task"):
            raise UpstreamError("revocation reference needs role_name and scope grant|task")
        where = {k: reference[k] for k in ("region", "endpoint_url") if k in reference}
        try:
            if scope == "grant":
                self._deny_tag(where, role_name, pol.TAG_GRANT, pol.tag_value(str(reference["grant_id"])))
            elif reference.get("mode") == AwsRevocationMode.PER_TASK_ROLE.value:
                self._close_task_role(where, role_name)
            else:
                self._deny_tag(where, role_name, pol.TAG_TASK, pol.tag_value(str(reference["task_id"])))
        except NotFound:
            return  # the role is gone: nothing can assume or use it any more

    def check_alive(self) -> None:
        try:
            with _translate("sts:GetCallerIdentity"):
                self._sts({}).get_caller_identity()
        except UpstreamError as exc:
            raise UpstreamUnavailable(f"AWS rejected the broker's credentials ({exc.message})") from exc

    def forget_task(self, task_id: str) -> None:
        with self._lock:
            self._handled = {k for k in self._handled if k[0] != task_id}
            self._task_roles = {k: v for k, v in self._task_roles.items() if k[0] != task_id}

    # -- tag_deny ---------------------------------------------------------------------------
    def _role_lock(self, role_name: str) -> threading.Lock:
        with self._lock:
            return self._role_locks.setdefault(role_name, threading.Lock())

    def _deny_tag(self, where: Mapping[str, Any], role_name: str, tag_key: str, value: str) -> None:
        iam = self._iam(where)
        with self._role_lock(role_name):
            for _ in range(3):  # read-modify-write; re-read to survive a concurrent writer
                doc = self._read_inline(iam, role_name, pol.REVOCATION_POLICY_NAME)
                if doc and pol.is_revoked(doc.get("Statement", []), tag_key, value):
                    return
                new = pol.add_revocation(doc, tag_key, value)
                with _translate("iam:PutRolePolicy"):
                    iam.put_role_policy(
                        RoleName=role_name,
                        PolicyName=pol.REVOCATION_POLICY_NAME,
                        PolicyDocument=json.dumps(new),
                    )
                check = self._read_inline(iam, role_name, pol.REVOCATION_POLICY_NAME) or {}
                statements = check.get("Statement", [])
                if pol.is_revoked(statements, tag_key, value) or any(
                    str(s.get("Sid", "")).startswith("NhiRevokedBefore") for s in statements
                ):
                    return
        raise UpstreamError(f'could not record the revocation on role "{role_name}" (concurrent updates)')

    @staticmethod
    def _read_inline(iam: Any, role_name: str, policy_name: str) -> dict[str, Any] | None:
        with _translate("iam:GetRolePolicy"):
            try:
                doc = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "NoSuchEntity":
                    raise
                iam.get_role(RoleName=role_name)  # NoSuchEntity here: the role itself is gone
                return None
        return json.loads(doc) if isinstance(doc, str) else dict(doc)

    # -- per_task_role ----------------------------------------------------------------------
    def _task_role(self, task_id: str, name: str, aws: Mapping[str, Any], where: Mapping[str, Any]) -> tuple[str, bool]:
        key = (task_id, aws["role_arn"])
        with self._lock:
            known = self._task_roles.get(key)
        if known:
            return known, False
        iam = self._iam(where)
        trust = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": self._broker_principal(where)},
                        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
                    }
                ],
            }
        )
        create: dict[str, Any] = {
            "Path": self.task_role_path,
            "RoleName": name,
            "AssumeRolePolicyDocument": trust,
            "MaxSessionDuration": int(aws.get("max_session_duration", 3600)),
            "Description": f"nhi-broker task role for {task_id} (base {aws['role_name']})"[:1000],
            "Tags": [
                {"Key": pol.TAG_TASK, "Value": pol.tag_value(task_id)},
                {"Key": "nhi-base-role", "Value": pol.tag_value(aws["role_arn"])},
            ],
        }
        if self.permissions_boundary_arn:
            create["PermissionsBoundary"] = self.permissions_boundary_arn
        fresh = True
        with _translate("iam:CreateRole"):
            try:
                arn = iam.create_role(**create)["Role"]["Arn"]
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "EntityAlreadyExists":
                    raise
                arn, fresh = iam.get_role(RoleName=name)["Role"]["Arn"], False
        self._copy_permissions(iam, aws["role_name"], name)  # idempotent: also completes an interrupted create
        with self._lock:
            self._task_roles[key] = arn
        return arn, fresh

    @staticmethod
    def _copy_permissions(iam: Any, base: str, target: str) -> None:
        with _translate("iam:copy role policies"):
            for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=base):
                for p in page["AttachedPolicies"]:
                    iam.attach_role_policy(RoleName=target, PolicyArn=p["PolicyArn"])
            for page in iam.get_paginator("list_role_policies").paginate(RoleName=base):
                for name in page["PolicyNames"]:
                    if name in (pol.REVOCATION_POLICY_NAME, pol.DENY_ALL_POLICY_NAME):
                        continue
                    doc = iam.get_role_policy(RoleName=base, PolicyName=name)["PolicyDocument"]
                    iam.put_role_policy(
                        RoleName=target,
                        PolicyName=name,
                        PolicyDocument=doc if isinstance(doc, str) else json.dumps(doc),
                    )

    def _close_task_role(self, where: Mapping[str, Any], role_name: str) -> None:
        iam = self._iam(where)
        with _translate("iam:revoke task role"):
            iam.put_role_policy(
                RoleName=role_name, PolicyName=pol.DENY_ALL_POLICY_NAME, PolicyDocument=pol.deny_all_policy()
            )
            iam.update_assume_role_policy(
                RoleName=role_name,
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
                    }
                ),
            )
            iam.tag_role(
                RoleName=role_name,
                Tags=[{"Key": "nhi-revoked-at", "Value": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}],
            )

    def _broker_principal(self, where: Mapping[str, Any]) -> str:
        if self._principal is None:
            with _translate("sts:GetCallerIdentity"):
                arn = str(self._sts(where).get_caller_identity()["Arn"])
            m = re.match(r"^arn:([\w-]+):sts::(\d{12}):assumed-role/([^/]+)/", arn)
            if m:  # a role session: trust the role itself (its ARN carries the role's path)
                with _translate("iam:GetRole"):
                    arn = str(self._iam(where).get_role(RoleName=m.group(3))["Role"]["Arn"])
            self._principal = arn
        return self._principal


def _task_role_name(task_id: str, aws: Mapping[str, Any]) -> str:
    """Deterministic per (task, base role), at most 64 characters, so a restart finds it again."""
    digest = hashlib.sha256(f"{task_id}|{aws['role_arn']}".encode()).hexdigest()[:8]
    return f"nhi-{pol.session_name(task_id)[4:44]}-{digest}"


# -- boundary: botocore exceptions become the broker's --------------------------------------------
@contextmanager
def _translate(operation: str) -> Iterator[None]:
    try:
        yield
    except BrokerError:
        raise
    except botocore.exceptions.ClientError as exc:
        code = _code(exc)
        if code in ("NoSuchEntity", "NoSuchEntityException"):
            raise NotFound(f"AWS {operation}: not found") from exc
        if code in (
            "Throttling",
            "ThrottlingException",
            "RequestLimitExceeded",
            "ServiceUnavailable",
            "ServiceFailure",
            "InternalFailure",
        ):
            raise UpstreamUnavailable(f"AWS {operation} is unavailable ({code})") from exc
        raise UpstreamError(f"AWS {operation} failed: {code}: {_message(exc)}") from exc
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError) as exc:
        raise UpstreamUnavailable("the broker has no usable AWS credentials") from exc
    except botocore.exceptions.BotoCoreError as exc:  # connection, timeout, endpoint errors
        raise UpstreamUnavailable(f"AWS {operation}: cannot reach AWS ({type(exc).__name__})") from exc


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _message(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))[:200]


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


# -- settings helpers ---------------------------------------------------------------------------


def _resources(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("aws.resources", 'must be a non-empty list of ARNs (or ["*"])')
    for i, item in enumerate(value):
        if not isinstance(item, str) or not (item == "*" or item.startswith("arn:")):
            raise InvalidInput(f"aws.resources[{i}]", 'must be an ARN ("arn:...") or "*"')
    return list(value)


def _actions(value: Any) -> dict[str, list[str]]:
    if not isinstance(value, Mapping):
        raise InvalidInput("aws.actions", 'must map broker actions to AWS actions: {"storage.read": ["s3:GetObject"]}')
    out: dict[str, list[str]] = {}
    for action, iam_actions in value.items():
        if not isinstance(iam_actions, list) or not all(
            isinstance(a, str) and pol.IAM_ACTION.match(a) for a in iam_actions
        ):
            raise InvalidInput(f"aws.actions.{action}", 'must be a list of AWS actions like "s3:GetObject"')
        if (
            any(a in ("*", "*:*") or a.startswith(("iam:", "sts:", "organizations:")) for a in iam_actions)
            and action != "iam.modify"
        ):
            raise InvalidInput(
                f"aws.actions.{action}",
                'IAM, STS and Organizations actions may only be mapped to "iam.modify"',
            )
        out[str(action)] = list(iam_actions)
    return out
