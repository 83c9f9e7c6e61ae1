"""``GET /problems/{code}``: what each problem ``type`` means (human-readable)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from palmpay.api.errors import problem_page

__all__ = ["router"]

router = APIRouter(tags=["problems"])


@router.get("/problems/{code}", response_class=HTMLResponse)
def describe_problem(code: str) -> HTMLResponse:
    """The page behind a problem document's ``type`` URI."""
    return problem_page(code)
