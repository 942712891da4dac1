"""``nhibroker_resource``: a target the platform team registered (``/v1/admin/resources/{name}``).

Backend settings are two optional blocks, as in the API body: ``vault`` (kinds ``vault_token``:
``policies``; ``vault_kv``: ``mount`` + ``path``; ``postgres``: ``mount`` + ``role``) and ``aws``
(kind ``aws``: ``role_arn``, ``region``, ``endpoint_url``, ``external_id``) and ``http`` (kind
``http_api``: ``base_url``, ``auth``, ``source``, ``rules``, and for AWS SigV4 ``role_arn``,
``region``, ``service`` ...; docs/backends.md). The broker checks
them against the real backend on every ``PUT``; a policy, role or path that does not exist comes
back as a diagnostic on that attribute. ``aws.external_id`` is a shared secret with the role's
trust policy, so it is sensitive: Terraform never shows it in a plan.
"""

from __future__ import annotations

from typing import Any

from tf.iface import Config, State
from tf.schema import Attribute, Block, Schema
from tf.types import Bool, List, Set, String, Unknown
from tf.utils import Diagnostics

from broker.models import Environment, Sensitivity
from terraform.provider.resources.base import BrokerResource, check_enum, known
from terraform.provider.schema_util import SingleNestedBlock

KINDS = ["vault_token", "vault_kv", "postgres", "aws", "http_api"]
BLOCK_OF_KIND = {"vault_token": "vault", "vault_kv": "vault", "postgres": "vault", "aws": "aws", "http_api": "http"}

VAULT = [
    Attribute(
        "policies",
        Set(String()),
        optional=True,
        description="kind `vault_token`: OpenBao ACL policies of the issued token (must exist).",
    ),
    Attribute("mount", String(), optional=True, description="kinds `vault_kv`, `postgres`: the secrets engine mount."),
    Attribute("path", String(), optional=True, description="kind `vault_kv`: the secret's path."),
    Attribute("role", String(), optional=True, description="kind `postgres`: the database role."),
]
AWS = [
    Attribute("role_arn", String(), optional=True, description="The IAM role the broker assumes."),
    Attribute("region", String(), optional=True),
    Attribute("endpoint_url", String(), optional=True, description="STS endpoint (e.g. a moto server)."),
    Attribute(
        "external_id",
        String(),
        optional=True,
        sensitive=True,
        description="External ID the role's trust policy requires. Sensitive.",
    ),
]
HTTP = [
    Attribute(
        "base_url",
        String(),
        optional=True,
        description="The upstream's base URL: loopback, or a host in the broker's gateway.allowed_hosts.",
    ),
    Attribute("auth", String(), optional=True, description="`bearer`, `header`, `basic`, `query` or `sigv4` (AWS)."),
    Attribute("auth_name", String(), optional=True, description="auth `header`/`query`: the header or parameter."),
    Attribute("username", String(), optional=True, description="auth `basic`: the user name."),
    Attribute(
        "source",
        String(),
        optional=True,
        description="`vault_kv` (a static key), `vault_token` or `aws_sts` (an STS session, with auth `sigv4`).",
    ),
    Attribute("mount", String(), optional=True, description="source `vault_kv`: the KV mount."),
    Attribute("path", String(), optional=True, description="source `vault_kv`: the secret's path."),
    Attribute("field", String(), optional=True, description="source `vault_kv`: the field holding the key."),
    Attribute("policies", Set(String()), optional=True, description="source `vault_token`: ACL policies."),
    Attribute("role_arn", String(), optional=True, description="source `aws_sts`: the IAM role the broker assumes."),
    Attribute("region", String(), optional=True, description="source `aws_sts`: the region (session and signature)."),
    Attribute("service", String(), optional=True, description='auth `sigv4`: the AWS signing name, e.g. "s3".'),
    Attribute("sts_endpoint_url", String(), optional=True, description="source `aws_sts`: STS/IAM endpoint (moto)."),
    Attribute(
        "resources", List(String()), optional=True, description="source `aws_sts`: ARNs the session policy allows."
    ),
    Attribute(
        "rules", List(String()), optional=True, description='Request rules, first match wins: "METHOD /path/* action".'
    ),
]
SENSITIVE = {"external_id"}
BLOCKS = (("vault", VAULT), ("aws", AWS), ("http", HTTP))


