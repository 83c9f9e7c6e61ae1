"""Alembic revisions (``0001_core``: payments; ``0002_api``: the HTTP API's tables)."""

__all__: list[str] = []
