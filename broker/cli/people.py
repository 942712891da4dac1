"""``nhi-broker people put|list|show|delete|whoami`` and ``nhi-broker people token create|list|revoke``.

Administration of the people who approve, review, audit and administer (docs/people.md). The
caller is the person whose token is in ``NHI_BROKER_PERSON_TOKEN`` (role admin) or, when none is
set, the admin token (``NHI_BROKER_ADMIN_TOKEN`` or ``up.json``; audited as ``admin-token``).
``token create`` prints the new token alone on stdout, once:
``export NHI_BROKER_PERSON_TOKEN=$(nhi-broker people token create alice)``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import typer

from broker.cli._common import DataDirOption, err, handle_errors
from broker.cli.approvals import JsonOption, UrlOption, call
from broker.errors import InvalidInput

_DURATION = re.compile(r"^(\d{1,9})([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, field: str = "--ttl") -> int:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(field, f'"{text}" is not a duration: a number with s, m, h or d (e.g. 30d)')
    return int(match.group(1)) * _UNIT[match.group(2)]


def _person_line(p: dict[str, Any]) -> str:
    idents = ", ".join(f"{i['issuer']} {i['subject']}" for i in p.get("identities") or [])
    return (
        f"{p['name']}  roles: {', '.join(p['roles']) or '-'}"
        + (f"  identities: {idents}" if idents else "")
        + ("  (disabled)" if p.get("disabled") else "")
    )


def _token_line(t: dict[str, Any]) -> str:
    return (
        f"{t['token_id']}  {t['state']:<7}  {t['person']}  expires {t['expires_at']}  created by "
        f"{t['created_by']}"
        + (f"  last used {t['last_used_at']}" if t.get("last_used_at") else "")
        + (f"  {t['description']}" if t.get("description") else "")
    )


def register(app: typer.Typer) -> None:
    people_app = typer.Typer(
        help="People who approve, review, audit and administer; their API tokens.", no_args_is_help=True
    )
    token_app = typer.Typer(help="Per-person API tokens: create (shown once), list, revoke.", no_args_is_help=True)

    @people_app.command("put")
    @handle_errors
    def put_cmd(
        name: str = typer.Argument(..., help="lower-case name: a-z 0-9 . _ -"),
        role: list[str] = typer.Option([], "--role", help="admin | approver | reviewer | auditor (repeat)"),
        issuer: str = typer.Option("", "--issuer", help="OIDC issuer the person signs in with (a human issuer)"),
        subject: str = typer.Option("", "--subject", help="their subject (sub) at that issuer"),
        display_name: str = typer.Option("", "--display-name"),
        disabled: bool = typer.Option(False, "--disabled", help="refuse every sign-in and token of theirs"),
        url: str = UrlOption,
        data_dir: Path = DataDirOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Create or replace a person: their roles and OIDC identity."""
        if bool(issuer) != bool(subject):
            raise InvalidInput("--issuer/--subject", "give both or neither")
        body = {
            "roles": role,
            "display_name": display_name,
            "disabled": disabled,
            "identities": [{"issuer": issuer, "subject": subject}] if issuer else [],
        }
        result = call(url, data_dir, "PUT", f"/v1/admin/people/{name}", body)
        typer.echo(json.dumps(result, indent=2) if as_json else _person_line(result))

    @people_app.command("list")
    @handle_errors
    def list_cmd(url: str = UrlOption, data_dir: Path = DataDirOption, as_json: bool = JsonOption) -> None:
        """List people and their roles."""
        items = call(url, data_dir, "GET", "/v1/admin/people")["items"]
        if as_json:
            typer.echo(json.dumps(items, indent=2))
            return
        for p in items:
            typer.echo(_person_line(p))
        typer.echo(f"{len(items)} person(s)")

    @people_app.command("show")
    @handle_errors
    def show_cmd(name: str = typer.Argument(...), url: str = UrlOption, data_dir: Path = DataDirOption) -> None:
        """A person and their tokens (never a token's secret)."""
        person = call(url, data_dir, "GET", f"/v1/admin/people/{name}")
        tokens = call(url, data_dir, "GET", f"/v1/admin/people/{name}/tokens")["items"]
        typer.echo(json.dumps({**person, "tokens": tokens}, indent=2))

    @people_app.command("delete")
    @handle_errors
    def delete_cmd(name: str = typer.Argument(...), url: str = UrlOption, data_dir: Path = DataDirOption) -> None:
        """Delete a person; their tokens are revoked."""
        call(url, data_dir, "DELETE", f"/v1/admin/people/{name}")
        typer.echo(f"deleted {name}")

    @people_app.command("whoami")
    @handle_errors
    def whoami_cmd(url: str = UrlOption, data_dir: Path = DataDirOption) -> None:
        """Who the broker takes you for (NHI_BROKER_PERSON_TOKEN, else the admin token) and your roles."""
        typer.echo(json.dumps(call(url, data_dir, "GET", "/v1/people/me"), indent=2))

    @token_app.command("create")
    @handle_errors
    def token_create(
        name: str = typer.Argument(...),
        ttl: str = typer.Option("30d", "--ttl", help="lifetime: 3600, 90m, 12h, 30d"),
        description: str = typer.Option("", "--description"),
        url: str = UrlOption,
        data_dir: Path = DataDirOption,
    ) -> None:
        """Create an API token for a person: printed once, on stdout alone; only its HMAC is kept."""
        result = call(
            url,
            data_dir,
            "POST",
            f"/v1/admin/people/{name}/tokens",
            {"ttl_seconds": parse_duration(ttl), "description": description},
        )
        err.print(
            f"token {result['token_id']} for {result['person']}, expires {result['expires_at']}; "
            f"it is shown once: keep it in NHI_BROKER_PERSON_TOKEN or a secret store"
        )
        typer.echo(result["token"])

    @token_app.command("list")
    @handle_errors
    def token_list(
        name: str = typer.Argument(...),
        url: str = UrlOption,
        data_dir: Path = DataDirOption,
        as_json: bool = JsonOption,
    ) -> None:
        """A person's tokens: id, state (active, expired, revoked), expiry, last use."""
        items = call(url, data_dir, "GET", f"/v1/admin/people/{name}/tokens")["items"]
        if as_json:
            typer.echo(json.dumps(items, indent=2))
            return
        for t in items:
            typer.echo(_token_line(t))

    @token_app.command("revoke")
    @handle_errors
    def token_revoke(
        name: str = typer.Argument(...),
        token_id: str = typer.Argument(...),
        url: str = UrlOption,
        data_dir: Path = DataDirOption,
    ) -> None:
        """Revoke a person's token: it is refused (401) from the next request on."""
        typer.echo(_token_line(call(url, data_dir, "DELETE", f"/v1/admin/people/{name}/tokens/{token_id}")))

    people_app.add_typer(token_app, name="token")
    app.add_typer(people_app, name="people")
