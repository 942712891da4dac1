resource "nhibroker_task_profile" "support_triage" {
  name                 = "support-triage"
  allowed_actions      = ["db.read", "secrets.read"]
  ceiling              = "high"
  max_lifetime_seconds = 1800
  description          = "Read customer records and the support API key while triaging a ticket"
}
