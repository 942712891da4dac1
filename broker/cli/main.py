"""``nhi-broker``: one Typer app; each command group lives in its own module with ``register``.

Errors: every command catches :class:`broker.errors.BrokerError` once (see ``run``) and exits
non-zero with its (always safe) message.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="nhi-broker", no_args_is_help=True, add_completion=False, help="Credential broker for non-human identities."
)

# one line per command module; each defines register(app)
COMMAND_MODULES = [
    "broker.cli.up",
    "broker.cli.bootstrap",
    "broker.cli.agent",
    "broker.cli.audit",
    "broker.cli.policy",
    "broker.cli.terraform",
    "broker.cli.scan",
    "broker.cli.rotate",
    "broker.cli.approvals",
    "broker.cli.mcp",
    "broker.cli.people",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # deferred: only --version needs it

    try:
        return version("nhi-broker")
    except PackageNotFoundError:  # running from a checkout that is not installed
        from broker import __version__  # deferred: only a checkout that is not installed

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"nhi-broker {_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """Credential broker for non-human identities."""


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)
