# the agents' logs, every hour: a leaked broker credential is revoked, a managed secret rotated
resource "nhibroker_scan_job" "agent_logs" {
  name = "agent-logs"

  source {
    kind = "files"
    path = "/var/log/agents"
  }

  schedule {
    every_seconds = 3600
  }
}

# every branch of a private repository, nightly at 02:00 UTC; alert only, revoke nothing
resource "nhibroker_scan_job" "platform_repo" {
  name    = "platform-repo"
  enabled = true

  source {
    kind = "git"
    repo = var.platform_repo_url # sensitive: may carry a token
  }

  schedule {
    cron = "0 2 * * *"
  }

  on_finding {
    broker_issued = "alert"
    managed       = "alert"
    alert         = true
  }
}

variable "platform_repo_url" {
  type      = string
  sensitive = true
}
