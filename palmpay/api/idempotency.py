"""``Idempotency-Key`` for every POST: retry safely, execute at most once.

A POST carrying ``Idempotency-Key: <1-255 printable ASCII characters>`` from an authenticated
API key is handled by :class:`IdempotencyMiddleware` (pure ASGI, inside the body limit):

1. the body is read and hashed with the method and path (``request_hash``; a multipart body's
   random boundary is replaced by a fixed one first, so a client that re-encodes the same form
   still matches);
2. the key is *claimed*: an INSERT into ``idempotency_keys`` in its own committed transaction,
   relying on ``UNIQUE(api_key_id, key)`` (on SQLite and PostgreSQL alike, the second INSERT
   fails);
3. the claimant runs the request; its response is stored (state ``done``) when its status is
   below 500, and sent. A 5xx or an exception deletes the row (the key is released, the client
   may retry);
4. anyone else with the same key gets, by the stored row: the same request hash and ``done`` →
   the stored status and body with ``Idempotent-Replayed: true``; a different request → 409
   ``idempotency_conflict``; ``in_progress`` → polls until it is done (then replays) or until
   ``idempotency_wait_s`` passes (then 409).

Keys live ``idempotency_ttl_hours``; an expired row is replaced on the next claim and
:func:`purge_expired` deletes the rest (run periodically by the webhook dispatcher thread).
Requests without the header, or without a valid API key (the route answers 401), are not
touched. Only ``content-type`` of the response is stored besides status and body. A secret that
is shown once (the ``secret`` member of a new API key or webhook endpoint) is never stored: the
replay of such a response has ``"secret": null``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import anyio
from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from palmpay.api.errors import send_problem
from palmpay.api.keys import authenticate
from palmpay.api.models import IdempotencyKey
from palmpay.db import Database, utcnow

__all__ = [
    "HEADER",
    "REPLAYED_HEADER",
    "Claim",
    "IdempotencyMiddleware",
    "IdempotencyStore",
    "purge_expired",
    "request_hash",
]

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
_POLL_S = (0.02, 0.25)  # first and largest polling interval while another request runs
_MAX_PATH = 500
_BOUNDARY_RE = re.compile(r'boundary="?([^";,]+)"?', re.IGNORECASE)


def _without_secret(body: bytes, content_type: str | None) -> bytes:
    """The stored copy of a response: a top-level JSON ``secret`` member is nulled."""
    if not content_type or "json" not in content_type or b'"secret"' not in body:
        return body
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if isinstance(document, dict) and document.get("secret") is not None:
        document["secret"] = None
        return json.dumps(document, separators=(",", ":")).encode()
    return body


def request_hash(method: str, path: str, content_type: str, body: bytes) -> str:
    """SHA-256 of method, path (with any query string) and body (multipart boundary
    normalised)."""
    if content_type.lower().startswith("multipart/"):
        match = _BOUNDARY_RE.search(content_type)
        if match:
            body = body.replace(b"--" + match.group(1).encode("latin-1"), b"--BOUNDARY")
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode("utf-8"), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True)
class Claim:
    """Outcome of one claim attempt: ``claimed`` (row id), ``replay`` (stored response),
    ``conflict`` (different request) or ``busy`` (another request is running)."""

    outcome: str
    row_id: int | None = None
    status: int | None = None
    body: bytes | None = None
    content_type: str | None = None


class IdempotencyStore:
    """Database side of idempotency keys (blocking; the middleware calls it in threads)."""

    def __init__(self, db: Database, ttl: timedelta, clock: Callable[[], datetime] = utcnow):
        self.db = db
        self.ttl = ttl
        self.clock = clock

    def claim(self, api_key_id: str, key: str, method: str, path: str, digest: str) -> Claim:
        for _ in range(5):
            now = self.clock()
            row = IdempotencyKey(api_key_id=api_key_id, key=key, method=method, path=path,
                                 request_hash=digest, state="in_progress", created_at=now,
                                 expires_at=now + self.ttl)
            try:
                with self.db.session() as session:
                    session.add(row)
                return Claim("claimed", row_id=row.id)
            except IntegrityError:
                pass
            with self.db.session(readonly=True) as session:
                existing = session.scalars(
                    select(IdempotencyKey).where(IdempotencyKey.api_key_id == api_key_id,
                                                 IdempotencyKey.key == key)
                ).one_or_none()
            if existing is None:
                continue  # released or purged in between: claim again
            if existing.expires_at <= now:
                with self.db.session() as session:
                    session.execute(delete(IdempotencyKey).where(
                        IdempotencyKey.id == existing.id, IdempotencyKey.expires_at <= now))
                continue
            if (existing.method, existing.path, existing.request_hash) != (method, path, digest):
                return Claim("conflict")
            if existing.state == "done":
                return Claim("replay", status=existing.response_status,
                             body=existing.response_body or b"",
                             content_type=existing.response_content_type)
            return Claim("busy")
        return Claim("busy")

    def finish(self, row_id: int, status: int, body: bytes, content_type: str | None) -> None:
        with self.db.session() as session:
            session.execute(
                update(IdempotencyKey).where(IdempotencyKey.id == row_id).values(
                    state="done", response_status=status, response_body=body,
                    response_content_type=content_type)
            )

    def release(self, row_id: int) -> None:
        with self.db.session() as session:
            session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row_id))


def purge_expired(db: Database, now: datetime | None = None) -> int:
    """Delete expired idempotency keys; returns how many."""
    now = now or utcnow()
    with db.session() as session:
        result = cast("CursorResult[Any]", session.execute(  # a DELETE: a CursorResult
            delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now)))
    if result.rowcount:
        log.info("purged %d expired idempotency keys", result.rowcount)
    return result.rowcount or 0


class IdempotencyMiddleware:
    """Applies the stored-response protocol above; needs ``app.state.palmpay`` (``db``,
    ``settings``, ``clock``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = headers.get(HEADER)
        state = getattr(scope["app"].state, "palmpay", None)
        if key is None or state is None:
            await self.app(scope, receive, send)
            return
        if not _KEY_RE.match(key):
            await send_problem(send, scope, "validation_error",
                               f"{HEADER} must be 1 to 255 printable ASCII characters",
                               {"errors": [{"field": HEADER, "type": "string_pattern_mismatch",
                                            "message": "1-255 printable ASCII characters"}]})
            return
        scheme, _, secret = headers.get("authorization", "").partition(" ")
        api_key = None
        if scheme.lower() == "bearer" and secret.strip():
            api_key = await run_in_threadpool(authenticate, state.db, secret.strip())
        if api_key is None:
            await self.app(scope, receive, send)  # the route answers 401
            return

        chunks = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks += message.get("body", b"")
            if not message.get("more_body", False):
                break
        body = bytes(chunks)
        path = scope["path"]
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        digest = request_hash("POST", path, headers.get("content-type", ""), body)
        path = path[:_MAX_PATH]  # the column's width; the hash covers the whole path
        store = IdempotencyStore(state.db, timedelta(hours=state.settings.idempotency_ttl_hours),
                                 state.clock)

        claim = await self._claim(store, api_key.id, key, path, digest,
                                  state.settings.idempotency_wait_s)
        if claim.outcome == "conflict":
            await send_problem(send, scope, "idempotency_conflict",
                               f"this {HEADER} was already used for a different request")
            return
        if claim.outcome == "busy":
            await send_problem(send, scope, "idempotency_conflict",
                               f"a request with this {HEADER} is still being processed; "
                               "retry later")
            return
        if claim.outcome == "replay":
            out = claim.body or b""
            response_headers = [(b"content-length", str(len(out)).encode()),
                                (REPLAYED_HEADER.lower().encode(), b"true")]
            if claim.content_type:
                response_headers.append((b"content-type", claim.content_type.encode()))
            await send({"type": "http.response.start", "status": claim.status,
                        "headers": response_headers})
            await send({"type": "http.response.body", "body": out})
            return

        assert claim.row_id is not None  # a claimed key has its row
        await self._execute(scope, receive, send, store, claim.row_id, body)

    async def _claim(self, store: IdempotencyStore, api_key_id: str, key: str, path: str,
                     digest: str, wait_s: float) -> Claim:
        deadline = anyio.current_time() + wait_s
        delay = _POLL_S[0]
        while True:
            claim = await run_in_threadpool(store.claim, api_key_id, key, "POST", path, digest)
            if claim.outcome != "busy" or anyio.current_time() >= deadline:
                return claim
            await anyio.sleep(delay)
            delay = min(delay * 1.5, _POLL_S[1])

    async def _execute(self, scope: Scope, receive: Receive, send: Send,
                       store: IdempotencyStore, row_id: int, body: bytes) -> None:
        delivered = False

        async def replay_receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)

        try:
            await self.app(scope, replay_receive, capture)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(store.release, row_id)
            raise
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        status = start["status"] if start else 500
        if status >= 500 or start is None:
            await run_in_threadpool(store.release, row_id)
        else:
            content = b"".join(m.get("body", b"") for m in messages
                               if m["type"] == "http.response.body")
            content_type = Headers(raw=start["headers"]).get("content-type")
            await run_in_threadpool(store.finish, row_id, status,
                                    _without_secret(content, content_type), content_type)
        for message in messages:
            await send(message)
