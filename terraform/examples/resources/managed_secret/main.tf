# an API key the broker generates, stores in OpenBao KV and rotates every 30 days;
# consumers read secret/apps/billing/api-key, field "token"
resource "nhibroker_managed_secret" "billing_api_key" {
  name     = "billing-api-key"
  kind     = "kv_generated"
  kv_mount = "secret"
  kv_path  = "apps/billing/api-key"
  settings = jsonencode({
    generator = { format = "api_key", length = 40, prefix = "bk_" }
    field     = "token"
  })
  max_age_seconds = 30 * 86400
  overlap_seconds = 3600 # the old key keeps working for an hour (not after a leak)
}

# an IAM user's access key, rotated on demand only (nhi-broker rotate, or a leak finding)
resource "nhibroker_managed_secret" "ci_deployer_key" {
  name     = "ci-deployer-key"
  kind     = "aws_iam_key"
  kv_mount = "secret"
  kv_path  = "ci/deployer/aws"
  settings = jsonencode({ user = "ci-deployer", region = "eu-west-1" })
}
