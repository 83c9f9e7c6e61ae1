"""The card vault: card tokens and envelope encryption of card numbers and palm templates.

Envelope
    Every record gets its own random 256-bit data key (DEK). The payload (card number, or a palm
    template's vector and code) is encrypted with AES-256-GCM under the DEK with a random 96-bit
    nonce; the DEK is wrapped with AES-256-GCM under the active key-encryption key (KEK, from the
    :class:`~palmpay.payments.keys.Keyring`). The row stores ``ciphertext``, ``nonce``,
    ``wrapped_dek`` (its own nonce + sealed DEK) and ``kek_id``. Both layers authenticate
    *associated data* binding them to the row (``card:<token>`` / ``template:<id>``, and the KEK
    id), so a ciphertext or wrapped key copied onto another row fails to open.

Tokens
    ``tok_`` + 24 random alphanumerics, unrelated to the card number. The fingerprint used to
    refuse a card enrolled twice is HMAC-SHA256(fingerprint key, card number): without the key it
    cannot be tested against guessed numbers.

Key rotation (:func:`rewrap_all`)
    Only the DEK wrapping changes: each record's DEK is unwrapped with its old KEK and wrapped
    again under the active one; the payload ciphertext is untouched. Records are processed in
    batches, one transaction per batch, each record verified (opened with the new wrapping) before
    the batch commits. A record is readable before, during and after (its row always names the KEK
    that wraps it, and old KEKs stay in the keyring), so there is no downtime; a crash loses at
    most the batch in flight, and rerunning continues where it stopped (records already under the
    active KEK are skipped).

Running servers learn about a rotation lazily: when a record names a KEK the in-memory keyring
lacks, the vault reloads the keyring from its source once and retries.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session

from palmpay.payments.cards import CardInput, mask_pan, validate_card
from palmpay.payments.errors import PaymentError
from palmpay.payments.keys import Keyring, KeyringError, UnknownKekError
from palmpay.payments.models import Card, PalmTemplate, new_token

__all__ = [
    "CardVault",
    "StoredCard",
    "Envelope",
    "VaultError",
    "rewrap_all",
    "DEFAULT_REWRAP_BATCH",
]

log = logging.getLogger(__name__)

DEFAULT_REWRAP_BATCH = 500
_NONCE = 12
_TEMPLATE_MAGIC = b"PPT1"  # palm template payload, format 1


class VaultError(RuntimeError):
    """A record cannot be opened: tampered, bound to another row, or its KEK is gone."""


@dataclass(frozen=True)
class Envelope:
    """The four stored columns of an encrypted record."""

    kek_id: str
    wrapped_dek: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)


@dataclass(frozen=True)
class StoredCard:
    """A tokenised card: what the ``cards`` row stores (no card number in clear)."""

    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str = field(repr=False)
    envelope: Envelope = field(repr=False)


def _card_aad(token: str) -> bytes:
    return b"palmpay:card:" + token.encode()


def _template_aad(template_id: str) -> bytes:
    return b"palmpay:template:" + template_id.encode()


def _dek_aad(kek_id: str, record_aad: bytes) -> bytes:
    return b"palmpay:dek:" + kek_id.encode() + b"|" + record_aad


def pack_template(vector: np.ndarray, code: np.ndarray) -> bytes:
    """Serialise a template: magic, two lengths, float32 LE vector, uint8 code."""
    vector = np.asarray(vector)
    code = np.asarray(code)
    if vector.ndim != 1 or vector.dtype != np.float32:
        raise ValueError(f"template vector must be 1-D float32, got {vector.dtype} {vector.shape}")
    if code.ndim != 1 or code.dtype != np.uint8:
        raise ValueError(f"template code must be 1-D uint8, got {code.dtype} {code.shape}")
    header = _TEMPLATE_MAGIC + struct.pack("<II", vector.size, code.size)
    return header + vector.astype("<f4").tobytes() + code.tobytes()


def unpack_template(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_template` (fresh, writable arrays)."""
    if data[:4] != _TEMPLATE_MAGIC:
        raise VaultError("template payload has an unknown format")
    n_vec, n_code = struct.unpack_from("<II", data, 4)
    start = 12
    if len(data) != start + 4 * n_vec + n_code:
        raise VaultError("template payload has the wrong length")
    vector = np.frombuffer(data, "<f4", n_vec, start).astype(np.float32)
    code = np.frombuffer(data, np.uint8, n_code, start + 4 * n_vec).copy()
    return vector, code


