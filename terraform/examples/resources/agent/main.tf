resource "nhibroker_task_profile" "reporting" {
  name            = "reporting"
  allowed_actions = ["db.read"]
}

resource "nhibroker_agent" "reporter" {
  name        = "nightly-reporter"
  owner       = "data-platform"
  trust_level = "standard"
  description = "Builds the nightly revenue report"
  profiles    = [nhibroker_task_profile.reporting.name]

  # a Kubernetes service account token
  identity {
    issuer  = "https://kubernetes.default.svc.cluster.local"
    subject = "system:serviceaccount:reports:nightly-reporter"
  }

  # a CI job, only from the main branch
  identity {
    issuer  = "https://token.actions.githubusercontent.com"
    subject = "repo:example/reports:ref:refs/heads/main"
    claims = {
      repository = "example/reports"
    }
  }
}
