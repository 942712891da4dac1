"""The console's routers: every console page module adds its routes here (mounted at ``/console``).

A flat tuple, not one router including the others: FastAPI (0.165) wraps an included router in a
lazy ``_IncludedRouter`` whose routes are no ``APIRoute``, so the request guard
(broker/api/limits.py: body size, the failure budget) would not see a single console route.
``tests/console/test_guarded.py`` checks every console route is guarded.
"""

from __future__ import annotations

from fastapi import APIRouter

from broker.api.console import routes_auth, routes_queue, routes_records, routes_tasks

routers: tuple[APIRouter, ...] = (
    routes_auth.router,
    routes_queue.router,
    routes_tasks.router,  # Tasks, Decisions (pages helper)
    routes_records.router,  # Findings, Audit (pages helper)
)
