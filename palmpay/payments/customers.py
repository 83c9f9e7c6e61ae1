"""Customers: enrol (card tokenised, palm templates encrypted), read, add templates, unenrol,
and the decrypted templates of every active customer for the palm index.

Part of :class:`~palmpay.payments.service.PaymentService` (see that module for events and
concurrency).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from palmpay.db import new_id, utcnow
from palmpay.embed import Template
from palmpay.payments.audit import AuditLog
from palmpay.payments.cancelable import TemplateTransform
from palmpay.payments.cards import CardInput
from palmpay.payments.changes import ChangeKind, record_change
from palmpay.payments.core import ServiceCore
from palmpay.payments.errors import PaymentError
from palmpay.payments.merchants import DEFAULT_MERCHANT_ID, owned_by
from palmpay.payments.models import Card, Customer, PalmTemplate
from palmpay.payments.renewal import active_transform, convert, transform_of
from palmpay.payments.states import CardStatus, CustomerStatus
from palmpay.payments.validation import check_name, check_phone_last4, check_templates
from palmpay.payments.views import CardView, CustomerView

__all__ = ["CustomerOperations"]

log = logging.getLogger(__name__)

#: Templates decrypted per database round trip by :meth:`CustomerOperations.templates`.
_TEMPLATE_PAGE = 256


def _not_found(customer_id: str) -> PaymentError:
    """What a customer of another merchant answers: the very error of an unknown id."""
    return PaymentError("customer_not_found", f"no customer {customer_id}",
                        extra={"customer": customer_id})


class CustomerOperations(ServiceCore):
    """Enrolment and unenrolment of customers."""

    @property
    def template_transform(self) -> TemplateTransform:
        """The cancelable transform (:mod:`palmpay.payments.cancelable`) this service stores
        templates under, and :meth:`templates` returns them under: the keyring's active template
        key when first asked, then fixed for the service's life (like the index built from it)."""
        transform: TemplateTransform | None = getattr(self, "_template_transform", None)
        if transform is None:
            transform = active_transform(self.vault.keyring)
            self._template_transform = transform
        return transform

    @property
    def audit(self) -> AuditLog:
        """The audit log of this service's database (:mod:`palmpay.payments.audit`)."""
        return AuditLog(self.db)

    def _add_templates(self, session: Session, customer_id: str,
                       templates: list[Template]) -> None:
        """Store clear templates under :attr:`template_transform`, each sealed in the vault."""
        now = utcnow()
        transform = self.template_transform
        for template in templates:
            template_id = new_id("tpl")
            protected = transform.protect(template)
            env = self.vault.seal_template(template_id, protected.vector, protected.code)
            session.add(PalmTemplate(
                id=template_id, customer_id=customer_id, kek_id=env.kek_id,
                wrapped_dek=env.wrapped_dek, nonce=env.nonce, ciphertext=env.ciphertext,
                created_at=now, transform_id=transform.key_id,
            ))  # fmt: skip

    def create_customer(
        self,
        name: str,
        card: CardInput,
        templates: Sequence[Template],
        consent: bool,
        phone_last4: str | None = None,
        merchant_id: str = DEFAULT_MERCHANT_ID,
    ) -> CustomerView:
        """Enrol a customer: card tokenised into the vault, palm templates encrypted.

        ``templates``: 1 to :data:`~palmpay.payments.validation.MAX_TEMPLATES`
        :class:`palmpay.embed.Template` objects, all the same sizes.

        Raises ``consent_required`` unless ``consent is True`` (biometric consent, recorded as
        ``consent_at``); ``invalid_request`` for an empty/overlong name; ``invalid_template``;
        ``invalid_card`` / ``expired_card``; ``duplicate_card`` when the same card number is
        active on another customer (enforced by a unique index, so also under races).
        ``phone_last4``: the last 4 digits of the shopper's phone, stored only as a keyed hash
        (:meth:`customers_with_phone` narrows a search past N_safe). ``merchant_id``: the
        merchant enrolling the customer (:mod:`palmpay.payments.merchants`); the same card may
        be active once per merchant.
        """
        if consent is not True:
            raise PaymentError("consent_required", "explicit consent to store palm templates "
                               "is required to enrol")
        name = check_name(name)
        checked = check_templates(templates)
        phone_hash = None if phone_last4 is None else self.vault.phone_hash(
            check_phone_last4(phone_last4))
        stored = self.vault.tokenize(card)
        now = utcnow()
        customer_id = new_id("cus")
        card_row = Card(
            id=new_id("card"), token=stored.token, customer_id=customer_id,
            brand=stored.brand, last4=stored.last4, exp_month=stored.exp_month,
            exp_year=stored.exp_year, fingerprint=stored.fingerprint,
            status=CardStatus.ACTIVE, kek_id=stored.envelope.kek_id,
            wrapped_dek=stored.envelope.wrapped_dek, nonce=stored.envelope.nonce,
            ciphertext=stored.envelope.ciphertext, created_at=now, merchant_id=merchant_id,
        )  # fmt: skip
        # One transaction of inserts only, the view built from what was written: enrollment
        # is on the durable path (issue 11: <= 10 ms p99), so no re-reads. An active card of
        # this merchant with the same number is refused by the unique index
        # uq_cards_active_fingerprint (also under races); the IntegrityError is told apart below.
        try:
            with self.db.session() as s:
                s.add(Customer(id=customer_id, name=name, status=CustomerStatus.ACTIVE,
                               consent_at=now, created_at=now, phone_hash=phone_hash,
                               merchant_id=merchant_id))
                s.flush()
                s.add(card_row)
                self._add_templates(s, customer_id, checked)
                s.flush()
                record_change(s, customer_id, ChangeKind.ENROLL)  # for the index replicas
        except IntegrityError:
            with self.db.session(readonly=True) as s:
                duplicate = self._fingerprint_active(s, stored.fingerprint, merchant_id)
            if duplicate:
                raise self._duplicate_card() from None
            raise
        view = CustomerView(id=customer_id, name=name, status=CustomerStatus.ACTIVE,
                            card=CardView.model_validate(card_row), templates=len(checked),
                            created=now, consent_at=now, merchant=merchant_id)
        log.info("enrolled customer %s (%s card %s, %d templates)", customer_id, stored.brand,
                 stored.token, len(checked))
        self._emit("customer.created", view)
        return view

    def customers_with_phone(self, phone_last4: str, merchant_id: str | None = None
                             ) -> list[str]:
        """Ids of the active customers enrolled with these last 4 phone digits (only
        ``merchant_id``'s when given)."""
        phone_hash = self.vault.phone_hash(check_phone_last4(phone_last4))
        stmt = select(Customer.id).where(Customer.phone_hash == phone_hash,
                                         Customer.status == CustomerStatus.ACTIVE)
        if merchant_id is not None:
            stmt = stmt.where(Customer.merchant_id == merchant_id)
        with self.db.session(readonly=True) as s:
            return list(s.scalars(stmt.order_by(Customer.id)))

    def customer_ids(self, merchant_id: str) -> list[str]:
        """Ids of a merchant's active customers: what its terminals' palm search covers."""
        with self.db.session(readonly=True) as s:
            return list(s.scalars(
                select(Customer.id).where(Customer.merchant_id == merchant_id,
                                          Customer.status == CustomerStatus.ACTIVE)
                .order_by(Customer.id)))

    @staticmethod
    def _fingerprint_active(session: Session, fingerprint: str, merchant_id: str) -> bool:
        count = session.scalar(
            select(func.count()).select_from(Card).where(
                Card.fingerprint == fingerprint, Card.status == CardStatus.ACTIVE,
                Card.merchant_id == merchant_id,
            )
        )
        return bool(count)

    @staticmethod
    def _duplicate_card() -> PaymentError:
        return PaymentError("duplicate_card", "this card is already enrolled by another customer")

    def get_customer(self, customer_id: str, merchant_id: str | None = None) -> CustomerView:
        """The customer, active or deleted; ``customer_not_found`` if it never existed or, with
        ``merchant_id``, belongs to another merchant (the same error, word for word)."""
        with self.db.session(readonly=True) as s:
            customer = self._customer(s, customer_id)
            if merchant_id is not None and not owned_by(customer.merchant_id, merchant_id):
                raise _not_found(customer_id)
            return CustomerView.model_validate(customer)

    def add_templates(self, customer_id: str, templates: Sequence[Template]) -> CustomerView:
        """Store more palm templates for an active customer (re-enrolment, extra samples); at
        most :data:`~palmpay.payments.validation.MAX_TEMPLATES` at once."""
        checked = check_templates(templates)
        with self.db.session() as s:
            customer = self._active_customer(s, customer_id)
            self._add_templates(s, customer_id, checked)
            customer.templates_purged_at = None  # enrolled again after retention
            s.flush()
            record_change(s, customer_id, ChangeKind.TEMPLATES)
            return CustomerView.model_validate(customer)

    def delete_customer(self, customer_id: str, merchant_id: str | None = None) -> CustomerView:
        """Unenrol: delete the palm templates, revoke the card token and destroy its encrypted
        card number (the row keeps brand/last4/expiry/fingerprint for the payment history).
        Payments and refunds are kept; uncaptured payments can still be captured or canceled
        (they need the authorisation code, not the card).

        Not idempotent: deleting a deleted customer raises ``customer_deleted``, so the
        ``customer.deleted`` event fires exactly once. ``customer_not_found`` if it never existed
        or, with ``merchant_id``, belongs to another merchant.
        """
        now = utcnow()
        with self.db.session() as s:
            customer = self._customer(s, customer_id, lock=True)
            if merchant_id is not None and not owned_by(customer.merchant_id, merchant_id):
                raise _not_found(customer_id)
            if customer.status == CustomerStatus.DELETED:
                raise PaymentError("customer_deleted", f"customer {customer_id} is already deleted",
                                   extra={"customer": customer_id})
            deleted = s.execute(delete(PalmTemplate).where(PalmTemplate.customer_id == customer_id))
            removed = cast("CursorResult[Any]", deleted).rowcount  # DML returns a CursorResult
            for card in s.scalars(
                select(Card).where(Card.customer_id == customer_id,
                                   Card.status == CardStatus.ACTIVE)
            ):
                card.status = CardStatus.REVOKED
                card.revoked_at = now
                card.kek_id = card.wrapped_dek = card.nonce = card.ciphertext = None
            customer.status = CustomerStatus.DELETED
            customer.deleted_at = now
            s.flush()
            record_change(s, customer_id, ChangeKind.DELETE)
            view = CustomerView.model_validate(customer)
        log.info("unenrolled customer %s: %d templates deleted, card revoked", customer_id, removed)
        self._emit("customer.deleted", view)
        return view

    def templates(self, customer_ids: Collection[str] | None = None
                  ) -> Iterator[tuple[str, Template]]:
        """``(customer_id, template)`` for every palm template of every active customer (only
        of ``customer_ids`` when given: an index replica applying changes), decrypted, under
        :attr:`template_transform` (rows stored under another template key are converted), for
        rebuilding the search index at start-up. Read page by page in short transactions,
        ordered by template id."""
        target = self.template_transform
        last = ""
        only = () if customer_ids is None else (PalmTemplate.customer_id.in_(customer_ids),)
        while True:
            with self.db.session(readonly=True) as s:
                rows = s.scalars(
                    select(PalmTemplate)
                    .join(Customer, Customer.id == PalmTemplate.customer_id)
                    .where(Customer.status == CustomerStatus.ACTIVE, PalmTemplate.id > last,
                           *only)
                    .order_by(PalmTemplate.id)
                    .limit(_TEMPLATE_PAGE)
                ).all()
            if not rows:
                return
            for row in rows:
                vector, code = self.vault.open_template(row)
                yield row.customer_id, convert(Template(vector, code),
                                               transform_of(self.vault, row.transform_id), target)
            last = rows[-1].id
