"""Domain services: the request flow, the registry, revocation. They depend on ports only."""
