terraform {
  required_providers {
    nhibroker = {
      source = "nhi-broker/nhibroker"
    }
  }
}

# endpoint and admin_token from NHI_BROKER_ADDR and NHI_BROKER_ADMIN_TOKEN
provider "nhibroker" {}

