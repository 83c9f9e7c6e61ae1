"""Liveness and readiness: ``GET /healthz`` (no authentication)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from palmpay.api.deps import StateDep
from palmpay.api.schemas import HealthOut

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut,
            responses={503: {"model": HealthOut, "description": "Degraded"}})
def healthz(state: StateDep) -> JSONResponse:
    """Database reachable, models loaded, number of enrolled palms. 503 when degraded."""
    try:
        with state.db.session(readonly=True) as session:
            session.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # report, never raise: this is the health check
        log.warning("health check: database unreachable (%s)", type(exc).__name__)
        database = "error"
    recognizer = state.palms.recognizer
    models = recognizer.extractor is not None and recognizer.embedder is not None
    ok = database == "ok" and models
    body = HealthOut(status="ok" if ok else "degraded", database=database, models_loaded=models,
                     enrolled_palms=state.palms.customers, samples=state.palms.samples)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
