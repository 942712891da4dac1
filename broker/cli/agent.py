"""``nhi-broker agent token NAME``: mint an identity token from the dev issuer."""

from __future__ import annotations

from pathlib import Path

import typer

from broker.cli._common import DataDirOption, handle_errors


def register(app: typer.Typer) -> None:
    agent_app = typer.Typer(help="Agent helpers (dev issuer).", no_args_is_help=True)

    @agent_app.command("token")
    @handle_errors
    def token(name: str = typer.Argument(..., help="Agent subject (the agent's dev-issuer binding)."),
              data_dir: Path = DataDirOption,
              ttl: int = typer.Option(300, "--ttl", min=10, max=3600, help="Token lifetime in seconds.")) -> None:
        """Print a dev-issuer JWT for NAME on stdout (single use: mint one per request)."""
        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
        from broker.identity import DevIssuer

        typer.echo(DevIssuer.load(data_dir).mint(name, ttl_seconds=ttl))

    app.add_typer(agent_app, name="agent")
