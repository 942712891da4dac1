"""``nhibroker_managed_secret``: a static secret the broker rotates (``/v1/admin/managed-secrets/{name}``,
docs/rotation.md).

Values never cross this API, so nothing here holds a secret value: the resource says where the
value lives (``kv_mount``, ``kv_path``), how to make a new one (``settings``, kind-specific JSON)
and when (``max_age_seconds``, ``overlap_seconds``). The broker keeps the rotation state across a
``PUT``, which is right for the schedule and the settings but not for ``kind`` or the KV
location: the recorded versions and fingerprints belong to the old kind and the old path (a later
retirement destroys old KV versions by number at the configured path). Those three force a
replacement; everything else changes in place.

``settings`` is compared by content: the broker fills in defaults (``field``, a generator's
``length``), so the state keeps the configuration's spelling while every key it sets matches
the broker; a key changed outside Terraform shows as drift.
"""

from __future__ import annotations

import json
from typing import Any

from tf.iface import Config, PlanContext, State
from tf.schema import Attribute, Schema
from tf.types import Number, String, Unknown
from tf.utils import Diagnostics

from terraform.provider.resources.base import BrokerResource, check_enum, known

KINDS = ["kv_generated", "postgres_password", "database_root", "aws_iam_key"]
NO_KV = {"database_root"}  # OpenBao keeps the value itself
OUTPUTS = ("state", "rotated_at", "next_rotation_at")


class ManagedSecretResource(BrokerResource):
    suffix = "managed_secret"
    collection = "managed-secrets"
    noun = "managed secret"
    renames = {"kv.mount": "kv_mount", "kv.path": "kv_path", "kv": "kv_mount"}
    sets = frozenset({"settings"})  # a JSON string: diagnostics point at the attribute

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description="A managed static secret: where consumers read it, how the broker makes a new "
            "value and how often it rotates. No value ever crosses this resource.",
            attributes=[
                Attribute("id", String(), computed=True, description="The secret's name."),
                Attribute(
                    "name",
                    String(),
                    required=True,
                    requires_replace=True,
                    description="Unique name; changing it replaces the managed secret.",
                ),
                Attribute(
                    "kind",
                    String(),
                    required=True,
                    requires_replace=True,
                    description="`kv_generated`, `postgres_password`, `database_root` or `aws_iam_key`; "
                    "changing it replaces the managed secret.",
                ),
                Attribute(
                    "kv_mount",
                    String(),
                    optional=True,
                    requires_replace=True,
                    description="KV v2 mount consumers read (all kinds but `database_root`); forces replacement.",
                ),
                Attribute(
                    "kv_path",
                    String(),
                    optional=True,
                    requires_replace=True,
                    description="Path under the mount (all kinds but `database_root`); forces replacement.",
                ),
                Attribute(
                    "settings",
                    String(),
                    optional=True,
                    description="Kind-specific settings as JSON (`jsonencode({...})`), see docs/rotation.md.",
                ),
                Attribute(
                    "max_age_seconds",
                    Number(),
                    optional=True,
                    description="Rotate when older (>= 60); null: only on demand.",
                ),
                Attribute(
                    "overlap_seconds",
                    Number(),
                    optional=True,
                    description="How long the old value stays valid after a rotation (0 .. 2592000; default 0).",
                ),
                Attribute("state", String(), computed=True, description="Rotation state, e.g. `pending`, `active`."),
                Attribute("rotated_at", String(), computed=True, description="Last successful rotation."),
                Attribute("next_rotation_at", String(), computed=True, description="When max_age_seconds is due."),
            ],
        )

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        check_enum(diags, config, "kind", KINDS)
        kind = config.get("kind")
        if kind in KINDS:
            for key in ("kv_mount", "kv_path"):
                value = config.get(key)
                if kind in NO_KV and value is not None:
                    diags.add_error(
                        f"kind {kind} takes no {key}",
                        "OpenBao keeps a database root password itself; leave kv_mount and kv_path out",
                        path=[key],
                    )
                elif kind not in NO_KV and value is None:
                    diags.add_error(
                        f"kind {kind} needs {key}",
                        "set kv_mount and kv_path: where consumers read the value",
                        path=[key],
                    )
        settings = config.get("settings")
        if isinstance(settings, str) and not isinstance(_parse(settings), dict):
            diags.add_error("settings must be a JSON object", "write settings = jsonencode({ ... })", path=["settings"])
        age = config.get("max_age_seconds")
        if isinstance(age, (int, float)) and age < 60:
            diags.add_error(
                f"invalid max_age_seconds {age}",
                "max_age_seconds must be at least 60 (or left out: rotate only on demand)",
                path=["max_age_seconds"],
            )
        overlap = config.get("overlap_seconds")
        if isinstance(overlap, (int, float)) and not 0 <= overlap <= 30 * 86400:
            diags.add_error(
                f"invalid overlap_seconds {overlap}",
                "overlap_seconds must be between 0 and 2592000 (30 days)",
                path=["overlap_seconds"],
            )

    def plan(self, ctx: PlanContext, current: State | None, planned: State) -> State | None:
        if current is not None and ctx.changed_fields:
            for key in OUTPUTS:  # a PUT may move the schedule; rotation runs between plan and apply
                planned[key] = Unknown
        return planned

    def to_body(self, state: State) -> dict[str, Any]:
        settings = known(state.get("settings"), None)
        body: dict[str, Any] = {
            "kind": state["kind"],
            "settings": _parse(settings) if settings else {},
            "overlap_seconds": int(known(state.get("overlap_seconds"), 0)),
        }
        if known(state.get("kv_mount"), None) is not None or known(state.get("kv_path"), None) is not None:
            body["kv"] = {"mount": state.get("kv_mount"), "path": state.get("kv_path")}
        age = known(state.get("max_age_seconds"), None)
        body["max_age_seconds"] = None if age is None else int(age)
        return body

    def from_body(self, body: dict[str, Any], prior: State | None) -> State:
        kv = body.get("kv") or {}
        settings = body.get("settings") or {}
        before = (prior or {}).get("settings")
        if isinstance(before, str) and _within(_parse(before), settings):
            text = before  # the configuration's spelling; the broker only filled in defaults
        elif prior is not None and before is None:
            text = None  # left out: the broker's defaults, not managed by this configuration
        else:
            text = _canonical(settings) if settings else None
        return {
            "id": body["name"],
            "name": body["name"],
            "kind": body["kind"],
            "kv_mount": kv.get("mount"),
            "kv_path": kv.get("path"),
            "settings": text,
            "max_age_seconds": body.get("max_age_seconds"),
            "overlap_seconds": _unless_default(body.get("overlap_seconds", 0), 0, prior, "overlap_seconds"),
            "state": body.get("state"),
            "rotated_at": body.get("rotated_at"),
            "next_rotation_at": body.get("next_rotation_at"),
        }


def _unless_default(value: Any, default: Any, prior: State | None, key: str) -> Any:
    """Null while the configuration leaves ``key`` out and the broker holds the default; a value
    changed outside Terraform shows (optional + computed would hide it: Terraform keeps state)."""
    return None if value == default and (prior is None or prior.get(key) is None) else value


def _parse(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _canonical(value: Any) -> str:
    """The spelling of Terraform's ``jsonencode``: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _within(configured: Any, stored: Any) -> bool:
    """Every key the configuration sets has the same value in the broker's settings."""
    if isinstance(configured, dict) and isinstance(stored, dict):
        return all(k in stored and _within(v, stored[k]) for k, v in configured.items())
    return bool(configured == stored)
