"""``aws_iam_key``: an IAM user's access key, kept in OpenBao KV as ``access_key_id`` and
``secret_access_key``.

Settings: ``{"user": "<IAM user name>", "region"?: "us-east-1", "endpoint_url"?: "<IAM/STS endpoint>"}``.
The broker calls IAM with its own AWS credentials (boto3's standard chain, or explicit ones given
to the playbook).

create = ``iam:CreateAccessKey`` (a user has at most two keys: the rotation refuses when the user
already holds a key the broker does not manage); verify = ``sts:GetCallerIdentity`` with the new
key answers as that user (retried for up to ``verify_wait`` seconds: IAM is eventually
consistent); undo (failed verify) = delete the new key; retire = ``iam:DeleteAccessKey`` of the old
one — after the overlap window, or at once when the rotation was caused by a leak.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from broker.errors import Conflict, InvalidInput, UpstreamError, UpstreamUnavailable
from broker.netpolicy import OutboundPolicy
from broker.secrets import Secret
from rotation.playbooks.base import CurrentValue, Kind, ManagedSecret, NewValue, VerifyFailed

USER = re.compile(r"^[\w+=,.@-]{1,64}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: Secret


class AwsIamKeyPlaybook:
    kind = Kind.AWS_IAM_KEY
    stores_in_kv = True
    old_dies_at_create = False
    public_fields: frozenset[str] = frozenset()

    def __init__(
        self,
        credentials: AwsCredentials | None = None,
        *,
        verify_wait: float = 10.0,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        """``outbound``: where ``settings.endpoint_url`` may point (broker/netpolicy.py); default:
        the strict policy (public https only)."""
        self.credentials = credentials
        self.verify_wait = verify_wait
        self.outbound = outbound if outbound is not None else OutboundPolicy()

    def __repr__(self) -> str:
        return "AwsIamKeyPlaybook()"

    def validate(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(settings) - {"user", "region", "endpoint_url"}
        if unknown:
            raise InvalidInput(f"settings.{sorted(unknown)[0]}", "unknown key; allowed: endpoint_url, region, user")
        user, region = settings.get("user"), settings.get("region", "us-east-1")
        if not isinstance(user, str) or not USER.match(user):
            raise InvalidInput("settings.user", "must be an IAM user name (1-64 of letters, digits, +=,.@_-)")
        if not isinstance(region, str) or not REGION.match(region):
            raise InvalidInput("settings.region", f'"{region}" is not an AWS region name')
        out: dict[str, Any] = {"user": user, "region": region}
        endpoint = settings.get("endpoint_url")
        if endpoint is not None:
            # checked before anything is sent: scheme, no userinfo, no metadata/link-local/private
            # address (also after DNS); then one bounded call (2 s connect, 3 s read, no retry)
            # whose answer is never logged or echoed, only its error code
            if not isinstance(endpoint, str):
                raise InvalidInput("settings.endpoint_url", "must be an https:// URL")
            self.outbound.check_resolved(endpoint, field="settings.endpoint_url")
            out["endpoint_url"] = endpoint
        try:
            with _translate("iam:GetUser"):
                self._client(out, "iam", bounded=True).get_user(UserName=user)
        except _Gone as exc:
            raise InvalidInput("settings.user", f'IAM user "{user}" does not exist') from exc
        return out

    def _client(
        self, settings: Mapping[str, Any], service: str, key: NewValue | None = None, *, bounded: bool = False
    ) -> Any:
        endpoint = settings.get("endpoint_url")
        if endpoint is not None and not bounded:  # before every use: the name may resolve elsewhere now
            self.outbound.check_resolved(str(endpoint), field="settings.endpoint_url")
        config = (
            botocore.config.Config(connect_timeout=2, read_timeout=3, retries={"total_max_attempts": 1})
            if bounded
            else botocore.config.Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2})
        )
        kwargs: dict[str, Any] = {
            "region_name": settings.get("region", "us-east-1"),
            "endpoint_url": endpoint,
            "config": config,
        }
        if key is not None:
            kwargs.update(
                aws_access_key_id=key.fields["access_key_id"].reveal(),
                aws_secret_access_key=key.fields["secret_access_key"].reveal(),
            )
        elif self.credentials is not None:
            kwargs.update(
                aws_access_key_id=self.credentials.access_key_id,
                aws_secret_access_key=self.credentials.secret_access_key.reveal(),
            )
        return boto3.client(service, **kwargs)

    def create(self, secret: ManagedSecret) -> NewValue:
        s = secret.settings
        iam = self._client(s, "iam")
        managed = {secret.current_ref.get("access_key_id"), (secret.previous_ref or {}).get("access_key_id")}
        with _translate("iam:ListAccessKeys"):
            keys = iam.list_access_keys(UserName=s["user"])["AccessKeyMetadata"]
        foreign = [k["AccessKeyId"] for k in keys if k["AccessKeyId"] not in managed]
        if len(keys) >= 2:
            raise Conflict(
                f'IAM user "{s["user"]}" already has two access keys ({", ".join(foreign)} not '
                "managed by the broker); delete one before rotating"
            )
        with _translate("iam:CreateAccessKey"):
            key = iam.create_access_key(UserName=s["user"])["AccessKey"]
        return NewValue(
            fields={
                "access_key_id": Secret(key["AccessKeyId"]),
                "secret_access_key": Secret(key["SecretAccessKey"]),
            },
            ref={"access_key_id": key["AccessKeyId"], "user": s["user"]},
        )

    def verify(self, secret: ManagedSecret, new: NewValue, old: CurrentValue | None) -> dict[str, Any]:
        sts = self._client(secret.settings, "sts", key=new)
        deadline, last = time.monotonic() + self.verify_wait, "no answer"
        while True:
            try:
                arn = str(sts.get_caller_identity()["Arn"])
                break
            except botocore.exceptions.ClientError as exc:
                last = str(exc.response.get("Error", {}).get("Code", "ClientError"))
            except botocore.exceptions.BotoCoreError as exc:
                last = type(exc).__name__
            if time.monotonic() >= deadline:
                raise VerifyFailed(f"sts:GetCallerIdentity with the new access key failed ({last})")
            time.sleep(0.5)
        if not arn.endswith(f":user/{secret.settings['user']}") and f"/{secret.settings['user']}" not in arn:
            raise VerifyFailed(f'the new access key answers as "{arn}", not as user "{secret.settings["user"]}"')
        return {"caller_arn": arn, "access_key_id": new.ref["access_key_id"]}

    def undo(self, secret: ManagedSecret, new: NewValue) -> dict[str, Any]:
        self._delete(secret, str(new.ref["access_key_id"]))
        return {"deleted_new_access_key": new.ref["access_key_id"]}

    def adopt_ref(self, old: CurrentValue) -> dict[str, Any]:
        key_id = old.fields.get("access_key_id")  # an access key id is an identifier, not a secret
        return {"access_key_id": key_id.reveal()} if key_id is not None else {}

    def retire(self, secret: ManagedSecret, previous_ref: Mapping[str, Any]) -> dict[str, Any]:
        key_id = previous_ref.get("access_key_id")
        if not key_id:
            return {"note": "no previous access key was managed by the broker"}
        return {"deleted_access_key": key_id, "existed": self._delete(secret, str(key_id))}

    def _delete(self, secret: ManagedSecret, key_id: str) -> bool:
        iam = self._client(secret.settings, "iam")
        try:
            with _translate("iam:DeleteAccessKey"):
                iam.delete_access_key(UserName=secret.settings["user"], AccessKeyId=key_id)
        except _Gone:
            return False
        return True


class _Gone(UpstreamError):
    pass


@contextmanager
def _translate(operation: str) -> Iterator[None]:
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "ClientError"))
        if code == "NoSuchEntity":
            raise _Gone(f"{operation}: the IAM entity does not exist") from exc
        raise UpstreamError(f"AWS refused {operation} ({code})") from exc
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError) as exc:
        raise UpstreamUnavailable(f"{operation}: the broker has no AWS credentials") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise UpstreamUnavailable(f"{operation}: AWS is unreachable ({type(exc).__name__})") from exc
