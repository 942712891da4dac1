# Quickstart: an agent of its own, with a task profile and a resource, on `nhi-broker up`.
# From the checkout's root, with `make up` running in another shell:
#
#   .venv/bin/pip install -e '.[terraform]'    # the provider (`make up` installs the runtime only)
#   .venv/bin/nhi-broker terraform cli-config --output .nhi-broker/terraform.tfrc    # mirror of this checkout's provider
#   export TF_CLI_CONFIG_FILE="$PWD/.nhi-broker/terraform.tfrc" TF_VAR_endpoint=http://127.0.0.1:8080
#   export TF_VAR_admin_token="$(.venv/bin/python -c 'import json; print(json.load(open(".nhi-broker/up.json"))["admin_token"])')"
#   terraform -chdir=terraform/examples/quickstart init && terraform -chdir=terraform/examples/quickstart apply
#
# The admin token reaches Terraform through the environment (TF_VAR_admin_token), never -var:
# a flag shows in `ps` to every user of the machine.

terraform {
  required_version = ">= 1.5"
  required_providers {
    nhibroker = {
      source  = "nhi-broker/nhibroker"
      version = ">= 0.1.0"
    }
  }
}

variable "endpoint" {
  description = "URL of the broker, e.g. http://127.0.0.1:8080 (the url in up.json)."
  type        = string
}

variable "admin_token" {
  description = "Admin token of the broker (admin_token in up.json)."
  type        = string
  sensitive   = true
}

variable "agent_name" {
  description = "Name of the quickstart agent; also its dev-issuer subject."
  type        = string
  default     = "quickstart-agent"
}

provider "nhibroker" {
  endpoint    = var.endpoint
  admin_token = var.admin_token
}

module "reporting_agent" {
  source = "../../modules/agent"

  name        = var.agent_name
  owner       = "platform-team"
  trust_level = "standard"
  description = "Nightly reporting agent (Terraform quickstart)"

  identities = [{
    issuer  = "urn:nhi-broker:dev"
    subject = var.agent_name
  }]

  profiles = {
    "quickstart-reporting" = {
      allowed_actions      = ["db.read"]
      ceiling              = "medium"
      max_lifetime_seconds = 1800
      description          = "Read-only reporting tasks"
    }
  }

  resources = {
    "quickstart-data" = {
      kind        = "vault_token"
      sensitivity = "internal"
      environment = "dev"
      description = "Reporting data (OpenBao policy seeded by nhi-broker up)"
      vault = {
        policies = ["nhi-demo-data"]
      }
    }
  }
}

data "nhibroker_agent" "reporting" {
  name = module.reporting_agent.agent
}

data "nhibroker_policy_bundle" "active" {}

output "agent" {
  value = data.nhibroker_agent.reporting.name
}

output "agent_profiles" {
  value = data.nhibroker_agent.reporting.profiles
}

output "resources" {
  value = module.reporting_agent.resources
}

output "policy_bundle_hash" {
  value = data.nhibroker_policy_bundle.active.bundle_hash
}
