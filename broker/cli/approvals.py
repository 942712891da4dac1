"""``nhi-broker approvals list|approve|deny`` and ``nhi-broker reviews list|fine|flag``.

The person acting authenticates as themselves: their API token is read from the environment
(``NHI_BROKER_PERSON_TOKEN``) — never a flag, and there is no name to type: the broker takes the
approver or reviewer from the token (docs/people.md). ``list`` also works with the admin token
(``NHI_BROKER_ADMIN_TOKEN`` or ``up.json``) when no person token is set; approving, denying and
reviewing need a person. The broker is found through ``--url`` (env ``NHI_BROKER_ADDR``) or
``--data-dir``'s ``up.json``. Exit 1 when the broker refuses (401, 403 role or four-eyes, 409).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from broker.cli._common import DataDirOption, handle_errors, read_up_json
from broker.errors import BrokerError

PERSON_TOKEN_ENV = "NHI_BROKER_PERSON_TOKEN"
UrlOption = typer.Option("", "--url", envvar="NHI_BROKER_ADDR", help="Broker URL (default: from up.json).")
JsonOption = typer.Option(False, "--json", help="Print the broker's JSON answer.")


def credentials(url: str, data_dir: Path, *, person_required: bool) -> tuple[str, str]:
    """The broker URL and the bearer to send: the person token when set, else the admin token."""
    token = os.environ.get(PERSON_TOKEN_ENV, "").strip()
    if not token and person_required:
        raise BrokerError(
            f"set {PERSON_TOKEN_ENV} to your person API token (an admin creates it with "
            f"`nhi-broker people token create NAME`); approvals and reviews are made by a "
            f"person, never by the admin token or a typed name"
        )
    if not token:
        token = os.environ.get("NHI_BROKER_ADMIN_TOKEN", "")
    if not url or not token:
        up = read_up_json(data_dir)
        url, token = url or str(up.get("url", "")), token or str(up.get("admin_token", ""))
    return url, token


def call(
    url: str,
    data_dir: Path,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    *,
    person_required: bool = False,
) -> Any:
    # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
    from broker.client import AdminClient, BrokerClientError

    url, token = credentials(url, data_dir, person_required=person_required)
    client = AdminClient(url, token)
    try:
        return client.request(method, path, body, params={k: v for k, v in (params or {}).items() if v})
    except BrokerClientError as exc:
        raise BrokerError(f"{exc.status} {exc.code}: {exc.message}") from None
    finally:
        client.close()


def _approval_line(a: dict[str, Any]) -> str:
    votes = ", ".join(v["approver"] for v in a.get("votes") or [])
    return (
        f"{a['approval_id']}  {a['state']:<9}  {a['agent']} (owner {a['owner']})  {a['action']} on "
        f"{a['resource']}  tier {a['tier']}  task {a['task_id']}  expires {a['expires_at']}"
        + (f"  votes: {votes}" if votes else "")
    )


def _review_line(r: dict[str, Any]) -> str:
    return (
        f"{r['review_id']}  {r['state']:<7}  {r['agent']}  {r['action']} on {r['resource']}  "
        f"tier {r['tier']}  task {r['task_id']}  decision {r['decision_id']}"
    )


def register(app: typer.Typer) -> None:
    approvals_app = typer.Typer(help="Step-up approvals: list, approve, deny.", no_args_is_help=True)
    reviews_app = typer.Typer(help="Post-action review queue: list, mark fine, flag.", no_args_is_help=True)

    @approvals_app.command("list")
    @handle_errors
    def list_cmd(
        status: str = typer.Option(
            "pending", "--status", help="pending|approved|denied|expired|collected|cancelled|all"
        ),
        url: str = UrlOption,
        data_dir: Path = DataDirOption,
        as_json: bool = JsonOption,
    ) -> None:
        """List approvals (default: the pending ones)."""
        items = call(url, data_dir, "GET", "/v1/approvals", params={"status": None if status == "all" else status})[
            "items"
        ]
        if as_json:
            typer.echo(json.dumps(items, indent=2))
            return
        for a in items:
            typer.echo(_approval_line(a))
        typer.echo(f"{len(items)} approval(s)")

    def _act(verb: str, approval_id: str, reason: str, url: str, data_dir: Path, as_json: bool) -> None:
        result = call(
            url, data_dir, "POST", f"/v1/approvals/{approval_id}/{verb}", {"reason": reason}, person_required=True
        )
        typer.echo(json.dumps(result, indent=2) if as_json else _approval_line(result))

    @approvals_app.command("approve")
    @handle_errors
    def approve_cmd(
        approval_id: str = typer.Argument(...),
        reason: str = typer.Option(..., "--reason", help="Why (required; audited)."),
        url: str = UrlOption,
        data_dir: Path = DataDirOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Approve a pending step-up approval as the person whose token is in NHI_BROKER_PERSON_TOKEN
        (role approver; never the agent's bound owner)."""
        _act("approve", approval_id, reason, url, data_dir, as_json)

    @approvals_app.command("deny")
    @handle_errors
    def deny_cmd(
        approval_id: str = typer.Argument(...),
        reason: str = typer.Option(..., "--reason", help="Why (required; audited)."),
        url: str = UrlOption,
        data_dir: Path = DataDirOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Deny a pending (or approved, not yet collected) approval (person token, role approver)."""
        _act("deny", approval_id, reason, url, data_dir, as_json)

    @reviews_app.command("list")
    @handle_errors
    def reviews_list(
        status: str = typer.Option("pending", "--status", help="pending|fine|flagged|cancelled|all"),
        url: str = UrlOption,
        data_dir: Path = DataDirOption,
        as_json: bool = JsonOption,
    ) -> None:
        """List the post-action review queue (default: pending)."""
        items = call(url, data_dir, "GET", "/v1/reviews", params={"status": None if status == "all" else status})[
            "items"
        ]
        if as_json:
            typer.echo(json.dumps(items, indent=2))
            return
        for r in items:
            typer.echo(_review_line(r))
        typer.echo(f"{len(items)} review(s)")

    def _resolver(verb: str, text: str) -> None:
        def _resolve(
            review_id: str = typer.Argument(...),
            reason: str = typer.Option(..., "--reason", help="Why (required; audited)."),
            url: str = UrlOption,
            data_dir: Path = DataDirOption,
            as_json: bool = JsonOption,
        ) -> None:
            result = call(
                url, data_dir, "POST", f"/v1/reviews/{review_id}/{verb}", {"reason": reason}, person_required=True
            )
            typer.echo(json.dumps(result, indent=2) if as_json else _review_line(result))

        _resolve.__doc__ = text
        reviews_app.command(verb)(handle_errors(_resolve))

    _resolver("fine", "Mark a reviewed action as fine (person token, role reviewer).")
    _resolver("flag", "Flag a reviewed action: its task escalates (person token, role reviewer).")

    app.add_typer(approvals_app, name="approvals")
    app.add_typer(reviews_app, name="reviews")
