"""``nhibroker_scan_job``: a scheduled leak scan (``/v1/admin/scan-jobs/{name}``, docs/scheduled-scans.md).

Three blocks, as in the API body: ``source`` (``kind`` = ``files``: ``path``; ``git``: ``repo``,
``refs``; ``s3``: ``bucket``, ``prefix``, ``endpoint_url``, ``region``; ``openbao_kv``: ``mount``,
``path``, ``version``), ``schedule`` (exactly one of ``every_seconds``, ``cron``) and
``on_finding`` (optional). Every attribute but ``name`` changes in place: a ``PUT`` replaces the
job's definition and reschedules it, and its findings stay.

``source.repo`` is sensitive: a git URL may carry credentials (``https://user:token@host/...``)
and the broker stores and echoes it as given.
"""

from __future__ import annotations

from typing import Any

from tf.iface import Config, State
from tf.schema import Attribute, Block, Schema
from tf.types import Bool, List, Number, String, Unknown
from tf.utils import Diagnostics

from terraform.provider.resources.base import BrokerResource, check_enum, known
from terraform.provider.schema_util import SingleNestedBlock

SOURCE_KEYS = {
    "files": ("path",),
    "git": ("repo", "refs"),
    "s3": ("bucket", "prefix", "endpoint_url", "region"),
    "openbao_kv": ("mount", "path", "version"),
}
# what the broker fills in when the configuration leaves a key out (rotation/scan_spec.py)
SOURCE_DEFAULTS: dict[str, dict[str, Any]] = {
    "git": {"refs": ["--all"]},
    "s3": {"prefix": ""},
    "openbao_kv": {"mount": "secret", "path": "", "version": 2},
}
ON_FINDING_DEFAULTS: dict[str, Any] = {"broker_issued": "revoke", "managed": "rotate", "alert": True}

SOURCE = [
    Attribute("kind", String(), required=True, description="`files`, `git`, `s3` or `openbao_kv`."),
    Attribute(
        "path",
        String(),
        optional=True,
        description="`files`: an absolute directory or glob; `openbao_kv`: sub-path to sweep.",
    ),
    Attribute(
        "repo",
        String(),
        optional=True,
        sensitive=True,
        description="`git`: a local path or an https://, ssh:// or file:// URL. Sensitive (a URL "
        "may carry credentials).",
    ),
    Attribute(
        "refs",
        List(String()),
        optional=True,
        description='`git`: refs to follow; default every branch and tag (`["--all"]`).',
    ),
    Attribute("bucket", String(), optional=True, description="`s3`: the bucket."),
    Attribute("prefix", String(), optional=True, description="`s3`: key prefix (default all keys)."),
    Attribute(
        "endpoint_url",
        String(),
        optional=True,
        description="`s3`: S3 endpoint (default the broker's aws.endpoint_url).",
    ),
    Attribute("region", String(), optional=True, description="`s3`: the bucket's region."),
    Attribute("mount", String(), optional=True, description="`openbao_kv`: KV mount (default `secret`)."),
    Attribute("version", Number(), optional=True, description="`openbao_kv`: KV version 1 or 2 (default 2)."),
]
SCHEDULE = [
    Attribute("every_seconds", Number(), optional=True, description="Run every N seconds (1 .. 604800)."),
    Attribute("cron", String(), optional=True, description='Five-field crontab in UTC, e.g. "0 * * * *".'),
]
ON_FINDING = [
    Attribute(
        "broker_issued",
        String(),
        optional=True,
        description="A credential the broker issued: `revoke` (default; also escalates its task) or `alert`.",
    ),
    Attribute(
        "managed", String(), optional=True, description="A managed static secret: `rotate` (default) or `alert`."
    ),
    Attribute("alert", Bool(), optional=True, description="Send an alert for every new finding (default true)."),
]


