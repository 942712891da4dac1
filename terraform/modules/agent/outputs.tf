output "agent" {
  description = "The agent's name."
  value       = nhibroker_agent.this.id
}

output "profiles" {
  description = "Names of the task profiles created here."
  value       = [for p in nhibroker_task_profile.this : p.name]
}

output "resources" {
  description = "Names of the resources created here."
  value       = [for r in nhibroker_resource.this : r.name]
}
