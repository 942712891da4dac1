"""Settings: the example production config loads; placeholders are refused outside dev mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from broker.config import load_settings

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "broker.yaml"


def test_example_production_config_loads_with_secrets_from_environment(monkeypatch):
    monkeypatch.setenv("NHI_BROKER_FINGERPRINT_KEY", "ab" * 32)
    monkeypatch.setenv("NHI_BROKER_AUDIT__KEY", "cd" * 32)
    monkeypatch.setenv("NHI_BROKER_ADMIN_TOKEN", "a-real-admin-token-0123456789")
    monkeypatch.setenv("NHI_BROKER_OPENBAO__TOKEN", "a-real-openbao-token-0123456789")
    settings = load_settings(EXAMPLE)
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.issuers[0].issuer == "https://kubernetes.default.svc.cluster.local"
    assert "a-real-admin-token" not in repr(settings)


@pytest.mark.parametrize("token", ["changeme", "root", "short"])
def test_placeholder_admin_token_is_refused_outside_dev_mode(monkeypatch, token):
    monkeypatch.setenv("NHI_BROKER_ADMIN_TOKEN", token)
    monkeypatch.setenv("NHI_BROKER_FINGERPRINT_KEY", "ab" * 32)
    monkeypatch.setenv("NHI_BROKER_AUDIT__KEY", "cd" * 32)
    monkeypatch.setenv("NHI_BROKER_OPENBAO__TOKEN", "a-real-openbao-token-0123456789")
    with pytest.raises(ValidationError, match="admin_token is missing or a placeholder"):
        load_settings(EXAMPLE)


def test_issuer_with_two_key_sources_is_refused(monkeypatch, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "dev_mode: true\nissuers:\n  - issuer: x\n    audiences: [a]\n    jwks_file: /x\n    public_key_pem: abc\n"
    )
    with pytest.raises(ValidationError, match="exactly one of"):
        load_settings(cfg)


def test_postgresql_store_without_a_shared_fingerprint_key_is_refused(monkeypatch):
    monkeypatch.setenv("NHI_BROKER_ADMIN_TOKEN", "a-real-admin-token-0123456789")
    monkeypatch.setenv("NHI_BROKER_OPENBAO__TOKEN", "a-real-openbao-token-0123456789")
    monkeypatch.delenv("NHI_BROKER_FINGERPRINT_KEY", raising=False)
    monkeypatch.delenv("NHI_BROKER_AUDIT__KEY", raising=False)
    with pytest.raises(ValidationError, match=r"fingerprint_key .* and audit.key .* required with a PostgreSQL"):
        load_settings(EXAMPLE)


def test_postgresql_store_without_a_shared_audit_key_is_refused(monkeypatch):
    monkeypatch.setenv("NHI_BROKER_ADMIN_TOKEN", "a-real-admin-token-0123456789")
    monkeypatch.setenv("NHI_BROKER_OPENBAO__TOKEN", "a-real-openbao-token-0123456789")
    monkeypatch.setenv("NHI_BROKER_FINGERPRINT_KEY", "ab" * 32)
    monkeypatch.delenv("NHI_BROKER_AUDIT__KEY", raising=False)
    with pytest.raises(ValidationError, match=r"audit.key \(NHI_BROKER_AUDIT__KEY.* required with a PostgreSQL"):
        load_settings(EXAMPLE)
    monkeypatch.setenv("NHI_BROKER_AUDIT__KEY_FILE", "/run/secrets/nhi-audit.key")  # a shared mounted file
    assert load_settings(EXAMPLE).audit.key_file is not None


@pytest.mark.parametrize("key", ["not-hex-" * 8, "ab" * 16])
def test_fingerprint_key_that_is_not_32_bytes_of_hex_is_refused(monkeypatch, key):
    monkeypatch.setenv("NHI_BROKER_FINGERPRINT_KEY", key)
    with pytest.raises(ValidationError, match="fingerprint_key must be hex of at least 32 bytes"):
        load_settings(None, dev_mode=True)


def test_serve_refuses_to_start_on_postgresql_without_a_fingerprint_key(tmp_path):
    import os
    import subprocess
    import sys

    cfg = tmp_path / "broker.yaml"
    cfg.write_text(EXAMPLE.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("NHI_BROKER_")}
    env |= {
        "NHI_BROKER_ADMIN_TOKEN": "a-real-admin-token-0123456789",
        "NHI_BROKER_OPENBAO__TOKEN": "a-real-openbao-token-0123456789",
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    out = subprocess.run(
        [sys.executable, "-m", "broker.cli", "serve", "--config", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "required with a PostgreSQL store" in out.stdout + out.stderr
