# mypy: disallow-subclassing-any=False
"""Data sources: ``nhibroker_agent`` (read an agent by name) and ``nhibroker_policy_bundle``
(the hash of the policy bundle the broker is enforcing, e.g. to pin it in a check block)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tf.iface import Config, DataSource, ReadDataContext, State
from tf.schema import Attribute, Schema
from tf.types import List, Map, String
from tf.utils import Diagnostics

from terraform.provider.client import ApiError, BrokerClient
from terraform.provider.schema_util import Object, report

if TYPE_CHECKING:
    from terraform.provider.provider import NhiBrokerProvider

IDENTITY = Object({"issuer": String(), "subject": String(), "claims": Map(String())})


class _Base(DataSource):
    def __init__(self, provider: NhiBrokerProvider) -> None:
        self.provider = provider

    def _client(self, diags: Diagnostics) -> BrokerClient | None:
        if self.provider.client is None:
            diags.add_error(
                "the nhibroker provider is not configured",
                "set endpoint and admin_token, or NHI_BROKER_ADDR and NHI_BROKER_ADMIN_TOKEN",
            )
        return self.provider.client


class AgentData(_Base):
    @classmethod
    def get_name(cls) -> str:
        return "agent"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description="Read a registered agent by name.",
            attributes=[
                Attribute("name", String(), required=True),
                Attribute("id", String(), computed=True),
                Attribute("owner", String(), computed=True),
                Attribute("trust_level", String(), computed=True),
                Attribute("description", String(), computed=True),
                Attribute("profiles", List(String()), computed=True),
                Attribute("identities", List(IDENTITY), computed=True),
            ],
        )

    def read(self, ctx: ReadDataContext, config: Config) -> State | None:
        client = self._client(ctx.diagnostics)
        if client is None:
            return None
        name = config["name"]
        try:
            body = client.get("agents", name)
        except ApiError as exc:
            report(ctx.diagnostics, f'agent "{name}"', exc)
            return None
        if body is None:
            ctx.diagnostics.add_error(f'agent "{name}" does not exist in nhi-broker', path=["name"])
            return None
        identities: list[dict[str, Any]] = [
            IDENTITY.encode({"issuer": i["issuer"], "subject": i["subject"], "claims": i.get("claims") or {}})
            for i in body.get("identities") or []
        ]
        return {
            "name": body["name"],
            "id": body["name"],
            "owner": body["owner"],
            "trust_level": body.get("trust_level"),
            "description": body.get("description") or "",
            "profiles": sorted(body.get("profiles") or []),
            "identities": identities,
        }


class PolicyBundleData(_Base):
    @classmethod
    def get_name(cls) -> str:
        return "policy_bundle"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description="The policy bundle the broker is enforcing now.",
            attributes=[
                Attribute("id", String(), computed=True, description="Same as bundle_hash."),
                Attribute(
                    "bundle_hash",
                    String(),
                    computed=True,
                    description="Hash of the active Cedar policy bundle; every decision records it.",
                ),
                Attribute("directory", String(), computed=True),
                Attribute("loaded_at", String(), computed=True),
            ],
        )

    def read(self, ctx: ReadDataContext, config: Config) -> State | None:
        client = self._client(ctx.diagnostics)
        if client is None:
            return None
        try:
            body = client.policy_bundle()
        except ApiError as exc:
            report(ctx.diagnostics, "policy bundle", exc)
            return None
        return {
            "id": body.get("bundle_hash"),
            "bundle_hash": body.get("bundle_hash"),
            "directory": None if body.get("directory") is None else str(body["directory"]),
            "loaded_at": None if body.get("loaded_at") is None else str(body["loaded_at"]),
        }
