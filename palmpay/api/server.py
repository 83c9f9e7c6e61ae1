"""Run the API with uvicorn: ``serve(host, port, settings, workers)`` (``palmpay serve``).

uvicorn's access log records method, path and status only, never bodies or headers, so card
numbers and API keys do not reach it.

``workers > 1`` (``palmpay serve --workers N``) runs N uvicorn worker processes on one socket
(uvicorn's supervisor restarts a worker that dies). Each worker builds its own app from the
import string ``palmpay.api.app:create_app`` (a factory) with settings from the ``PALMPAY_*``
environment, so it loads its own models and its own index replica and follows the palm change
log (:mod:`palmpay.api.replica`); the database is what they share. That needs PostgreSQL: on
SQLite the enrollment lock is per process, so N > 1 is refused (:class:`WorkersRefusedError`).
"""

from __future__ import annotations

import logging

import uvicorn
from sqlalchemy.engine import make_url

from palmpay.config import Settings, get_settings
from palmpay.db import normalise_url
from palmpay.payments.keys import load_keyring

__all__ = ["APP_FACTORY", "WorkersRefusedError", "check_workers", "serve"]

log = logging.getLogger(__name__)

#: What each worker process imports and calls (``uvicorn --factory``).
APP_FACTORY = "palmpay.api.app:create_app"


class WorkersRefusedError(ValueError):
    """``workers`` cannot be served with these settings (the message says why)."""


def check_workers(settings: Settings, workers: int) -> None:
    """Raise :class:`WorkersRefusedError` unless ``workers`` processes can share the database
    of ``settings``: any number on PostgreSQL, one on SQLite."""
    if workers < 1:
        raise WorkersRefusedError(f"--workers must be at least 1, not {workers}")
    backend = make_url(normalise_url(settings.resolved_database_url())).get_backend_name()
    if workers > 1 and backend != "postgresql":
        raise WorkersRefusedError(
            f"--workers {workers} needs PostgreSQL (PALMPAY_DATABASE_URL=postgresql://...): the "
            f"{backend} database is for one API process, whose enrollment lock and palm index "
            "are its own; run one worker, or move to PostgreSQL")


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None,
          workers: int = 1) -> None:
    """Serve the API until interrupted (blocking).

    The keyring is loaded first, so a missing or broken one is one clear error
    (:class:`palmpay.payments.keys.KeyringError`) instead of a failed server start-up (in dev
    mode this also creates the keyring once, before the workers race to). With ``workers > 1``
    the settings must be the environment's (:func:`palmpay.config.get_settings`): each worker
    reads them again.
    """
    env_settings = settings is None
    settings = settings or get_settings()
    check_workers(settings, workers)
    load_keyring(settings)
    if workers > 1:
        if not env_settings:
            raise WorkersRefusedError("with workers > 1 every worker reads the settings from "
                                      "the PALMPAY_* environment: pass settings=None")
        log.info("serving PalmPay API on http://%s:%d with %d worker processes", host, port,
                 workers)
        uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers,
                    access_log=True, server_header=False)
        return
    from palmpay.api.app import create_app

    app = create_app(settings)
    log.info("serving PalmPay API on http://%s:%d (docs at /docs)", host, port)
    uvicorn.run(app, host=host, port=port, access_log=True, server_header=False)
