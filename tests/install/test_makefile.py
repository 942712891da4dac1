"""The README's two set-up commands install what they need and no more, showing pip's progress
(`make -n` prints the recipes without running them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _dry_run(target: str, venv: Path) -> str:
    if shutil.which("make") is None:
        pytest.fail("make is not installed (the README's set-up commands need it)")
    r = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def _pip_installs(recipe: str) -> list[str]:
    return [line for line in recipe.splitlines() if "pip" in line and " install " in line]


def test_make_up_installs_the_runtime_only_and_shows_progress(tmp_path):
    recipe = _dry_run("up", tmp_path / "venv")
    installs = _pip_installs(recipe)
    assert any(line.rstrip().endswith("install -e .") for line in installs), installs
    assert not any("[test]" in line or "[terraform]" in line for line in installs), installs
    assert not any(" -q" in line or "--quiet" in line for line in installs), installs
    assert f"exec {tmp_path / 'venv'}/bin/nhi-broker up" in recipe  # signals reach the broker directly


def test_make_test_installs_the_test_extra(tmp_path):
    installs = _pip_installs(_dry_run("test", tmp_path / "venv"))
    assert any("install -e '.[test]'" in line for line in installs), installs
    assert not any(" -q" in line or "--quiet" in line for line in installs), installs


def test_make_up_installs_nothing_once_the_runtime_is_installed(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / ".up-stamp").touch()
    assert _pip_installs(_dry_run("up", venv)) == []
