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
from typing import Any

import typer

from broker.cli._common import DataDirOption, handle_errors, read_up_json
from broker.errors import BrokerError


def register(app: typer.Typer) -> None:
    @app.command("rotate")
    @handle_errors
    def rotate(
        name: str = typer.Argument(..., help="Name of the managed secret."),
        reason: str = typer.Option("manual", "--reason", help='Why: "manual", "leak" (retires the old value at once).'),
        url: str = typer.Option("", "--url", envvar="NHI_BROKER_ADDR", help="Broker URL (default: from up.json)."),
        data_dir: Path = DataDirOption,
        as_json: bool = typer.Option(False, "--json", help="Print the rotation result as JSON."),
    ) -> None:
        """Rotate NAME now: create, store, verify, switch, retire (per its playbook)."""
        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
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
        body: dict[str, Any] = resp.json() if resp.content else {}
        if resp.status_code != 200:
            error = body.get("error") or {}
            if as_json and error.get("rotation"):
                typer.echo(json.dumps(error["rotation"], indent=2))
            raise BrokerError(str(error.get("message") or f"broker answered {resp.status_code}"))
        if as_json:
            typer.echo(json.dumps(body, indent=2))
            return
        when = "at once" if body.get("retired") else f"at {body.get('retire_at')}"
        typer.echo(
            f'rotated "{name}" ({body["kind"]}): steps {", ".join(body["steps"])}; '
            f"KV version {body.get('kv_version')}; old value retired {when}"
        )
