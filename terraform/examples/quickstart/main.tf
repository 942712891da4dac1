# Quickstart: an agent of its own, with a task profile and a resource, on `nhi-broker up`.
#
#   nhi-broker terraform cli-config --output "$PWD/nhibroker.tfrc"
#   export TF_CLI_CONFIG_FILE="$PWD/nhibroker.tfrc"
#   terraform init && terraform apply -var endpoint=http://127.0.0.1:8080 \
#     -var admin_token="$(jq -r .admin_token .nhi-broker/up.json)"

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