def _stored_envelope(row: Card | PalmTemplate) -> Envelope:
    """The envelope of an encrypted row; a row without one (a revoked card) is unavailable."""
    if row.kek_id is None or row.wrapped_dek is None or row.nonce is None or row.ciphertext is None:
        raise VaultError(f"{type(row).__name__} {row.id} has no encrypted envelope")
    return Envelope(row.kek_id, row.wrapped_dek, row.nonce, row.ciphertext)


class CardVault:
    """Tokenises cards and seals/opens card numbers and palm templates.

    ``keyring_loader``, when given, is called to reload the keyring when a record names a KEK the
    current keyring lacks (a rotation done by another process); ``build_service`` passes
    ``lambda: load_keyring(settings)``.
    """

    def __init__(
        self, keyring: Keyring, keyring_loader: Callable[[], Keyring] | None = None
    ) -> None:
        self._keyring = keyring
        self._loader = keyring_loader
        self._lock = threading.Lock()

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    @property
    def active_kek_id(self) -> str:
        return self._keyring.active_kek_id

    def reload_keyring(self) -> bool:
        """Reload from ``keyring_loader``; returns whether a loader was available."""
        if self._loader is None:
            return False
        keyring = self._loader()
        with self._lock:
            self._keyring = keyring
        log.info("vault keyring reloaded; active KEK %s", keyring.active_kek_id)
        return True

    def _kek(self, kek_id: str) -> bytes:
        try:
            return self._keyring.kek(kek_id)
        except UnknownKekError:
            if not self.reload_keyring():
                raise
            return self._keyring.kek(kek_id)

    # -- envelope ---------------------------------------------------------------------------

    def _seal(self, plaintext: bytes, aad: bytes) -> Envelope:
        keyring = self._keyring
        dek = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        ciphertext = AESGCM(dek).encrypt(nonce, plaintext, aad)
        return Envelope(keyring.active_kek_id, self._wrap(dek, keyring, aad), nonce, ciphertext)

    @staticmethod
    def _wrap(dek: bytes, keyring: Keyring, aad: bytes) -> bytes:
        kek_id = keyring.active_kek_id
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(keyring.active_kek).encrypt(nonce, dek, _dek_aad(kek_id, aad))

    def _unwrap(self, kek_id: str, wrapped: bytes, aad: bytes) -> bytes:
        kek = self._kek(kek_id)
        try:
            return AESGCM(kek).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], _dek_aad(kek_id, aad))
        except InvalidTag:
            raise VaultError("data key does not open (tampered or wrong KEK)") from None

    def _open(self, env: Envelope, aad: bytes) -> bytes:
        dek = self._unwrap(env.kek_id, env.wrapped_dek, aad)
        try:
            return AESGCM(dek).decrypt(env.nonce, env.ciphertext, aad)
        except InvalidTag:
            raise VaultError("record does not open (tampered or moved to another row)") from None

    # -- cards ------------------------------------------------------------------------------

    def fingerprint(self, pan: str) -> str:
        """HMAC-SHA256 of the normalised card number under the fingerprint key (hex)."""
        key = self._keyring.fingerprint_key
        return hmac.new(key, b"palmpay:pan:" + pan.encode(), hashlib.sha256).hexdigest()

    def phone_hash(self, last4: str) -> str:
        """HMAC-SHA256 of the last 4 phone digits under the fingerprint key (hex), with its own
        label so it can never equal a card fingerprint."""
        key = self._keyring.fingerprint_key
        return hmac.new(key, b"palmpay:phone-last4:" + last4.encode(), hashlib.sha256
                        ).hexdigest()

    def tokenize(self, card: CardInput) -> StoredCard:
        """Validate (``invalid_card`` / ``expired_card``), then encrypt under a fresh token."""
        valid = validate_card(card)
        token = new_token()
        envelope = self._seal(valid.pan.encode(), _card_aad(token))
        log.debug("tokenised %s card %s as %s", valid.brand, mask_pan(valid.pan), token)
        return StoredCard(
            token=token,
            brand=valid.brand,
            last4=valid.last4,
            exp_month=valid.exp_month,
            exp_year=valid.exp_year,
            fingerprint=self.fingerprint(valid.pan),
            envelope=envelope,
        )

    def fingerprint_of(self, card: CardInput) -> str:
        """The fingerprint of a card (validated first)."""
        return self.fingerprint(validate_card(card).pan)

    @staticmethod
    def _card_envelope(row: Card) -> Envelope:
        if row.status != "active" or row.ciphertext is None:
            raise PaymentError("card_unavailable", f"card {row.token} is revoked")
        return _stored_envelope(row)

    @contextmanager
    def reveal(self, row: Card) -> Iterator[str]:
        """``with vault.reveal(card_row) as pan:`` the card number, for one processor call.

        Only the processor adapter should use it; never log, store or return the value. (The
        decrypted buffer is wiped on exit; Python cannot wipe the ``str`` handed out, so keep its
        lifetime to the one call.)
        """
        buffer = bytearray(self._open(self._card_envelope(row), _card_aad(row.token)))
        try:
            yield buffer.decode()
        finally:
            buffer[:] = b"\0" * len(buffer)

    # -- templates --------------------------------------------------------------------------

    def seal_template(self, template_id: str, vector: np.ndarray, code: np.ndarray) -> Envelope:
        """Encrypt one palm template (vector + code) bound to ``template_id``."""
        return self._seal(pack_template(vector, code), _template_aad(template_id))

    def open_template(self, row: PalmTemplate) -> tuple[np.ndarray, np.ndarray]:
        """Decrypt a ``palm_templates`` row into ``(vector float32, code uint8)``."""
        env = Envelope(row.kek_id, row.wrapped_dek, row.nonce, row.ciphertext)
        return unpack_template(self._open(env, _template_aad(row.id)))

    # -- rotation ---------------------------------------------------------------------------

    def _rewrap_row(self, row: Card | PalmTemplate, aad: bytes, keyring: Keyring) -> None:
        env = _stored_envelope(row)
        dek = self._unwrap(env.kek_id, env.wrapped_dek, aad)
        new_wrapped = self._wrap(dek, keyring, aad)
        # Verify before the row changes: the new wrapping opens and the DEK opens the payload.
        check = AESGCM(keyring.active_kek).decrypt(
            new_wrapped[:_NONCE], new_wrapped[_NONCE:], _dek_aad(keyring.active_kek_id, aad)
        )
        try:
            AESGCM(check).decrypt(env.nonce, env.ciphertext, aad)
        except InvalidTag:
            raise VaultError("record does not open; refusing to re-wrap it") from None
        row.kek_id = keyring.active_kek_id
        row.wrapped_dek = new_wrapped

    def rewrap_all(self, session: Session, batch_size: int = DEFAULT_REWRAP_BATCH) -> int:
        """Re-wrap every record not under the active KEK; see :func:`rewrap_all`."""
        return rewrap_all(session, self._keyring, batch_size=batch_size, vault=self)


