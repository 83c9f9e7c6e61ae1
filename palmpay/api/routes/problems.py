"""``GET /problems/{code}``: what each problem ``type`` means (human-readable)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from palmpay.api.errors import problem_page
from palmpay.api.schemas import Text

__all__ = ["router"]

router = APIRouter(tags=["problems"])


@router.get("/problems/{code}", response_class=HTMLResponse, responses={
    404: {"description": "No such code: a page saying so.",
          "content": {"text/html": {"schema": {"type": "string"}}}}})
def describe_problem(code: Text) -> HTMLResponse:
    """The page behind a problem document's ``type`` URI."""
    return problem_page(code)
