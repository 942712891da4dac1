"""``nhibroker_agent``: a registered non-human identity (``/v1/admin/agents/{name}``)."""

from __future__ import annotations

from typing import Any

from tf.blocks import SetNestedBlock
from tf.iface import Config, State
from tf.schema import Attribute, Block, Schema
from tf.types import Map, Set, String
from tf.utils import Diagnostics

from broker.models import TrustLevel
from terraform.provider.resources.base import BrokerResource, check_enum
from terraform.provider.resources.base import known as _known
from terraform.provider.schema_util import SingleNestedBlock

OWNER_FIELDS = ("person", "issuer", "subject")


class AgentResource(BrokerResource):
    suffix = "agent"
    collection = "agents"
    noun = "agent"
    renames = {"identities": "identity"}
    sets = frozenset({"identity", "profiles"})

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description="An agent: a registered non-human identity, the identities (issuer + subject) "
            "it proves itself with, and the task profiles it may open.",
            attributes=[
                Attribute("id", String(), computed=True, description="The agent's name."),
                Attribute(
                    "name",
                    String(),
                    required=True,
                    requires_replace=True,
                    description="Unique name; changing it replaces the agent.",
                ),
                Attribute("owner", String(), required=True, description="Team or person accountable."),
                Attribute(
                    "trust_level",
                    String(),
                    optional=True,
                    computed=True,
                    default="standard",
                    description="`low`, `standard` (default) or `high`.",
                ),
                Attribute("description", String(), optional=True, computed=True, default=""),
                Attribute(
                    "profiles",
                    Set(String()),
                    optional=True,
                    computed=True,
                    default=[],
                    description="Task profiles the agent may open; each must exist.",
                ),
            ],
            block_types=[
                SetNestedBlock(
                    "identity",
                    Block(
                        description="A workload identity the agent presents (JWT `iss` + `sub`).",
                        attributes=[
                            Attribute("issuer", String(), required=True),
                            Attribute("subject", String(), required=True),
                            Attribute(
                                "claims",
                                Map(String()),
                                optional=True,
                                description="Further claims the token must carry.",
                            ),
                        ],
                    ),
                ),
                SingleNestedBlock(
                    "owner_identity",
                    Block(
                        description="The agent's bound owner: a registered person (`person`) or an OIDC "
                        "`issuer` + `subject`. Four-eyes refuses them as approver or reviewer of "
                        "this agent's requests; without it nothing the agent asks is approvable.",
                        attributes=[
                            Attribute("person", String(), optional=True, description="A person's name."),
                            Attribute("issuer", String(), optional=True, description="A human issuer."),
                            Attribute("subject", String(), optional=True, description="Their `sub` there."),
                        ],
                    ),
                ),
            ],
        )

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        check_enum(diags, config, "trust_level", [t.value for t in TrustLevel])
        owner = config.get("owner_identity")
        if isinstance(owner, dict):
            person = owner.get("person")
            pair = [owner.get("issuer"), owner.get("subject")]
            if (person is None) == (None in pair) or (person is not None and any(v is not None for v in pair)):
                diags.add_error(
                    "owner_identity is either person, or issuer and subject",
                    'set person = "alice", or issuer and subject',
                    path=["owner_identity"],
                )

    def to_body(self, state: State) -> dict[str, Any]:
        identities = [
            {"issuer": i["issuer"], "subject": i["subject"], "claims": i.get("claims") or {}}
            for i in state.get("identity") or []
        ]
        return {
            "owner": state["owner"],
            "trust_level": _known(state.get("trust_level"), "standard"),
            "description": _known(state.get("description"), ""),
            "profiles": list(_known(state.get("profiles"), [])),
            "identities": identities,
            "owner_identity": _owner(state.get("owner_identity")),
        }

    def from_body(self, body: dict[str, Any], prior: State | None) -> State:
        prior_ids = {(i["issuer"], i["subject"]): i for i in (prior or {}).get("identity") or []}
        identities = []
        for ident in body.get("identities") or []:
            claims = ident.get("claims") or {}
            before = prior_ids.get((ident["issuer"], ident["subject"]))
            if not claims:  # keep the configuration's spelling of "no claims": null or {}
                claims = {} if before is not None and before.get("claims") == {} else None
            identities.append({"issuer": ident["issuer"], "subject": ident["subject"], "claims": claims})
        return {
            "id": body["name"],
            "name": body["name"],
            "owner": body["owner"],
            "trust_level": body.get("trust_level", "standard"),
            "description": body.get("description") or "",
            "profiles": list(body.get("profiles") or []),
            "identity": identities,
            "owner_identity": (
                {f: (body.get("owner_identity") or {}).get(f) for f in OWNER_FIELDS}
                if body.get("owner_identity")
                else None
            ),
        }


def _owner(block: Any) -> dict[str, str] | None:
    if not isinstance(block, dict):
        return None
    return {f: block[f] for f in OWNER_FIELDS if isinstance(block.get(f), str)}
