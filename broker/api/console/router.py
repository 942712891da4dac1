"""The console's router: every console page module adds its routes here (mounted at ``/console``)."""

from __future__ import annotations

from fastapi import APIRouter

from broker.api.console import routes_auth, routes_queue, routes_records, routes_tasks

router = APIRouter(include_in_schema=False)  # each module: APIRouter(prefix="/console")
router.include_router(routes_auth.router)
router.include_router(routes_queue.router)
router.include_router(routes_tasks.router)  # Tasks, Decisions (pages helper)
router.include_router(routes_records.router)  # Findings, Audit (pages helper)
