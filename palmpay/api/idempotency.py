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
   below 500 and not 429, and sent. A 5xx, a 429 (rate limited or locked out: the request was
   refused before it ran) or an exception deletes the row (the key is released, the client
   may retry after ``Retry-After``);
4. anyone else with the same key gets, by the stored row: the same request hash and ``done`` →
   the stored status and body with ``Idempotent-Replayed: true``; a different request → 409
   ``idempotency_conflict``; ``in_progress`` → polls until it is done (then replays) or until
   ``idempotency_wait_s`` passes (then 409).

Crash safety: the claim records its owner (the API instance's id and pid,
:mod:`palmpay.payments.instances`). An ``in_progress`` claim whose owner is dead — its lease
expired, it stopped, or its process is gone from this host — is *recovered* at once instead of
waited for: the authorisation intents made under it are settled, then the object the request
committed (linked to the key in the object's own transaction, :mod:`palmpay.api.recovery`) is
answered, as the original request would have answered, and stored; if nothing committed the
retry takes the claim over and runs the request again. A retry never waits for the TTL.

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
import os
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
from palmpay.api.recovery import render_result
from palmpay.db import Database, utcnow
from palmpay.payments import faults
from palmpay.payments.instances import InstanceRegistry
from palmpay.payments.intents import CLAIM

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
    ``recovered`` (row id; the dead owner committed ``result_type`` ``result_id``),
    ``conflict`` (different request) or ``busy`` (another request is running)."""

    outcome: str
    row_id: int | None = None
    status: int | None = None
    body: bytes | None = None
    content_type: str | None = None
    result_type: str | None = None
    result_id: str | None = None


class IdempotencyStore:
    """Database side of idempotency keys (blocking; the middleware calls it in threads).

    :param instances: this process's registry: the owner recorded on claims and the liveness
        rule for recovering claims of dead owners (``None``: claims are never recovered).
    :param settle: ``settle(claim_id)`` settles the authorisation intents made under a claim
        whose owner died (before its result is looked at).
    """

    def __init__(self, db: Database, ttl: timedelta, clock: Callable[[], datetime] = utcnow,
                 instances: InstanceRegistry | None = None,
                 settle: Callable[[int], object] | None = None):
        self.db = db
        self.ttl = ttl
        self.clock = clock
        self.instances = instances
        self.settle = settle

    def claim(self, api_key_id: str, key: str, method: str, path: str, digest: str) -> Claim:
        owner = self.instances.id if self.instances is not None else None
        for _ in range(5):
            now = self.clock()
            row = IdempotencyKey(api_key_id=api_key_id, key=key, method=method, path=path,
                                 request_hash=digest, state="in_progress", created_at=now,
                                 expires_at=now + self.ttl, owner_id=owner,
                                 owner_pid=os.getpid())
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
            if self.instances is not None and not self.instances.alive(existing.owner_id,
                                                                       existing.created_at):
                recovered = self._recover(existing)
                if recovered is not None:
                    return recovered
                continue
            return Claim("busy")
        return Claim("busy")

    def _recover(self, stale: IdempotencyKey) -> Claim | None:
        """A claim whose owner died: its committed result, or the claim taken over (None when
        another request got there first: look again)."""
        assert self.instances is not None  # only called with a registry
        log.warning("Idempotency-Key claim %d: owner %s is dead; recovering", stale.id,
                    stale.owner_id)
        if self.settle is not None:
            self.settle(stale.id)
        with self.db.session() as session:
            row = session.get(IdempotencyKey, stale.id, with_for_update=True)
            if row is None or row.state != "in_progress" or row.owner_id != stale.owner_id:
                return None
            if row.result_id is not None and row.result_type is not None:
                return Claim("recovered", row_id=row.id, result_type=row.result_type,
                             result_id=row.result_id)
            row.owner_id = self.instances.id
            row.owner_pid = os.getpid()
            row.created_at = self.clock()
        log.info("Idempotency-Key claim %d: nothing had committed; running it again", stale.id)
        return Claim("claimed", row_id=stale.id)

    def finish(self, row_id: int, status: int, body: bytes, content_type: str | None) -> None:
        with self.db.session() as session:
            session.execute(
                update(IdempotencyKey).where(IdempotencyKey.id == row_id).values(
                    state="done", response_status=status, response_body=body,
                    response_content_type=content_type)
            )

    def release(self, row_id: int) -> tuple[str, str] | None:
        """Delete a failed request's claim, unless it committed an object: then the claim is
        kept and ``(result_type, result_id)`` returned (the caller stores that result)."""
        with self.db.session() as session:
            row = session.get(IdempotencyKey, row_id, with_for_update=True)
            if row is None:
                return None
            if row.result_id is not None and row.result_type is not None:
                return row.result_type, row.result_id
            session.delete(row)
        return None


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
        service = state.service
        store = IdempotencyStore(
            state.db, timedelta(hours=state.settings.idempotency_ttl_hours), state.clock,
            instances=service.instances,
            settle=lambda claim_id: service.reconciler().reconcile(claim_id))

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
        if claim.outcome == "recovered":
            assert claim.row_id is not None and claim.result_type and claim.result_id
            claim = await run_in_threadpool(self._store_result, store, state.service,
                                            claim.row_id, claim.result_type, claim.result_id,
                                            scope["path"])
        if claim.outcome == "replay":
            await self._replay(send, claim)
            return

        assert claim.row_id is not None  # a claimed key has its row
        await self._execute(scope, receive, send, store, claim.row_id, body)

    @staticmethod
    def _store_result(store: IdempotencyStore, service: Any, row_id: int, result_type: str,
                      result_id: str, path: str) -> Claim:
        """Render a committed result, store it as the key's response; a replay of it."""
        status, out, content_type = render_result(service, result_type, result_id, path)
        store.finish(row_id, status, out, content_type)
        log.warning("Idempotency-Key claim %d answered with the committed %s %s", row_id,
                    result_type, result_id)
        return Claim("replay", status=status, body=out, content_type=content_type)

    @staticmethod
    async def _replay(send: Send, claim: Claim) -> None:
        out = claim.body or b""
        response_headers = [(b"content-length", str(len(out)).encode()),
                            (REPLAYED_HEADER.lower().encode(), b"true")]
        if claim.content_type:
            response_headers.append((b"content-type", claim.content_type.encode()))
        await send({"type": "http.response.start", "status": claim.status,
                    "headers": response_headers})
        await send({"type": "http.response.body", "body": out})

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

        state = scope["app"].state.palmpay
        token = CLAIM.set(row_id)  # links what the request creates to the key
        try:
            await self.app(scope, replay_receive, capture)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(self._release, store, state.service, row_id,
                                        scope["path"])
            raise
        finally:
            CLAIM.reset(token)
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        status = start["status"] if start else 500
        if status >= 500 or status == 429 or start is None:  # 429: refused, not executed
            await run_in_threadpool(self._release, store, state.service, row_id, scope["path"])
        else:
            content = b"".join(m.get("body", b"") for m in messages
                               if m["type"] == "http.response.body")
            content_type = Headers(raw=start["headers"]).get("content-type")
            await run_in_threadpool(store.finish, row_id, status,
                                    _without_secret(content, content_type), content_type)
            faults.reached("idempotency.after_store")
        for message in messages:
            await send(message)

    @classmethod
    def _release(cls, store: IdempotencyStore, service: Any, row_id: int, path: str) -> None:
        """A failed request: release its key, or, when it committed an object before failing,
        store that object as the key's response (a retry must not create a second one)."""
        kept = store.release(row_id)
        if kept is not None:
            cls._store_result(store, service, row_id, *kept, path)
