data "nhibroker_agent" "demo" {
  name = "demo-agent"
}

data "nhibroker_policy_bundle" "active" {}

output "demo_agent_profiles" {
  value = data.nhibroker_agent.demo.profiles
}

# fail the plan if the broker is not enforcing the reviewed policy bundle
check "reviewed_policy_bundle" {
  assert {
    condition     = var.expected_bundle_hash == "" || data.nhibroker_policy_bundle.active.bundle_hash == var.expected_bundle_hash
    error_message = "nhi-broker enforces policy bundle ${data.nhibroker_policy_bundle.active.bundle_hash}, not the reviewed one."
  }
}

variable "expected_bundle_hash" {
  type    = string
  default = ""
}