class ResourceResource(BrokerResource):
    suffix = "resource"
    collection = "resources"
    noun = "resource"
    sets = frozenset({"policies"})

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description="A resource: a backend binding the broker issues credentials for, with its "
            "sensitivity and environment.",
            attributes=[
                Attribute("id", String(), computed=True, description="The resource's name."),
                Attribute(
                    "name",
                    String(),
                    required=True,
                    requires_replace=True,
                    description="Unique name; changing it replaces the resource.",
                ),
                Attribute(
                    "kind",
                    String(),
                    required=True,
                    description="`vault_token`, `vault_kv`, `postgres`, `aws` or `http_api` (changed in place).",
                ),
                Attribute(
                    "sensitivity",
                    String(),
                    required=True,
                    description="`public`, `internal`, `confidential` or `restricted`.",
                ),
                Attribute("environment", String(), required=True, description="`dev`, `staging` or `prod`."),
                Attribute(
                    "external",
                    Bool(),
                    optional=True,
                    computed=True,
                    default=False,
                    description="Does writing here leave the organisation? Default false.",
                ),
                Attribute(
                    "agent_may_hold",
                    Bool(),
                    optional=True,
                    computed=True,
                    description="May an agent be handed the credential? Default true, except http_api "
                    "(false: the gateway only injects it). False: the broker makes the calls that need it.",
                ),
                Attribute("description", String(), optional=True, computed=True, default=""),
            ],
            block_types=[
                SingleNestedBlock("vault", Block(attributes=VAULT, description="OpenBao/Vault settings.")),
                SingleNestedBlock("aws", Block(attributes=AWS, description="AWS STS settings.")),
                SingleNestedBlock("http", Block(attributes=HTTP, description="http_api: upstream, credential, rules.")),
            ],
        )

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        check_enum(diags, config, "kind", KINDS)
        check_enum(diags, config, "sensitivity", [s.value for s in Sensitivity])
        check_enum(diags, config, "environment", [e.value for e in Environment])
        kind = config.get("kind")
        if kind in BLOCK_OF_KIND:
            block = BLOCK_OF_KIND[kind]
            if config.get(block) is None:
                diags.add_error(
                    f"kind {kind} needs a {block} block",
                    f"add a {block} {{ ... }} block with the {kind} settings",
                    path=["kind"],
                )

    def to_body(self, state: State) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": state["kind"],
            "sensitivity": state["sensitivity"],
            "environment": state["environment"],
            "external": bool(known(state.get("external"), False)),
            "description": known(state.get("description"), ""),
        }
        may_hold = known(state.get("agent_may_hold"), None)
        if may_hold is not None:
            body["agent_may_hold"] = bool(may_hold)
        for block, _ in BLOCKS:
            settings = state.get(block)
            if settings is not None:
                body[block] = {
                    k: (list(v) if isinstance(v, list) else v)
                    for k, v in settings.items()
                    if v is not None and v is not Unknown
                }
        return body

    def from_body(self, body: dict[str, Any], prior: State | None) -> State:
        state: State = {
            "id": body["name"],
            "name": body["name"],
            "kind": body["kind"],
            "sensitivity": body["sensitivity"],
            "environment": body["environment"],
            "external": bool(body.get("external", False)),
            "agent_may_hold": bool(body.get("agent_may_hold", body["kind"] != "http_api")),
            "description": body.get("description") or "",
        }
        for block, attrs in BLOCKS:
            got = body.get(block)
            before = (prior or {}).get(block)
            if not isinstance(got, dict):
                state[block] = None
                continue
            out = {}
            for attr in attrs:
                value = got.get(attr.name)
                if attr.name in SENSITIVE and value is None and before:
                    value = before.get(attr.name)  # the broker may not echo a secret back
                elif prior is not None and before is not None and before.get(attr.name) is None:
                    value = None  # a default the broker filled in: not managed by this configuration
                out[attr.name] = list(value) if isinstance(value, list) else value
            state[block] = out
        return state
