"""What the admin chain view (``GET /v1/admin/tasks/{task_id}``) shows of a task, loaded in one
read: its decisions, its chain events and its grants. The body is built at the edge
(:func:`broker.api.presenters.chain_body`)."""

from __future__ import annotations

from dataclasses import dataclass

from broker.chain import store as chain_store
from broker.chain.model import ChainEvent
from broker.models import Grant
from broker.store.repo import Store
from broker.store.rows import StoredDecision


@dataclass(frozen=True, slots=True)
class ChainRecords:
    """Everything the chain view shows of one task, as stored."""

    decisions: tuple[StoredDecision, ...]
    events: tuple[ChainEvent, ...]
    grants: tuple[Grant, ...]


def load(store: Store, task_id: str) -> ChainRecords:
    with store.read() as conn:
        return ChainRecords(
            decisions=tuple(chain_store.decision_rows(conn, task_id)),
            events=tuple(chain_store.events(conn, task_id)),
            grants=tuple(store.grants(conn, task_id)),
        )
