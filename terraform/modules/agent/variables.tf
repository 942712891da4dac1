variable "name" {
  description = "The agent's name (also the default dev-issuer subject)."
  type        = string
}

variable "owner" {
  description = "Team or person accountable for the agent."
  type        = string
}

variable "trust_level" {
  description = "low | standard | high"
  type        = string
  default     = "standard"
}

variable "description" {
  type    = string
  default = ""
}

variable "identities" {
  description = "Workload identities the agent presents (issuer + subject, optional required claims)."
  type = list(object({
    issuer  = string
    subject = string
    claims  = optional(map(string))
  }))
}

variable "profiles" {
  description = "Task profiles created for this agent, by name."
  type = map(object({
    allowed_actions      = list(string)
    ceiling              = optional(string)
    max_lifetime_seconds = optional(number, 3600)
    description          = optional(string, "")
  }))
}

variable "extra_profiles" {
  description = "Existing task profiles (not managed here) the agent may open as well."
  type        = list(string)
  default     = []
}

variable "resources" {
  description = "Resources created with the agent, by name. vault and aws follow nhibroker_resource."
  type = map(object({
    kind        = string
    sensitivity = string
    environment = string
    external    = optional(bool, false)
    description = optional(string, "")
    vault = optional(object({
      policies = optional(list(string))
      mount    = optional(string)
      path     = optional(string)
      role     = optional(string)
    }))
    aws = optional(object({
      role_arn     = optional(string)
      region       = optional(string)
      endpoint_url = optional(string)
      external_id  = optional(string)
    }))
  }))
  default = {}
}
