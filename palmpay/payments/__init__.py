"""Payments core: card vault, simulated acquirer, append-only ledger and the payment service.

The HTTP API codes against :mod:`palmpay.payments.service` (``PaymentService`` and its frozen
views) and :class:`palmpay.payments.errors.PaymentError`.
"""

from palmpay.payments.cards import CardInput
from palmpay.payments.errors import PaymentError

__all__ = ["CardInput", "PaymentError"]
