"""Card vault: tokens, envelope encryption, binding to the row, templates, keyring reload."""

from __future__ import annotations

import dataclasses
import hashlib
import re

import numpy as np
import pytest

from palmpay.payments.errors import PaymentError
from palmpay.payments.keys import generate_keyring, read_keyring_file, rotate
from palmpay.payments.models import Card, PalmTemplate
from palmpay.payments.vault import CardVault, VaultError, pack_template, unpack_template
from tests.payments.conftest import MASTERCARD, VISA, card, make_templates


def _row(stored, status: str = "active") -> Card:
    env = stored.envelope
    return Card(token=stored.token, status=status, kek_id=env.kek_id, wrapped_dek=env.wrapped_dek,
                nonce=env.nonce, ciphertext=env.ciphertext, exp_month=stored.exp_month,
                exp_year=stored.exp_year)


def test_tokenize_and_reveal(vault: CardVault) -> None:
    a = vault.tokenize(card("4242 4242 4242 4242"))
    b = vault.tokenize(card(VISA))
    assert re.fullmatch(r"tok_[A-Za-z0-9]{24}", a.token) and a.token != b.token
    assert (a.brand, a.last4) == ("visa", "4242")
    assert a.fingerprint == b.fingerprint  # same number, same fingerprint
    assert a.fingerprint != vault.tokenize(card(MASTERCARD)).fingerprint
    assert a.fingerprint != hashlib.sha256(VISA.encode()).hexdigest()  # keyed, not a plain hash
    assert a.envelope.ciphertext != b.envelope.ciphertext  # fresh DEK and nonce per record
    assert VISA.encode() not in a.envelope.ciphertext + a.envelope.wrapped_dek
    with vault.reveal(_row(a)) as pan:
        assert pan == VISA
    other_keys = CardVault(generate_keyring())
    assert other_keys.fingerprint(VISA) != a.fingerprint


def test_envelope_bound_to_its_row(vault: CardVault) -> None:
    a = vault.tokenize(card(VISA))
    b = vault.tokenize(card(MASTERCARD))
    # a's ciphertext under b's token (moved to another row) does not open
    moved = _row(dataclasses.replace(a, token=b.token))
    with pytest.raises(VaultError), vault.reveal(moved):
        pass
    flipped = bytearray(a.envelope.ciphertext)
    flipped[0] ^= 1
    tampered = _row(a)
    tampered.ciphertext = bytes(flipped)
    with pytest.raises(VaultError), vault.reveal(tampered):
        pass
    with pytest.raises(PaymentError) as exc, vault.reveal(_row(a, status="revoked")):
        pass
    assert exc.value.code == "card_unavailable"


def test_template_round_trip(vault: CardVault) -> None:
    (template,) = make_templates(1)
    vector, code = template.vector, template.code
    env = vault.seal_template("tpl_x", vector, code)
    row = PalmTemplate(id="tpl_x", kek_id=env.kek_id, wrapped_dek=env.wrapped_dek,
                       nonce=env.nonce, ciphertext=env.ciphertext)
    v2, c2 = vault.open_template(row)
    assert np.array_equal(v2, vector) and np.array_equal(c2, code)
    assert v2.flags.writeable and v2.dtype == np.float32 and c2.dtype == np.uint8
    assert vector.tobytes() not in env.ciphertext
    row.id = "tpl_y"
    with pytest.raises(VaultError):
        vault.open_template(row)
    with pytest.raises(ValueError):
        pack_template(vector.astype(np.float64), code)
    with pytest.raises(VaultError):
        unpack_template(pack_template(vector, code)[:-1])


def test_stale_vault_reloads_keyring_after_rotation(keyring_path, vault: CardVault) -> None:
    stale = CardVault(read_keyring_file(keyring_path),
                      keyring_loader=lambda: read_keyring_file(keyring_path))
    rotate(keyring_path)
    fresh = CardVault(read_keyring_file(keyring_path))
    stored = fresh.tokenize(card(VISA))  # wrapped by the new KEK
    assert stored.envelope.kek_id != stale.active_kek_id
    with stale.reveal(_row(stored)) as pan:  # unknown KEK → reload → opens
        assert pan == VISA
    assert stale.active_kek_id == fresh.active_kek_id
    no_loader = CardVault(generate_keyring())
    with pytest.raises(Exception, match="not in the keyring"), no_loader.reveal(_row(stored)):
        pass
