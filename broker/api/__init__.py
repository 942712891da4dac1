"""The HTTP layer: parse, call a service, map the result. Nothing else lives here."""
