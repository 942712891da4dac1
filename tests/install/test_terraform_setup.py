"""Terraform set-up as documented: one quickstart everywhere, no secret as -var, one mirror per
checkout (data directory) that another checkout's `cli-config` cannot repoint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from terraform.provider.cli_config import default_mirror_dir, render_mirror_config, write_mirror

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART_PLACES = ["README.md", "terraform/README.md", "docs/terraform.md"]
EXAMPLE = "terraform/examples/quickstart/main.tf"


def _markdown_quickstart(path: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / path).read_text(), re.S)
    found = [b for b in blocks if "terraform cli-config" in b and "examples/quickstart" in b]
    assert len(found) == 1, f"{path}: expected one quickstart block, found {len(found)}"
    return found[0].strip().splitlines()


def _example_header() -> list[str]:
    lines = []
    for line in (ROOT / EXAMPLE).read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("#   "):
            lines.append(line[4:])
    return lines


def test_quickstart_is_the_same_in_the_readmes_the_docs_and_the_example_header():
    reference = _markdown_quickstart("README.md")
    assert any("terraform cli-config" in line for line in reference)
    for place in QUICKSTART_PLACES[1:]:
        assert _markdown_quickstart(place) == reference, place
    assert _example_header() == reference, EXAMPLE


def test_quickstart_passes_no_secret_as_a_flag():
    for line in _markdown_quickstart("README.md"):
        assert not re.search(r"(^|\s)-var(\s|=)", line), line
    text = "\n".join(_markdown_quickstart("README.md"))
    assert "TF_VAR_admin_token=" in text


def test_docs_never_show_terraform_with_a_var_flag():
    for path in [*QUICKSTART_PLACES, EXAMPLE, *[str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")]]:
        for line in (ROOT / path).read_text().splitlines():
            if "terraform" in line and re.search(r"\s-var[\s=]", line):
                raise AssertionError(f"{path}: {line.strip()}")


def _launcher_target(mirror: Path) -> str:
    (launcher,) = mirror.glob("registry.terraform.io/nhi-broker/nhibroker/*/*/terraform-provider-nhibroker_v*")
    return launcher.read_text()


def test_each_checkout_keeps_its_own_mirror_when_another_runs_cli_config(tmp_path):
    # two checkouts, each with its own installed provider and data directory
    exe_a, exe_b = tmp_path / "a" / "terraform-provider-nhibroker", tmp_path / "b" / "terraform-provider-nhibroker"
    for exe in (exe_a, exe_b):
        exe.parent.mkdir()
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    dd_a, dd_b = tmp_path / "a" / ".nhi-broker", tmp_path / "b" / ".nhi-broker"
    write_mirror(default_mirror_dir(dd_a), exe_a)
    config_a = render_mirror_config(default_mirror_dir(dd_a))
    write_mirror(default_mirror_dir(dd_b), exe_b)  # checkout b runs cli-config last
    assert str(exe_a) in _launcher_target(default_mirror_dir(dd_a))
    assert str(exe_b) not in _launcher_target(default_mirror_dir(dd_a))
    assert str(default_mirror_dir(dd_a)) in config_a and str(dd_b) not in config_a


def test_cli_config_puts_the_mirror_in_the_data_directory(tmp_path):
    data_dir = tmp_path / "dd"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NHI_BROKER_", "XDG_"))}
    env.update(PYTHONPATH=str(ROOT), NHI_BROKER_DATA_DIR=str(data_dir))
    r = subprocess.run(
        [sys.executable, "-m", "broker.cli", "terraform", "cli-config", "--output", str(data_dir / "terraform.tfrc")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    text = (data_dir / "terraform.tfrc").read_text()
    mirror = data_dir / "terraform-providers"
    assert f'"{mirror}"' in text
    assert "terraform-provider-nhibroker" in _launcher_target(mirror)
