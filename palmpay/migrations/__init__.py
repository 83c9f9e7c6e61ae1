"""Alembic migrations of every PalmPay table; run by :func:`palmpay.db.upgrade`."""

__all__: list[str] = []
