"""``nhi-broker rotate NAME``: run one rotation of a managed secret on a running broker.

The broker is found through ``--url`` (env ``NHI_BROKER_ADDR``) and the admin token through the
environment (``NHI_BROKER_ADMIN_TOKEN``) — never a flag, so it stays out of shell history and
process lists — or both from ``--data-dir``'s ``up.json`` (``nhi-broker up``). Exit 0 when the
rotation completed, 1 when it failed (the old value stays in force) or the broker refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from broker.cli._common import DataDirOption, handle_errors, read_up_json
from broker.errors import BrokerError


def register(app: typer.Typer) -> None:
    @app.command("rotate")
    @handle_errors
    def rotate(
        name: str = typer.Argument(..., help="Name of the managed secret."),
        reason: str = typer.Option(
            "manual", "--reason", help='Why: "manual", "leak" (retires the old value at once).'
        ),
        url: str = typer.Option(
            "", "--url", envvar="NHI_BROKER_ADDR", help="Broker URL (default: from up.json)."
        ),
        data_dir: Path = DataDirOption,
        as_json: bool = typer.Option(False, "--json", help="Print the rotation result as JSON."),
    ) -> None:
        """Rotate NAME now: create, store, verify, switch, retire (per its playbook)."""
        import httpx

        token = os.environ.get("NHI_BROKER_ADMIN_TOKEN", "")
        if not url or not token:
            up = read_up_json(data_dir)
            url, token = url or str(up.get("url", "")), token or str(up.get("admin_token", ""))
        try:
            resp = httpx.post(
                f"{url.rstrip('/')}/v1/admin/managed-secrets/{name}/rotate",
                json={"reason": reason},
                headers={"Authorization": f"Bearer {token}"},
                timeout=120,
                trust_env=False,
            )
        except httpx.HTTPError as exc:
            raise BrokerError(f"the broker at {url} is unreachable ({type(exc).__name__})") from exc
        body = resp.json() if resp.content else {}
        result = body if resp.status_code == 200 else (body.get("error") or {}).get("rotation")
        if as_json and result:
            typer.echo(json.dumps(result, indent=2))
        if resp.status_code != 200:
            raise BrokerError(
                str((body.get("error") or {}).get("message") or f"broker answered {resp.status_code}")
            )
        if not as_json:
            retired = (
                "old value retired"
                if result.get("retired")
                else f"old value retired at {result.get('retire_at')}"
            )
            typer.echo(
                f'rotated "{name}" ({result["kind"]}): steps {", ".join(result["steps"])}; '
                f"KV version {result.get('kv_version')}; {retired}"
            )
