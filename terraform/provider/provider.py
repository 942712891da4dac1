# mypy: disallow-subclassing-any=False
"""The provider: schema, configuration and the list of resource and data source types.

Configuration: ``endpoint`` and ``admin_token`` in the provider block, else ``NHI_BROKER_ADDR``
and ``NHI_BROKER_ADMIN_TOKEN``. Configuring reaches the broker once with an admin read, so an
unreachable broker or a wrong token fails the plan at once, on the attribute at fault.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from tf.iface import Config, DataSource, Provider, Resource
from tf.schema import Attribute, Schema
from tf.types import String, Unknown
from tf.utils import Diagnostics

from terraform.provider import PROVIDER_HOSTNAME, PROVIDER_SOURCE
from terraform.provider.client import ApiError, BrokerClient
from terraform.provider.data_sources import AgentData, PolicyBundleData
from terraform.provider.resources.agent import AgentResource
from terraform.provider.resources.managed_secret import ManagedSecretResource
from terraform.provider.resources.resource import ResourceResource
from terraform.provider.resources.scan_job import ScanJobResource
from terraform.provider.resources.task_profile import TaskProfileResource

ENV_ADDR = "NHI_BROKER_ADDR"
ENV_TOKEN = "NHI_BROKER_ADMIN_TOKEN"


class NhiBrokerProvider(Provider):
    def __init__(self) -> None:
        self.client: BrokerClient | None = None

    def get_model_prefix(self) -> str:
        return "nhibroker_"

    def full_name(self) -> str:
        return f"{PROVIDER_HOSTNAME}/{PROVIDER_SOURCE}"

    def get_provider_schema(self, diags: Diagnostics) -> Schema:
        return Schema(
            version=0,
            attributes=[
                Attribute(
                    "endpoint",
                    String(),
                    optional=True,
                    description=f"Broker URL, e.g. `http://127.0.0.1:8080`. Default: `${ENV_ADDR}`.",
                ),
                Attribute(
                    "admin_token",
                    String(),
                    optional=True,
                    sensitive=True,
                    description=f"Admin bearer token. Default: `${ENV_TOKEN}`.",
                ),
            ],
        )

    def validate_config(self, diags: Diagnostics, config: Config) -> None:
        endpoint = config.get("endpoint")
        if isinstance(endpoint, str) and endpoint and not _is_url(endpoint):
            diags.add_error(
                f'invalid endpoint "{endpoint}"',
                "endpoint must be an http:// or https:// URL of nhi-broker",
                path=["endpoint"],
            )

    def configure_provider(self, diags: Diagnostics, config: Config) -> None:
        endpoint = _setting(config, "endpoint", ENV_ADDR)
        token = _setting(config, "admin_token", ENV_TOKEN)
        if endpoint is Unknown or token is Unknown:
            return  # known only after apply of something else; Terraform configures again later
        if not endpoint:
            diags.add_error(
                "nhibroker: endpoint is not set", f"set endpoint in the provider block or {ENV_ADDR}", path=["endpoint"]
            )
        elif not _is_url(endpoint):
            diags.add_error(
                f'invalid endpoint "{endpoint}"',
                f"endpoint (or {ENV_ADDR}) must be an http:// or https:// URL",
                path=["endpoint"],
            )
        if not token:
            diags.add_error(
                "nhibroker: admin_token is not set",
                f"set admin_token in the provider block or {ENV_TOKEN}",
                path=["admin_token"],
            )
        if diags.has_errors():
            return
        client = BrokerClient(endpoint, token)
        try:
            client.check()
        except ApiError as exc:
            client.close()
            if exc.status == 0:
                diags.add_error(
                    f"nhibroker: cannot reach nhi-broker at {endpoint}",
                    f"{exc.message}. Is `nhi-broker up` (or serve) running there?",
                    path=["endpoint"],
                )
            elif exc.status == 401:
                diags.add_error("nhibroker: the admin token was rejected", exc.message, path=["admin_token"])
            else:
                diags.add_error(
                    f"nhibroker: nhi-broker at {endpoint} answered HTTP {exc.status}", exc.message, path=["endpoint"]
                )
            return
        self.client = client

    def get_resources(self) -> list[type[Resource]]:
        return [AgentResource, TaskProfileResource, ResourceResource, ScanJobResource, ManagedSecretResource]

    def get_data_sources(self) -> list[type[DataSource]]:
        return [AgentData, PolicyBundleData]


def _setting(config: Config, key: str, env: str) -> Any:
    value = config.get(key)
    if value is Unknown:
        return Unknown
    return value or os.environ.get(env, "")


def _is_url(value: str) -> bool:
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)
