"""Run the API with uvicorn: ``serve(host, port, settings)`` (``palmpay serve``).

uvicorn's access log records method, path and status only, never bodies or headers, so card
numbers and API keys do not reach it.
"""

from __future__ import annotations

import logging

import uvicorn

from palmpay.api.app import create_app
from palmpay.config import Settings, get_settings
from palmpay.payments.keys import load_keyring

__all__ = ["serve"]

log = logging.getLogger(__name__)


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None) -> None:
    """Serve the API until interrupted (blocking).

    The keyring is loaded first, so a missing or broken one is one clear error
    (:class:`palmpay.payments.keys.KeyringError`) instead of a failed server start-up.
    """
    settings = settings or get_settings()
    load_keyring(settings)
    app = create_app(settings)
    log.info("serving PalmPay API on http://%s:%d (docs at /docs)", host, port)
    uvicorn.run(app, host=host, port=port, access_log=True, server_header=False)
