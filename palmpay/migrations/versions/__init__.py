"""Alembic revisions (``0001_core``: payments; ``0002_api``: the HTTP API's tables;
``0003_narrowing``: phone-digit narrowing)."""

__all__: list[str] = []
