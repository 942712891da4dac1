"""``nhi-broker terraform ...``: helpers for the Terraform provider (``terraform/``).

``cli-config`` writes a Terraform CLI configuration that finds the installed
``terraform-provider-nhibroker`` with no registry: a filesystem mirror (default; in the data
directory, so one per checkout or data directory) or ``dev_overrides``. Point
``TF_CLI_CONFIG_FILE`` at it (an absolute path).
"""

from __future__ import annotations

from pathlib import Path

import typer

from broker.cli._common import DataDirOption
from terraform.provider.cli_config import (
    CliConfigError,
    default_mirror_dir,
    provider_executable,
    provider_installed,
    render_dev_overrides_config,
    render_mirror_config,
    write_mirror,
)

terraform_app = typer.Typer(
    name="terraform", no_args_is_help=True, help="Terraform provider helpers (nhibroker provider)."
)


@terraform_app.command("cli-config")
def cli_config(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the CLI configuration here (default: stdout)."
    ),
    mirror_dir: Path | None = typer.Option(
        None, "--mirror-dir", help="Where to put the provider mirror (default: DATA_DIR/terraform-providers)."
    ),
    data_dir: Path = DataDirOption,
    dev_overrides: bool = typer.Option(
        False, "--dev-overrides", help="Use dev_overrides instead of a filesystem mirror (no init)."
    ),
) -> None:
    """Write a Terraform CLI configuration so init/plan/apply never contact a registry."""
    try:
        provider_installed()
        executable = provider_executable()
        if dev_overrides:
            text = render_dev_overrides_config(executable)
        else:
            mirror = (mirror_dir or default_mirror_dir(data_dir)).expanduser().absolute()
            write_mirror(mirror, executable)
            text = render_mirror_config(mirror)
    except (CliConfigError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if output is None:
        typer.echo(text, nl=False)
        return
    output = output.expanduser().absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    typer.echo(f"wrote {output}\nuse it with: export TF_CLI_CONFIG_FILE={output}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(terraform_app, name="terraform")
