"""Chain fixtures: a webhook recorder on loopback and a broker that alerts it."""

from __future__ import annotations

from collections.abc import Iterator

import hvac
import pytest
from support.broker import RunningBroker, start_broker
from support.webhook import WebhookRecorder


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookRecorder]:
    rec = WebhookRecorder()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def chain_broker(openbao, webhook, tmp_path_factory) -> Iterator[RunningBroker]:
    running = start_broker(tmp_path_factory.mktemp("chain-broker"), openbao, alert_webhook_url=webhook.url)
    yield running
    running.stop()


def token_is_dead(address: str, token: str) -> bool:
    try:
        hvac.Client(url=address, token=token).auth.token.lookup_self()
    except hvac.exceptions.Forbidden:
        return True
    return False


def accessor_is_dead(address: str, root: str, accessor: str) -> bool:
    """Checked with the root token, so a single-use grant is not consumed by the check."""
    try:
        hvac.Client(url=address, token=root).auth.token.lookup_accessor(accessor)
    except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
        return True
    return False
