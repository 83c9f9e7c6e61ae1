"""palmpay.api.threaded.serve_in_thread: uvicorn on 127.0.0.1, a free port, in a thread."""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from palmpay.api.threaded import serve_in_thread


def _app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.started = True
        yield

    app = FastAPI(lifespan=lifespan)
    app.state.started = False

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return app


def test_serves_on_a_free_local_port_then_stops():
    app = _app()
    with serve_in_thread(app) as base:
        host, _, port = base.removeprefix("http://").partition(":")
        assert host == "127.0.0.1" and int(port) > 0
        assert app.state.started  # the lifespan ran before the block
        assert httpx.get(f"{base}/ping", timeout=10).json() == {"pong": "yes"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/ping", timeout=2)


# uvicorn's thread ends with SystemExit when it cannot bind; that is the point here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_port_in_use_is_an_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="did not start"), serve_in_thread(_app(),
                                                                               port=port):
            pass
