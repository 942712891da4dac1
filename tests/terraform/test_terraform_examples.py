"""Every example and module is formatted and valid, with real Terraform and the real provider
schema; plan-time validation names the attribute; cli-config writes what Terraform needs.
No broker needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.terraform

TERRAFORM_DIR = Path(__file__).resolve().parents[2] / "terraform"

CONFIG_DIRS = sorted(
    {str(p.parent.relative_to(TERRAFORM_DIR)) for p in TERRAFORM_DIR.glob("**/*.tf") if ".terraform" not in p.parts}
)


def test_every_example_and_module_is_found() -> None:
    assert "examples/quickstart" in CONFIG_DIRS
    assert "modules/agent" in CONFIG_DIRS


@pytest.mark.parametrize("relative", CONFIG_DIRS)
def test_terraform_config_is_formatted_and_valid(relative: str, tf_workspace) -> None:
    tf = tf_workspace(relative)
    fmt = tf.fmt_check()
    assert fmt.returncode == 0, f"terraform fmt -check {relative}:\n{fmt.output}"
    tf.init()
    validate = tf.validate()
    assert validate.returncode == 0, f"terraform validate {relative}:\n{validate.output}"
    assert "Warning" not in validate.output, validate.output  # e.g. "Using default upgrade"


BAD_AGENT = """
terraform {
  required_providers {
    nhibroker = { source = "nhi-broker/nhibroker" }
  }
}

resource "nhibroker_agent" "bad" {
  name        = "Not A Name"
  owner       = "platform"
  trust_level = "root"
}

resource "nhibroker_resource" "bad" {
  name        = "bad-resource"
  kind        = "vault_token"
  sensitivity = "secret"
  environment = "dev"
}
"""


def test_validate_names_the_attribute_when_a_value_is_not_allowed(tf_workspace) -> None:
    tf = tf_workspace(files={"main.tf": BAD_AGENT})
    tf.init()
    result = tf.run("validate", "-json", check=False)
    assert result.returncode == 1
    diags = json.loads(result.stdout)["diagnostics"]
    by_summary = {d["summary"]: d for d in diags}
    assert 'invalid trust_level "root"' in by_summary
    assert "trust_level" in by_summary['invalid trust_level "root"']["snippet"]["code"]
    assert 'invalid name "Not A Name"' in by_summary
    assert 'invalid sensitivity "secret"' in by_summary
    assert "kind vault_token needs a vault block" in by_summary


BAD_SCAN_JOB_AND_SECRET = """
terraform {
  required_providers {
    nhibroker = { source = "nhi-broker/nhibroker" }
  }
}

resource "nhibroker_scan_job" "bad" {
  name = "bad-job"
  source {
    kind = "files"
    repo = "https://example.invalid/x.git"
  }
  schedule {
    every_seconds = 60
    cron          = "* * * * *"
  }
}

resource "nhibroker_managed_secret" "bad" {
  name     = "bad-secret"
  kind     = "database_root"
  kv_mount = "secret"
  settings = "[1]"
}
"""


def test_validate_names_the_attribute_when_a_scan_job_or_managed_secret_is_malformed(tf_workspace) -> None:
    tf = tf_workspace(files={"main.tf": BAD_SCAN_JOB_AND_SECRET})
    tf.init()
    result = tf.run("validate", "-json", check=False)
    assert result.returncode == 1
    by_summary = {d["summary"]: d for d in json.loads(result.stdout)["diagnostics"]}
    assert "repo" in by_summary["source.repo does not apply to kind files"]["snippet"]["code"]
    assert "kind files needs source.path" in by_summary
    assert "schedule needs exactly one of every_seconds, cron" in by_summary
    assert "kv_mount" in by_summary["kind database_root takes no kv_mount"]["snippet"]["code"]
    assert "settings must be a JSON object" in by_summary


def test_cli_config_points_terraform_at_a_local_mirror_only(tf_sandbox) -> None:
    text = tf_sandbox.cli_config.read_text()
    assert "filesystem_mirror" in text and "direct" not in text and "disable_checkpoint = true" in text
    assert f'"{tf_sandbox.mirror}"' in text
    launchers = list(
        tf_sandbox.mirror.glob("registry.terraform.io/nhi-broker/nhibroker/0.1.0/*/terraform-provider-nhibroker_v0.1.0")
    )
    assert len(launchers) == 1 and launchers[0].stat().st_mode & 0o111


def test_cli_config_can_write_dev_overrides_to_stdout() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "nhi-broker"), "terraform", "cli-config", "--dev-overrides"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "dev_overrides" in out and '"nhi-broker/nhibroker"' in out
    assert str(Path(sys.executable).parent) in out


DOC_EXAMPLES = {
    "docs/resources/agent.md": "examples/resources/agent/main.tf",
    "docs/resources/task_profile.md": "examples/resources/task_profile/main.tf",
    "docs/resources/resource.md": "examples/resources/resource/main.tf",
    "docs/resources/scan_job.md": "examples/resources/scan_job/main.tf",
    "docs/resources/managed_secret.md": "examples/resources/managed_secret/main.tf",
    "docs/data-sources/agent.md": "examples/resources/data_sources/main.tf",
    "docs/data-sources/policy_bundle.md": "examples/resources/data_sources/main.tf",
}


@pytest.mark.parametrize("page", sorted(DOC_EXAMPLES))
def test_docs_page_shows_the_example_that_is_validated(page: str) -> None:
    text = (TERRAFORM_DIR / page).read_text()
    assert (TERRAFORM_DIR / DOC_EXAMPLES[page]).read_text() in text


def test_every_resource_and_data_source_has_a_docs_page() -> None:
    from terraform.provider.provider import NhiBrokerProvider

    provider = NhiBrokerProvider()
    for klass in provider.get_resources():
        assert (TERRAFORM_DIR / "docs" / "resources" / f"{klass.get_name()}.md").is_file()
    for klass in provider.get_data_sources():
        assert (TERRAFORM_DIR / "docs" / "data-sources" / f"{klass.get_name()}.md").is_file()


def test_provider_starts_with_a_long_tmpdir_and_an_unusable_home(tf_workspace, tf_sandbox) -> None:
    """The tf runner binds a unix socket under $TMPDIR and caches a certificate under $HOME/.cache;
    the executable falls back to a private short directory instead of failing the handshake."""
    long_tmp = tf_sandbox.base / ("t" * 90)
    long_tmp.mkdir(exist_ok=True)
    tf = tf_workspace("examples/resources/task_profile")
    tf.tmpdir, tf.home = long_tmp, tf_sandbox.base / "no-such-home"
    tf.init()
    result = tf.validate()
    assert result.returncode == 0, result.output


def test_terraform_sees_the_token_and_secret_bearing_settings_as_sensitive(tf_workspace) -> None:
    tf = tf_workspace("examples/resources/resource")
    tf.init()
    schema = json.loads(tf.run("providers", "schema", "-json").stdout)
    [provider] = schema["provider_schemas"].values()
    assert provider["provider"]["block"]["attributes"]["admin_token"]["sensitive"] is True
    resource = provider["resource_schemas"]["nhibroker_resource"]["block"]
    assert resource["block_types"]["aws"]["block"]["attributes"]["external_id"]["sensitive"] is True
    assert resource["block_types"]["vault"]["nesting_mode"] == "single"
    scan_job = provider["resource_schemas"]["nhibroker_scan_job"]["block"]
    assert scan_job["block_types"]["source"]["block"]["attributes"]["repo"]["sensitive"] is True
    assert {d["version"] for d in provider["resource_schemas"].values()} == {0}
