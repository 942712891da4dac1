# nhi-broker: allow-file  (deliberate fixtures: fake credentials built for these tests)
"""Structured and path-aware detectors: (path, text, should_flag) tables, and key containers."""

from __future__ import annotations

import base64
import random

import pytest

from scanners import Scanner
from scanners.format_corpus import _pkcs12
from scanners.structured import detect_binary, detect_text
from tests.scanners.conftest import KEY

PW = "Vq8" + "rT2mZ9xLw4Kp"  # a password-shaped value (not a real credential)
B64PW = base64.b64encode(PW.encode()).decode()
B64CREDS = base64.b64encode(f"deploy:{PW}".encode()).decode()

CASES = [
    # Kubernetes Secret manifests: base64 data decoded, stringData, multi-document files
    ("k8s.yaml", f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: {B64PW}\n", PW and B64PW),
    ("k8s.yaml", f"---\nkind: ConfigMap\ndata:\n  a: b\n---\nkind: Secret\nstringData:\n  token: {PW}\n", PW),
    ("k8s.yaml", f"kind: ConfigMap\ndata:\n  password: {B64PW}\n", None),
    (
        "k8s.yaml",
        "kind: Secret\ndata:\n  password: ${DB_PASSWORD}\n  ca.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t\n",
        None,
    ),
    # .npmrc
    (".npmrc", f"//registry.npmjs.org/:_authToken={PW}\n", PW),
    (".npmrc", f"//npm.corp.io/:_auth={B64CREDS}\n", B64CREDS),
    (".npmrc", "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n", None),
    # .pypirc (path-aware: only in a .pypirc)
    (".pypirc", f"[pypi]\nusername = __token__\npassword = {PW}\n", PW),
    ("notes.txt", f"[pypi]\nusername = __token__\npassword = {PW}\n", None),
    (".pypirc", "[pypi]\nusername = __token__\npassword = <your token>\n", None),
    # nuget.config
    ("nuget.config", f'<add key="ClearTextPassword" value="{PW}" />', PW),
    ("nuget.config", '<add key="ClearTextPassword" value="%NUGET_PW%" />', None),
    # .netrc (multi-line tokens)
    (".netrc", f"machine api.corp.io\n  login deploy\n  password {PW}\n", PW),
    (".netrc", "machine api.corp.io\n  login deploy\n", None),
    # docker config.json / .dockercfg
    (".docker/config.json", f'{{"auths": {{"reg.corp.io": {{"auth": "{B64CREDS}"}}}}}}', B64CREDS),
    (".dockercfg", f'{{"reg.corp.io": {{"auth": "{B64CREDS}", "email": "ci@corp.io"}}}}', B64CREDS),
    (".docker/config.json", '{"auths": {"reg.corp.io": {}}, "credsStore": "desktop"}', None),
    # curl command lines in shell history and CI logs
    ("history", f"curl -u deploy:{PW} https://ci.corp.io/api\n", PW),
    ("ci.log", f"+ curl -sS -H 'Authorization: Bearer {PW}' https://api.corp.io/v1\n", PW),
    ("ci.log", f'curl --header "X-Api-Key: {PW}" https://api.corp.io\n', PW),
    ("ci.log", 'curl -u "$USER:$PASS" https://ci.corp.io/api\n', None),
    ("ci.log", 'curl -H "Authorization: Bearer $TOKEN" https://api.corp.io\n', None),
]


@pytest.mark.parametrize(("path", "text", "secret"), CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_structured_detector_flags_exactly_the_credential(path: str, text: str, secret: str | None) -> None:
    found = detect_text(text, path)
    if secret is None:
        assert found == []
    else:
        assert [text[d.start : d.end] for d in found] == [secret]


@pytest.mark.parametrize(("path", "text", "secret"), [c for c in CASES if c[2]][:6])
def test_structured_findings_reach_the_scanner_report_with_high_or_medium_confidence(
    path: str, text: str, secret: str
) -> None:
    found = Scanner(key=KEY).scan(text, path=path)
    assert any(text[f.start : f.end] == secret and f.confidence.value in ("high", "medium") for f in found)


def test_pkcs12_and_der_private_key_files_are_found_by_content() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p12 = _pkcs12(random.Random(1))
    der = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert [d.rule_id for d in detect_binary(p12, "certs/client.pfx")] == ["pkcs12-file"]
    assert [d.rule_id for d in detect_binary(der, "tls/server.key")] == ["der-private-key-file"]
    assert detect_binary(p12, "certs/readme.bin") == []  # only key-container names are read
    assert detect_binary(b"\x30\x82" + bytes(200), "x.der") == []  # DER that is no key


def test_scan_file_reports_a_binary_keystore(tmp_path) -> None:
    from scanners.files import scan_file

    p = tmp_path / "client.p12"
    p.write_bytes(_pkcs12(random.Random(2)))
    [f] = scan_file(Scanner(key=KEY), p, "client.p12")
    assert (f.rule_id, f.line, f.confidence.value) == ("pkcs12-file", 1, "high")
