"""Crash recovery of Idempotency-Key claims: link what a request created to its key, and
answer a retry with it.

A request that commits a payment (or a customer, or a refund) and dies before its response
is stored leaves its key ``in_progress``. So that a retry can still be answered with what
committed, :func:`install` registers a SQLAlchemy ``after_flush`` hook: while a request runs
under a claim (:data:`palmpay.payments.intents.CLAIM`, set by
:class:`~palmpay.api.idempotency.IdempotencyMiddleware`), the first new ``payments``,
``customers`` or ``refunds`` row it flushes is written into the claim's ``result_type`` /
``result_id`` **in the same transaction** as the row. Either both commit or neither.

A retry that finds the claim's owner dead (:meth:`palmpay.payments.instances.InstanceRegistry.
alive`) first settles the authorisation intents made under the claim (so an authorisation made
just before the crash becomes its payment, or is voided), then: a linked result is answered by
:func:`render_result` — the response the original request would have given (201 with the
payment, customer or refund; the 402 decline problem for a failed payment) — and stored; no
result means nothing committed, and the retry runs the request again.

The same hook arms the ``enrollment.after_commit`` fault point (:mod:`palmpay.payments.faults`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import event, update
from sqlalchemy.orm import Session

from palmpay.api.errors import PROBLEM_JSON, problem_body
from palmpay.api.models import IdempotencyKey
from palmpay.payments import faults
from palmpay.payments.errors import PaymentError
from palmpay.payments.intents import CLAIM
from palmpay.payments.models import Customer, Payment, Refund
from palmpay.payments.payments import decline_error
from palmpay.payments.service import PaymentService
from palmpay.payments.states import PaymentStatus

__all__ = ["RESULT_TYPES", "install", "render_result"]

log = logging.getLogger(__name__)

#: The rows a POST creates, by the ``result_type`` recorded on its claim.
RESULT_TYPES: dict[type, str] = {Payment: "payment", Customer: "customer", Refund: "refund"}
_NEW_CUSTOMER = "palmpay_new_customer"
_installed = False


def _after_flush(session: Session, _context: Any) -> None:
    created = [(RESULT_TYPES[type(obj)], obj) for obj in session.new if type(obj) in RESULT_TYPES]
    if not created:
        return
    if any(kind == "customer" for kind, _ in created):
        session.info[_NEW_CUSTOMER] = True
    claim = CLAIM.get()
    if claim is None:
        return
    kind, obj = created[0]
    session.connection().execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claim, IdempotencyKey.result_id.is_(None))
        .values(result_type=kind, result_id=obj.id)
    )


def _after_commit(session: Session) -> None:
    if session.info.pop(_NEW_CUSTOMER, False):
        faults.reached("enrollment.after_commit")


def _after_rollback(session: Session) -> None:
    session.info.pop(_NEW_CUSTOMER, None)


def install() -> None:
    """Register the session hooks (once per process; every session of every database)."""
    global _installed
    if _installed:
        return
    event.listen(Session, "after_flush", _after_flush)
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_rollback", _after_rollback)
    _installed = True


def _json(document: Any) -> bytes:
    # As Starlette's JSONResponse renders it.
    return json.dumps(document, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")


def render_result(service: PaymentService, result_type: str, result_id: str,
                  path: str) -> tuple[int, bytes, str]:
    """``(status, body, content type)`` of the response that created ``result_id``."""
    if result_type == "payment":
        view = service.get_payment(result_id)
        if view.status == PaymentStatus.FAILED:
            err = decline_error(view.id, view.decline_code or "card_declined")
            body = problem_body(err.code, err.detail, path, err.extra)
            return body["status"], _json(body), PROBLEM_JSON
        try:
            name: str | None = service.get_customer(view.customer).name
        except PaymentError:
            name = None
        return 201, _json(view.model_copy(update={"customer_name": name}).to_dict()), \
            "application/json"
    if result_type == "customer":
        return 201, _json(service.get_customer(result_id).to_dict()), "application/json"
    if result_type == "refund":
        return 201, _json(service.get_refund(result_id).to_dict()), "application/json"
    raise ValueError(f"unknown result type {result_type!r}")
