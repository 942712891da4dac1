"""``nhibroker_task_profile``: a template for work (``/v1/admin/profiles/{name}``)."""

from __future__ import annotations

from typing import Any

from tf.iface import Config, State
from tf.schema import Attribute, Schema
from tf.types import Number, Set, String
from tf.utils import Diagnostics

from broker.models import Tier
from terraform.provider.resources.base import BrokerResource, check_enum
from terraform.provider.resources.base import known as _known


class TaskProfileResource(BrokerResource):
    suffix = "task_profile"
    collection = "profiles"
    noun = "task profile"
    sets = frozenset({"allowed_actions"})

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description="A task profile: the actions a task may request, its risk ceiling and its maximum lifetime.",
            attributes=[
                Attribute("id", String(), computed=True, description="The profile's name."),
                Attribute(
                    "name",
                    String(),
                    required=True,
                    requires_replace=True,
                    description="Unique name; changing it replaces the profile.",
                ),
                Attribute(
                    "allowed_actions",
                    Set(String()),
                    required=True,
                    description="Actions from the broker's action catalog (`db.read`, ...).",
                ),
                Attribute(
                    "ceiling",
                    String(),
                    optional=True,
                    computed=True,
                    description="Highest risk tier a task may reach before it escalates: "
                    "`low`, `medium`, `high`, `critical` (broker default when unset).",
                ),
                Attribute(
                    "max_lifetime_seconds",
                    Number(),
                    optional=True,
                    computed=True,
                    default=3600,
                    description="60 .. 86400, default 3600.",
                ),
                Attribute("description", String(), optional=True, computed=True, default=""),
            ],
        )

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        check_enum(diags, config, "ceiling", [t.value for t in Tier])
        life = config.get("max_lifetime_seconds")
        if isinstance(life, (int, float)) and not 60 <= life <= 86400:
            diags.add_error(
                f"invalid max_lifetime_seconds {life}",
                "max_lifetime_seconds must be between 60 and 86400",
                path=["max_lifetime_seconds"],
            )

    def to_body(self, state: State) -> dict[str, Any]:
        body: dict[str, Any] = {
            "allowed_actions": list(state["allowed_actions"] or []),
            "description": _known(state.get("description"), ""),
        }
        if _known(state.get("ceiling"), None) is not None:
            body["ceiling"] = state["ceiling"]
        if _known(state.get("max_lifetime_seconds"), None) is not None:
            body["max_lifetime_seconds"] = int(state["max_lifetime_seconds"])
        return body

    def from_body(self, body: dict[str, Any], prior: State | None) -> State:
        return {
            "id": body["name"],
            "name": body["name"],
            "allowed_actions": list(body.get("allowed_actions") or []),
            "ceiling": body.get("ceiling"),
            "max_lifetime_seconds": body.get("max_lifetime_seconds"),
            "description": body.get("description") or "",
        }
