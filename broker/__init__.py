"""nhi-broker: a credential broker for non-human identities."""

__version__ = "0.1.0"
