terraform {
  required_version = ">= 1.5"
  required_providers {
    nhibroker = {
      source  = "nhi-broker/nhibroker"
      version = ">= 0.1.0"
    }
  }
}
