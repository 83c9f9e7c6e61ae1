"""Request body limit: a pure-ASGI middleware answering 413 before a large body is read.

A request whose ``Content-Length`` is above the limit is refused at once, without reading a
byte of its body. A chunked body (no ``Content-Length``), or one that sends more than it
declared, is counted as it streams in: the moment the count passes the limit the app's
``receive`` raises :class:`BodyTooLarge`, whatever the app had started is discarded (nothing was
sent to the client yet, since every route reads its body before answering), and the client gets
the 413 problem. The app never holds more than the limit plus one chunk.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from palmpay.api.errors import send_problem

__all__ = ["BodyLimitMiddleware", "BodyTooLarge"]

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    """The request body passed the limit while being read."""


class BodyLimitMiddleware:
    """Refuse request bodies above ``max_bytes`` with a 413 ``payload_too_large`` problem."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, scope: Scope, send: Send) -> None:
        await send_problem(send, scope, "payload_too_large",
                           f"the request body is larger than {self.max_bytes} bytes",
                           {"limit": self.max_bytes}, headers=[(b"connection", b"close")])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                break
        if declared is not None and declared > self.max_bytes:
            log.info("413: %s %s declares %d bytes", scope.get("method"), scope.get("path"),
                     declared)
            await self._reject(scope, send)
            return

        received = 0
        overflow = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, overflow
            if overflow:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    overflow = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflow:
                return  # the app's answer to a body it could not read is replaced by the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            overflow = True
        except Exception as exc:
            if not overflow:
                raise
            log.debug("app failed after body overflow: %s", type(exc).__name__)
        if overflow:
            log.info("413: %s %s streamed more than %d bytes", scope.get("method"),
                     scope.get("path"), self.max_bytes)
            if not started:
                await self._reject(scope, send)