def rewrap_all(
    session: Session,
    keyring: Keyring,
    batch_size: int = DEFAULT_REWRAP_BATCH,
    *,
    vault: CardVault | None = None,
) -> int:
    """Re-wrap the DEK of every active card and every palm template under ``keyring``'s active
    KEK; returns how many records were re-wrapped.

    One transaction per batch of ``batch_size`` records (``session.commit()`` after each), rows
    locked ``FOR UPDATE`` on PostgreSQL (``SKIP LOCKED`` is not used: a row held by a payment is
    waited for, not skipped). Each record is verified to open under the new wrapping before its
    batch commits; any record that does not open (unknown KEK, tampering) aborts with the batch
    rolled back and earlier batches kept. Idempotent and restartable.

    ``keyring`` must hold the old KEKs as well as the active one.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    vault = vault or CardVault(keyring)
    if vault.keyring.active_kek_id != keyring.active_kek_id:
        vault = CardVault(keyring)
    active = keyring.active_kek_id
    total = 0
    targets: list[tuple[type[Card] | type[PalmTemplate], Callable[[Any], bytes]]] = [
        (Card, lambda row: _card_aad(row.token)),
        (PalmTemplate, lambda row: _template_aad(row.id)),
    ]
    for model, aad_of in targets:
        done_in_table = 0
        last_id = ""
        while True:
            stmt = (
                select(model)
                .where(model.kek_id.is_not(None), model.kek_id != active, model.id > last_id)
                .order_by(model.id)
                .limit(batch_size)
                .with_for_update()
            )
            rows = cast("Sequence[Card | PalmTemplate]", session.scalars(stmt).all())
            if not rows:
                session.commit()
                break
            try:
                for row in rows:
                    vault._rewrap_row(row, aad_of(row), keyring)
                session.commit()
            except (VaultError, KeyringError):
                session.rollback()
                log.error("re-wrap stopped at %s %s (batch rolled back)", model.__tablename__,
                          rows[0].id)
                raise
            last_id = rows[-1].id
            done_in_table += len(rows)
            log.info("re-wrapped %d %s so far under %s", done_in_table, model.__tablename__,
                     active)
        total += done_in_table
    log.info("re-wrap complete: %d records now under KEK %s", total, active)
    return total
