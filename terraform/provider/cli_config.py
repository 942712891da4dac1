"""A Terraform CLI configuration that finds this provider with no registry.

Two ways, both offline:

- ``filesystem_mirror`` (default): a mirror directory (default ``<data dir>/terraform-providers``,
  so each checkout or data directory has its own) in Terraform's *unpacked* layout
  ``registry.terraform.io/nhi-broker/nhibroker/<version>/<os_arch>/terraform-provider-nhibroker_v<version>``
  holding a two-line launcher of the installed ``terraform-provider-nhibroker``; the CLI
  configuration allows only that mirror, so ``terraform init`` installs from it and records
  its hash in ``.terraform.lock.hcl``, and nothing else is ever looked up.
- ``dev_overrides``: Terraform runs the installed executable directly, skips ``init`` for it and
  warns on every command that an override is in effect. Handy while working on the provider.

``disable_checkpoint`` is set as well, so Terraform does not call HashiCorp's version check.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from pathlib import Path

from terraform.provider import PROVIDER_HOSTNAME, PROVIDER_SOURCE, PROVIDER_VERSION

EXECUTABLE = "terraform-provider-nhibroker"


class CliConfigError(Exception):
    """Message is safe to show."""


def provider_executable() -> Path:
    """The installed ``terraform-provider-nhibroker`` (next to this Python, else on PATH)."""
    beside = Path(sys.executable).parent / EXECUTABLE
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside.absolute()
    found = shutil.which(EXECUTABLE)
    if found is None:
        raise CliConfigError(
            f"{EXECUTABLE} is not installed next to {sys.executable} nor on PATH; "
            "install the project (pip install nhi-broker) first"
        )
    return Path(found).absolute()


def target_platform() -> str:
    system = platform.system().lower()
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{system}_{arch}"


def write_mirror(mirror_dir: Path, executable: Path | None = None) -> Path:
    """Put the provider into ``mirror_dir`` (unpacked layout); returns the launcher's path."""
    executable = executable or provider_executable()
    host, namespace, name = PROVIDER_HOSTNAME, *PROVIDER_SOURCE.split("/")
    target = mirror_dir / host / namespace / name / PROVIDER_VERSION / target_platform()
    target.mkdir(parents=True, exist_ok=True)
    launcher = target / f"{EXECUTABLE}_v{PROVIDER_VERSION}"
    launcher.write_text(f'#!/bin/sh\nexec "{executable}" "$@"\n')
    launcher.chmod(0o755)
    return launcher


def _hcl(value: str) -> str:
    return json.dumps(value)  # an HCL string literal is a JSON string literal for our purposes


def render_mirror_config(mirror_dir: Path) -> str:
    return (
        "# Terraform CLI configuration written by `nhi-broker terraform cli-config`.\n"
        "# The nhibroker provider comes from a local mirror; no registry is contacted.\n"
        "disable_checkpoint = true\n\n"
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {_hcl(str(mirror_dir.absolute()))}\n"
        f"    include = [{_hcl(PROVIDER_SOURCE)}]\n"
        "  }\n"
        "}\n"
    )


def render_dev_overrides_config(executable: Path) -> str:
    return (
        "# Terraform CLI configuration written by `nhi-broker terraform cli-config --dev-overrides`.\n"
        "# Terraform runs the installed provider directly (it warns about the override on each command).\n"
        "disable_checkpoint = true\n\n"
        "provider_installation {\n"
        "  dev_overrides {\n"
        f"    {_hcl(PROVIDER_SOURCE)} = {_hcl(str(executable.parent))}\n"
        "  }\n"
        "}\n"
    )


MIRROR_SUBDIR = "terraform-providers"


def default_mirror_dir(data_dir: Path) -> Path:
    """The mirror lives in the data directory (``.nhi-broker/`` of the checkout by default): one
    mirror per checkout or data directory, so a ``cli-config`` run elsewhere never repoints it."""
    return Path(data_dir) / MIRROR_SUBDIR


def provider_installed() -> None:
    """The provider's own dependencies (the ``terraform`` extra) are importable, else a clear error."""
    import importlib.util

    if importlib.util.find_spec("tf") is None:
        raise CliConfigError(
            "the Terraform provider is not installed in this environment: "
            "pip install 'nhi-broker[terraform]' (from a checkout: pip install -e '.[terraform]')"
        )
