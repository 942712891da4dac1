"""Credential backends: one adapter per file behind the port in :mod:`broker.backends.port`."""
