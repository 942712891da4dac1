"""``nhi-broker mcp``: serve the agent API as MCP tools over stdio or streamable HTTP (docs/mcp.md)."""

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
        transport: str = typer.Option("stdio", "--transport", help="stdio, or http (streamable HTTP)."),
        host: str = typer.Option("127.0.0.1", "--host", help="http: the address to listen on."),
        port: int = typer.Option(8765, "--port", min=1, max=65535, help="http: the port to listen on."),
        resource_url: str | None = typer.Option(
            None,
            "--resource-url",
            help="http: this server's URL as clients see it (the token audience, registered in the broker's "
            "token_exchange.mcp_resources); default http://HOST:PORT/mcp.",
        ),
        max_sessions: int = typer.Option(
            1000, "--max-sessions", min=1, max=100_000, help="http: open MCP sessions at most (memory bound)."
        ),
    ) -> None:
        """Run an MCP server whose tools call the broker: open_task, call_api, request_credential,
        report_event, scan_text, approval_status, end_task. stdio: as the agent of the identity given.
        http: as the agent of each client's audience-bound token; the identity given is then the MCP
        server's own (the `server_agent` of its `token_exchange.mcp_resources` entry)."""
        if transport not in ("stdio", "http"):
            raise typer.BadParameter(f"{transport!r}: must be stdio or http", param_hint="--transport")
        if (identity_token_file is None) == (data_dir is None or agent is None):
            raise typer.BadParameter(
                "give --identity-token-file PATH, or --data-dir DIR with --agent NAME (not both)",
                param_hint="--identity-token-file",
            )
        # deferred: the MCP SDK is heavy and every command module loads at CLI start
        from broker.agent_mcp import identity_source, serve_http, serve_stdio

        identity = identity_source(identity_token_file, data_dir, agent)
        if transport == "http":
            serve_http(url, identity, host=host, port=port, resource_url=resource_url, max_sessions=max_sessions)
        else:
            serve_stdio(url, identity)
