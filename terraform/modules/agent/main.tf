# An agent with the task profiles it may open and the resources it works on, in one block.

resource "nhibroker_task_profile" "this" {
  for_each = var.profiles

  name                 = each.key
  allowed_actions      = each.value.allowed_actions
  ceiling              = each.value.ceiling
  max_lifetime_seconds = each.value.max_lifetime_seconds
  description          = each.value.description
}

resource "nhibroker_resource" "this" {
  for_each = var.resources

  name        = each.key
  kind        = each.value.kind
  sensitivity = each.value.sensitivity
  environment = each.value.environment
  external    = each.value.external
  description = each.value.description

  dynamic "vault" {
    for_each = each.value.vault == null ? [] : [each.value.vault]
    content {
      policies = vault.value.policies
      mount    = vault.value.mount
      path     = vault.value.path
      role     = vault.value.role
    }
  }

  dynamic "aws" {
    for_each = each.value.aws == null ? [] : [each.value.aws]
    content {
      role_arn     = aws.value.role_arn
      region       = aws.value.region
      endpoint_url = aws.value.endpoint_url
      external_id  = aws.value.external_id
    }
  }
}

resource "nhibroker_agent" "this" {
  name        = var.name
  owner       = var.owner
  trust_level = var.trust_level
  description = var.description
  profiles    = concat([for p in nhibroker_task_profile.this : p.name], var.extra_profiles)

  dynamic "identity" {
    for_each = var.identities
    content {
      issuer  = identity.value.issuer
      subject = identity.value.subject
      claims  = identity.value.claims
    }
  }
}
