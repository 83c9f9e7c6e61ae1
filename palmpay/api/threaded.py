"""uvicorn in a background thread: :func:`serve_in_thread` (the demo, tests and benchmarks).

::

    with serve_in_thread(create_app(settings)) as base_url:
        httpx.get(f"{base_url}/v1/health")

The server binds ``127.0.0.1`` on a free port (``port=0``) unless told otherwise, runs the
app's lifespan, and the ``with`` block starts once it is accepting connections; leaving the
block asks it to stop and waits for the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

__all__ = ["serve_in_thread"]

log = logging.getLogger(__name__)


@contextmanager
def serve_in_thread(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    start_timeout_s: float = 120.0,
    stop_timeout_s: float = 30.0,
    **config: Any,
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a daemon thread; yields the base URL
    (``http://127.0.0.1:<port>``).

    ``config`` goes to :class:`uvicorn.Config` (defaults: ``log_level="warning"``, no access
    log, ``lifespan="on"``). Raises :class:`RuntimeError` when the server does not start
    within ``start_timeout_s`` (the port in use, a failing lifespan).
    """
    options: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "on"}
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options))
    thread = threading.Thread(target=server.run, name="palmpay-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start on {host}:{port} (port in use?)")
            time.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1]
        base_url = f"http://{host}:{bound}"
        log.debug("serving on %s in thread %s", base_url, thread.name)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(stop_timeout_s)
