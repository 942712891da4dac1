"""Pure IAM policy logic for the AWS STS backend: session policies, session tags, and the
revocation (deny) policy the broker keeps on a role. No boto3 here, so it is unit-testable.

Revocation policy: one inline policy (:data:`REVOCATION_POLICY_NAME`) per role, with Deny
statements conditioned on the session tags the broker set (``aws:PrincipalTag/nhi-task`` for a
task, ``aws:PrincipalTag/nhi-grant`` for one grant). Entries are grouped in hourly statements
(``Sid`` ``NhiRevokedTask2026112414``) and dropped after :data:`RETENTION` — by then every session
issued before the revocation has expired on its own (STS sessions last at most 12 h). When the
policy would outgrow its size budget, all entries are replaced by one Deny on
``aws:TokenIssueTime`` earlier than now: every session of the role issued so far is revoked
(coarser, but fail-closed), the same thing the IAM console's "Revoke active sessions" does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

REVOCATION_POLICY_NAME = "nhi-broker-revocations"
DENY_ALL_POLICY_NAME = "nhi-broker-revoked"
TAG_TASK, TAG_AGENT, TAG_ACTION, TAG_GRANT = "nhi-task", "nhi-agent", "nhi-action", "nhi-grant"
RETENTION = timedelta(hours=13)
POLICY_BUDGET = 6144  # characters of the 10,240 IAM allows for all inline policies of a role
SESSION_POLICY_LIMIT = 2048  # packed size STS accepts for an inline session policy

#: The broker's action catalog mapped to AWS actions; a resource can override any entry with
#: ``aws.actions``. Actions that are absent (payments.*, iam.modify) get no AWS credential unless
#: the resource maps them explicitly.
DEFAULT_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "metrics.read": ("cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:ListMetrics"),
    "logs.read": (
        "logs:GetLogEvents",
        "logs:FilterLogEvents",
        "logs:DescribeLogGroups",
        "logs:DescribeLogStreams",
    ),
    "storage.read": ("s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:GetBucketLocation"),
    "storage.write": ("s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject", "s3:ListBucket"),
    "db.read": (
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:DescribeTable",
    ),
    "db.write": (
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:DescribeTable",
    ),
    "secrets.read": (
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
        "ssm:GetParameter",
        "ssm:GetParameters",
    ),
    "data.export": ("s3:GetObject", "s3:ListBucket", "s3:PutObject"),
    "deploy.run": ("lambda:InvokeFunction", "ecs:RunTask", "ecs:DescribeTasks"),
}

IAM_ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9*?]+$")
_TAG_VALUE_BAD = re.compile(r"[^\w .:/=+\-@]")
_SESSION_NAME_BAD = re.compile(r"[^\w+=,.@-]")


def actions_for(action: str, overrides: Mapping[str, Iterable[str]] | None) -> list[str]:
    if overrides and action in overrides:
        return list(overrides[action])
    return list(DEFAULT_ACTIONS.get(action, ()))


def session_policy(actions: list[str], resources: list[str]) -> str:
    """The inline session policy: the role's permissions narrowed to these actions on these
    resources (AWS intersects it with the role's own policies)."""
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "NhiScope",
                "Effect": "Allow",
                "Action": sorted(set(actions)),
                "Resource": resources[0] if len(resources) == 1 else resources,
            }
        ],
    }
    return json.dumps(doc, separators=(",", ":"))


def tag_value(value: str) -> str:
    """A session tag value: at most 256 characters from AWS's allowed set."""
    return _TAG_VALUE_BAD.sub("_", value)[:256] or "_"


def session_name(task_id: str) -> str:
    """RoleSessionName (2-64 characters of ``[\\w+=,.@-]``) derived from the task."""
    return ("nhi-" + _SESSION_NAME_BAD.sub("_", task_id))[:64]


def source_identity(agent: str) -> str:
    return _SESSION_NAME_BAD.sub("_", agent)[:64].ljust(2, "_")


def deny_all_policy() -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Sid": "NhiTaskRevoked", "Effect": "Deny", "Action": "*", "Resource": "*"}],
        }
    )


def add_revocation(
    doc: Mapping[str, Any] | None,
    tag_key: str,
    value: str,
    now: datetime | None = None,
    budget: int = POLICY_BUDGET,
) -> dict[str, Any]:
    """Return the revocation policy with ``value`` of session tag ``tag_key`` denied (idempotent),
    entries older than :data:`RETENTION` pruned, and the size budget kept."""
    now = now or datetime.now(UTC)
    statements = [dict(s) for s in (doc or {}).get("Statement", []) if isinstance(s, Mapping)]
    statements = [s for s in statements if not _expired(s, now)]
    if not is_revoked(statements, tag_key, value):
        kind = "Task" if tag_key == TAG_TASK else "Grant"
        sid = f"NhiRevoked{kind}{now:%Y%m%d%H}"
        target = next((s for s in statements if s.get("Sid") == sid), None)
        if target is None:
            target = {
                "Sid": sid,
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"StringEquals": {f"aws:PrincipalTag/{tag_key}": []}},
            }
            statements.append(target)
        values = target["Condition"]["StringEquals"][f"aws:PrincipalTag/{tag_key}"]
        if isinstance(values, str):
            values = [values]
        target["Condition"]["StringEquals"][f"aws:PrincipalTag/{tag_key}"] = [*values, value]
    out = {"Version": "2012-10-17", "Statement": statements}
    if len(json.dumps(out, separators=(",", ":"))) > budget:
        out = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": f"NhiRevokedBefore{now:%Y%m%d%H%M%S}",
                    "Effect": "Deny",
                    "Action": "*",
                    "Resource": "*",
                    "Condition": {"DateLessThan": {"aws:TokenIssueTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}},
                }
            ],
        }
    return out


def is_revoked(statements: Iterable[Mapping[str, Any]], tag_key: str, value: str) -> bool:
    for s in statements:
        cond = (s.get("Condition") or {}).get("StringEquals") or {}
        values = cond.get(f"aws:PrincipalTag/{tag_key}")
        if s.get("Effect") == "Deny" and (values == value or (isinstance(values, list) and value in values)):
            return True
    return False


def _expired(statement: Mapping[str, Any], now: datetime) -> bool:
    sid = str(statement.get("Sid", ""))
    m = re.fullmatch(r"NhiRevoked(?:Task|Grant)(\d{10})|NhiRevokedBefore(\d{14})", sid)
    if not m:
        return False  # not ours: keep it
    stamp = datetime.strptime(m.group(1) or m.group(2)[:10], "%Y%m%d%H").replace(tzinfo=UTC)
    return now - stamp > RETENTION
