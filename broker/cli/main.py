"""``nhi-broker``: one Typer app; each command group lives in its own module with ``register``.

Errors: every command catches :class:`broker.errors.BrokerError` once (see ``run``) and exits
non-zero with its (always safe) message.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(name="nhi-broker", no_args_is_help=True, add_completion=False,
                  help="Credential broker for non-human identities.")

# one line per command module; each defines register(app)
COMMAND_MODULES = [
    "broker.cli.up",
    "broker.cli.agent",
    "broker.cli.audit",
    "broker.cli.policy",
    "broker.cli.terraform",
    "broker.cli.scan",
    "broker.cli.rotate",
    "broker.cli.approvals",
    "broker.cli.people",
]

for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)
