"""``nhi-broker mcp``: serve the agent API as MCP tools over stdio (docs/mcp.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from broker.cli._common import DATA_DIR_ENV, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("mcp")
    @handle_errors
    def mcp(
        url: str = typer.Option(..., "--url", envvar="NHI_BROKER_URL", help="The broker's URL."),
        identity_token_file: Path | None = typer.Option(
            None, "--identity-token-file", help="Workload identity token file (re-read when it changes)."
        ),
        data_dir: Path | None = typer.Option(
            None, "--data-dir", envvar=DATA_DIR_ENV, help="Dev issuer: `nhi-broker up`'s data dir."
        ),
        agent: str | None = typer.Option(None, "--agent", help="Dev issuer: the agent's subject."),
        transport: str = typer.Option("stdio", "--transport", help="stdio (http: not built yet)."),
    ) -> None:
        """Run an MCP server (stdio) whose tools call the broker as this agent: open_task, call_api,
        request_credential, report_event, scan_text, approval_status, end_task."""
        if transport != "stdio":
            raise typer.BadParameter(
                "only stdio is built so far (streamable HTTP: docs/mcp.md)", param_hint="--transport"
            )
        if (identity_token_file is None) == (data_dir is None or agent is None):
            raise typer.BadParameter(
                "give --identity-token-file PATH, or --data-dir DIR with --agent NAME (not both)",
                param_hint="--identity-token-file",
            )
        # deferred: the MCP SDK is heavy and every command module loads at CLI start
        from broker.agent_mcp import identity_source, serve_stdio

        serve_stdio(url, identity_source(identity_token_file, data_dir, agent))
