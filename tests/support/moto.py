"""A moto server on 127.0.0.1 for the AWS tests, with IAM authorization turned on.

``start_moto`` runs ``moto_server`` as a subprocess on a free loopback port. ``bootstrap``
creates, while authorization is still off, an IAM user for the broker with an access key and an
allow-all policy, then turns authorization on (``POST /moto-api/reset-auth`` with body ``0``):
from then on moto checks signatures, keys, session tokens, role policies and explicit Deny.
Requests can be recorded (``start_recording``/``recorded``) to assert what the broker *sent*.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import httpx

from broker.openbao_server import die_with_parent

from .ports import free_port
from .wait import HTTP_TIMEOUT, wait_until

REGION = "us-east-1"


@dataclass
class AwsKeys:
    access_key_id: str
    secret_access_key: str

    def client(self, service: str, endpoint: str, session_token: str | None = None) -> Any:
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=session_token,
        )


@dataclass
class MotoServer:
    endpoint: str
    process: subprocess.Popen[bytes]
    recording: Path
    admin: AwsKeys | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=HTTP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=HTTP_TIMEOUT)

    def set_auth(self, enabled: bool) -> None:
        body = "0" if enabled else "inf"
        httpx.post(f"{self.endpoint}/moto-api/reset-auth", content=body, timeout=HTTP_TIMEOUT).raise_for_status()

    def start_recording(self) -> None:
        httpx.post(f"{self.endpoint}/moto-api/recorder/reset-recording", timeout=HTTP_TIMEOUT).raise_for_status()
        httpx.post(f"{self.endpoint}/moto-api/recorder/start-recording", timeout=HTTP_TIMEOUT).raise_for_status()

    def recorded(self, action: str) -> list[dict[str, list[str]]]:
        """Form bodies of recorded query-protocol requests (STS, IAM) whose ``Action`` is ``action``."""
        httpx.post(f"{self.endpoint}/moto-api/recorder/stop-recording", timeout=HTTP_TIMEOUT).raise_for_status()
        text = httpx.get(f"{self.endpoint}/moto-api/recorder/download-recording", timeout=HTTP_TIMEOUT).text
        found = []
        for line in text.splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode(errors="replace")
            form = parse_qs(body)
            if form.get("Action") == [action]:
                found.append(form)
        return found


def _moto_binary() -> str:
    candidate = Path(sys.executable).with_name("moto_server")
    return str(candidate) if candidate.exists() else (shutil.which("moto_server") or "moto_server")


def start_moto(workdir: Path) -> MotoServer:
    port = free_port()
    recording = workdir / "moto-recording.jsonl"
    log = open(workdir / "moto.log", "ab")  # noqa: SIM115
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(recording), "AWS_DEFAULT_REGION": REGION}
    env.pop("MOTO_ENABLE_RECORDING", None)
    proc = subprocess.Popen(
        [_moto_binary(), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent,  # never outlives a crashed test run
    )
    server = MotoServer(endpoint=f"http://127.0.0.1:{port}", process=proc, recording=recording)

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}; see {workdir / 'moto.log'}")
        return httpx.get(f"{server.endpoint}/moto-api/", timeout=HTTP_TIMEOUT).status_code < 500

    try:
        wait_until(answers, what="moto_server to answer")
    except AssertionError:
        server.stop()
        raise
    bootstrap(server)
    return server


def bootstrap(server: MotoServer) -> AwsKeys:
    """Create the broker's IAM user (allow-all) with an access key, then turn IAM auth on."""
    server.set_auth(False)
    iam = boto3.client(
        "iam",
        region_name=REGION,
        endpoint_url=server.endpoint,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName="nhi-broker")
    iam.put_user_policy(
        UserName="nhi-broker",
        PolicyName="broker-admin",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName="nhi-broker")["AccessKey"]
    server.admin = AwsKeys(key["AccessKeyId"], key["SecretAccessKey"])
    server.set_auth(True)
    return server.admin
