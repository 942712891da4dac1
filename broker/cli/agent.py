"""``nhi-broker agent token NAME``: mint an identity token from the dev issuer."""

from __future__ import annotations

from pathlib import Path

import typer

from broker.cli._common import DataDirOption, handle_errors


def register(app: typer.Typer) -> None:
    agent_app = typer.Typer(help="Agent helpers (dev issuer).", no_args_is_help=True)

    @agent_app.command("token")
    @handle_errors
    def token(
        name: str = typer.Argument(..., help="Agent subject (the agent's dev-issuer binding)."),
        data_dir: Path = DataDirOption,
        ttl: int = typer.Option(300, "--ttl", min=10, max=3600, help="Token lifetime in seconds."),
        exchange: bool = typer.Option(
            False,
            "--exchange",
            help="Exchange it at the running broker (up.json) for a reusable bearer access token (RFC 8693).",
        ),
        mcp_url: str | None = typer.Option(
            None,
            "--mcp-url",
            help="Get a bearer token for that MCP server (`nhi-broker mcp --transport http`, e.g. "
            "http://127.0.0.1:8765/mcp) the way MCP authorization does: its 401, its metadata, the broker.",
        ),
    ) -> None:
        """Print a dev-issuer JWT for NAME on stdout (single use: mint one per request), with
        --exchange a broker access token that scripts can reuse until it expires, or with --mcp-url
        the bearer token an MCP host sends to that MCP server (docs/mcp.md)."""
        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
        import json

        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
        import httpx

        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
        from broker.identity import DevIssuer

        jwt = DevIssuer.load(data_dir).mint(name, ttl_seconds=ttl)
        if mcp_url is not None:
            # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
            from broker.client import BrokerClientError, mcp_access_token

            up_json = data_dir / "up.json"  # the broker this identity belongs to: the only token endpoint trusted
            broker = json.loads(up_json.read_text())["url"] if up_json.exists() else None
            try:
                mcp_token = mcp_access_token(mcp_url, jwt, authorization_server=broker)
            except (BrokerClientError, httpx.HTTPError, KeyError, ValueError) as exc:
                typer.echo(f"no MCP token for {mcp_url}: {exc}", err=True)
                raise typer.Exit(1) from None
            typer.echo(
                f"a bearer token for {mcp_url} only (the broker's API refuses it); send it as "
                "`Authorization: Bearer ...` from the MCP host",
                err=True,
            )
            typer.echo(mcp_token.reveal())
            return
        if not exchange:
            typer.echo(jwt)
            return
        up = data_dir / "up.json"
        if not up.exists():
            raise typer.BadParameter(
                f"{up} not found: --exchange needs a running `nhi-broker up`", param_hint="--exchange"
            )
        url = json.loads(up.read_text())["url"]
        r = httpx.post(
            f"{url}/v1/token",
            timeout=15,
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": jwt,
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            },
        )
        if r.status_code != 200:
            typer.echo(f"token exchange refused: {r.json().get('error_description', r.text[:200])}", err=True)
            raise typer.Exit(1)
        typer.echo(
            "warning: a bearer access token, NOT bound to a key: anyone holding it can use it until it "
            "expires. Agents should exchange with a DPoP proof (the Python client does: exchange=True).",
            err=True,
        )
        typer.echo(r.json()["access_token"])

    app.add_typer(agent_app, name="agent")
