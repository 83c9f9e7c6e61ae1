"""Audit of the API's biometric and payment operations: one FastAPI dependency per operation.

A route takes ``audit: EnrollAudit`` (or ``AuthorizeAudit``, ``CaptureAudit``, ...); the
dependency authenticates with the route's own key dependency (cached per request, so the key is
checked once), and around the route body writes one ``audit_events`` row
(:mod:`palmpay.payments.audit`): actor = the API key id, the action, the object id the route set
(``audit.object_id = payment.id``) or the one a :class:`PaymentError` names, and the outcome —
what the route set (``audit.value = payment.status``), or the error code it raised
(``palm_not_recognised``, ``narrowing_required``, ``too_many_attempts`` for a lock-out,
``card_declined``, ...). Requests refused before the key is known (401) are not audited: they
have no actor.

The checkout also writes a ``palm.identify`` row (:func:`identified`) with the matched customer
or none, and ``_narrowed`` when the search was narrowed by phone digits: a narrowed ``no_match``
is a narrowing failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends

from palmpay.api.deps import AdminKey, KioskKey, ServiceDep, TerminalKey
from palmpay.api.keys import ApiKeyView
from palmpay.payments.audit import AuditAction, Outcome
from palmpay.payments.service import PaymentService

__all__ = [
    "AdminUnenrollAudit",
    "AuthorizeAudit",
    "CancelAudit",
    "CaptureAudit",
    "EnrollAudit",
    "RefundAudit",
    "UnenrollAudit",
    "identified",
]


def _audited(action: AuditAction, key_type: Any) -> Callable[..., Iterator[Outcome]]:
    """The dependency auditing ``action``, authenticated by ``key_type``'s own dependency (the
    same callable as the route's, so FastAPI runs it once per request)."""
    key_dependency = key_type.__metadata__[0]

    def dependency(service: ServiceDep,
                   key: ApiKeyView = key_dependency) -> Iterator[Outcome]:
        with service.audit.operation(key.id, action) as outcome:
            yield outcome

    dependency.__name__ = "audit_" + action.replace(".", "_")
    return dependency


EnrollAudit = Annotated[Outcome, Depends(_audited(AuditAction.ENROLL, KioskKey))]
UnenrollAudit = Annotated[Outcome, Depends(_audited(AuditAction.UNENROLL, KioskKey))]
AdminUnenrollAudit = Annotated[Outcome, Depends(_audited(AuditAction.UNENROLL, AdminKey))]
AuthorizeAudit = Annotated[Outcome, Depends(_audited(AuditAction.AUTHORIZE, TerminalKey))]
CaptureAudit = Annotated[Outcome, Depends(_audited(AuditAction.CAPTURE, TerminalKey))]
CancelAudit = Annotated[Outcome, Depends(_audited(AuditAction.CANCEL, TerminalKey))]
RefundAudit = Annotated[Outcome, Depends(_audited(AuditAction.REFUND, TerminalKey))]


def identified(service: PaymentService, key: ApiKeyView, customer: Any,
               narrowed: bool) -> None:
    """Record a checkout's identification: the customer matched (an object with ``id``) or
    None."""
    outcome = ("match" if customer is not None else "no_match") + ("_narrowed" if narrowed
                                                                  else "")
    service.audit.record(key.id, AuditAction.IDENTIFY,
                         None if customer is None else customer.id, outcome)
