"""The credential-injecting gateway: the broker makes the call, the agent never holds the secret."""

from broker.gateway.service import Gateway, GatewayRequest, GatewayResponse, normalise_path

__all__ = ["Gateway", "GatewayRequest", "GatewayResponse", "normalise_path"]
