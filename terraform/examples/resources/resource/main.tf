# kind vault_token: a child token with these OpenBao ACL policies (they must exist)
resource "nhibroker_resource" "reports_db" {
  name        = "reports-db"
  kind        = "vault_token"
  sensitivity = "confidential"
  environment = "prod"
  description = "Read access to the reporting secrets"

  vault {
    policies = ["reports-read"]
  }
}

# kind aws: an STS session on this role, scoped by a session policy and tagged with the task
resource "nhibroker_resource" "exports_bucket" {
  name        = "exports-bucket"
  kind        = "aws"
  sensitivity = "restricted"
  environment = "prod"
  external    = true

  aws {
    role_arn    = "arn:aws:iam::123456789012:role/nhi-exports"
    region      = "eu-west-1"
    external_id = var.exports_external_id # sensitive: never shown in a plan
  }
}

variable "exports_external_id" {
  type      = string
  sensitive = true
}