class ScanJobResource(BrokerResource):
    suffix = "scan_job"
    collection = "scan-jobs"
    noun = "scan job"
    # the broker names source errors by kind (source.files.path); the block has no kind level
    renames = {f"source.{kind}": "source" for kind in SOURCE_KEYS}

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description="A scheduled leak scan: what to scan, when, and what to do on a finding.",
            attributes=[
                Attribute("id", String(), computed=True, description="The job's name."),
                Attribute(
                    "name",
                    String(),
                    required=True,
                    requires_replace=True,
                    description="Unique name; changing it replaces the job.",
                ),
                Attribute(
                    "enabled",
                    Bool(),
                    optional=True,
                    description="Default true; a disabled job keeps its definition and findings but never runs.",
                ),
            ],
            block_types=[
                SingleNestedBlock("source", Block(attributes=SOURCE, description="What to scan (required).")),
                SingleNestedBlock(
                    "schedule",
                    Block(attributes=SCHEDULE, description="When to scan (required): one of every_seconds, cron."),
                ),
                SingleNestedBlock("on_finding", Block(attributes=ON_FINDING, description="What to do on a finding.")),
            ],
        )

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        source, schedule = config.get("source"), config.get("schedule")
        if source is None:
            diags.add_error(
                "a scan job needs a source block",
                'add source { kind = "files" path = "/var/log/agents" } (or git, s3, openbao_kv)',
            )
        elif source is not Unknown:
            check_enum(diags, source, "kind", list(SOURCE_KEYS), path=["source", "kind"])
            kind = source.get("kind")
            if kind in SOURCE_KEYS:
                for attr in SOURCE[1:]:
                    if source.get(attr.name) is not None and attr.name not in SOURCE_KEYS[kind]:
                        diags.add_error(
                            f"source.{attr.name} does not apply to kind {kind}",
                            f"kind {kind} takes: {', '.join(SOURCE_KEYS[kind])}",
                            path=["source", attr.name],
                        )
                required = {"files": "path", "git": "repo", "s3": "bucket"}.get(kind)
                if required and source.get(required) is None:
                    diags.add_error(
                        f"kind {kind} needs source.{required}",
                        f"set {required} in the source block",
                        path=["source", required],
                    )
        if schedule is None:
            diags.add_error(
                "a scan job needs a schedule block",
                'add schedule { every_seconds = 3600 } or schedule { cron = "0 * * * *" }',
            )
        elif schedule is not Unknown:
            every, cron = schedule.get("every_seconds"), schedule.get("cron")
            if every is not Unknown and cron is not Unknown and (every is None) == (cron is None):
                diags.add_error(
                    "schedule needs exactly one of every_seconds, cron",
                    "set every_seconds (seconds between runs) or cron (five fields, UTC)",
                    path=["schedule"],
                )
            if isinstance(every, (int, float)) and not 1 <= every <= 7 * 86400:
                diags.add_error(
                    f"invalid every_seconds {every}",
                    "every_seconds must be between 1 and 604800",
                    path=["schedule", "every_seconds"],
                )
        on_finding = config.get("on_finding")
        if isinstance(on_finding, dict):
            check_enum(diags, on_finding, "broker_issued", ["revoke", "alert"], path=["on_finding", "broker_issued"])
            check_enum(diags, on_finding, "managed", ["rotate", "alert"], path=["on_finding", "managed"])

    def to_body(self, state: State) -> dict[str, Any]:
        body: dict[str, Any] = {"enabled": bool(known(state.get("enabled"), True))}
        for block in ("source", "schedule", "on_finding"):
            settings = state.get(block)
            if settings is None or settings is Unknown:
                continue
            out = {}
            for key, value in settings.items():
                if value is None or value is Unknown:
                    continue
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                out[key] = list(value) if isinstance(value, list) else value
            body[block] = out
        return body

    def from_body(self, body: dict[str, Any], prior: State | None) -> State:
        source = body.get("source") or {}
        kind = str(source.get("kind"))
        return {
            "id": body["name"],
            "name": body["name"],
            "enabled": _enabled(body, prior),
            "source": _block(SOURCE, source, (prior or {}).get("source"), SOURCE_DEFAULTS.get(kind, {}), always=True),
            "schedule": _block(SCHEDULE, body.get("schedule") or {}, (prior or {}).get("schedule"), {}, always=True),
            "on_finding": _block(
                ON_FINDING,
                body.get("on_finding") or {},
                (prior or {}).get("on_finding"),
                ON_FINDING_DEFAULTS,
                always=False,
            ),
        }


def _enabled(body: dict[str, Any], prior: State | None) -> bool | None:
    """Null while the configuration leaves it out and the job is enabled; a job disabled outside
    Terraform shows as drift (optional + computed would hide it: Terraform would keep the state)."""
    enabled = bool(body.get("enabled", True))
    return None if enabled and (prior is None or prior.get("enabled") is None) else enabled


def _block(
    attrs: list[Attribute],
    got: dict[str, Any],
    before: dict[str, Any] | None,
    defaults: dict[str, Any],
    *,
    always: bool,
) -> dict[str, Any] | None:
    """The broker's block -> state. A value the configuration left out (null before, or no prior
    at all on import) stays null while it is the broker's default; any other value shows, so a
    change made outside Terraform is drift even where the configuration relies on a default."""
    out: dict[str, Any] = {}
    for attr in attrs:
        value = got.get(attr.name)
        was = before.get(attr.name) if before else None
        if was is None and attr.name in defaults and value == defaults[attr.name]:
            value = None
        elif attr.name == "path" and isinstance(was, str) and isinstance(value, str) and was.strip("/") == value:
            value = was  # openbao_kv paths are stored without leading/trailing slashes
        out[attr.name] = list(value) if isinstance(value, list) else value
    if not always and before is None and all(v is None for v in out.values()):
        return None  # block left out and every value is the default
    return out
