"""Settings: the example production config loads; placeholders are refused outside dev mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from broker.config import load_settings

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "broker.yaml"


def test_example_production_config_loads_with_secrets_from_environment(monkeypatch):
    monkeypatch.setenv("NHI_BROKER_ADMIN_TOKEN", "a-real-admin-token-0123456789")
    monkeypatch.setenv("NHI_BROKER_OPENBAO__TOKEN", "a-real-openbao-token-0123456789")
    settings = load_settings(EXAMPLE)
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.issuers[0].issuer == "https://kubernetes.default.svc.cluster.local"
    assert "a-real-admin-token" not in repr(settings)


@pytest.mark.parametrize("token", ["changeme", "root", "short"])
def test_placeholder_admin_token_is_refused_outside_dev_mode(monkeypatch, token):
    monkeypatch.setenv("NHI_BROKER_ADMIN_TOKEN", token)
    monkeypatch.setenv("NHI_BROKER_OPENBAO__TOKEN", "a-real-openbao-token-0123456789")
    with pytest.raises(ValidationError, match="admin_token is missing or a placeholder"):
        load_settings(EXAMPLE)


def test_issuer_with_two_key_sources_is_refused(monkeypatch, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dev_mode: true\nissuers:\n  - issuer: x\n    audiences: [a]\n"
                   "    jwks_file: /x\n    public_key_pem: abc\n")
    with pytest.raises(ValidationError, match="exactly one of"):
        load_settings(cfg)
