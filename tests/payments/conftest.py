"""Payments fixtures: a migrated database on each backend, a keyring file, vault, acquirer and
service; helpers to make palm templates and enrol customers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from palmpay.db import Database, upgrade
from palmpay.embed import Template
from palmpay.payments.cards import CardInput
from palmpay.payments.keys import generate_keyring, read_keyring_file, write_keyring_file
from palmpay.payments.processor import SimulatedAcquirer
from palmpay.payments.service import PaymentService
from palmpay.payments.vault import CardVault
from palmpay.payments.views import CustomerView
from tests.dbfixtures import db_url  # noqa: F401  (pytest fixture)

VISA = "4242424242424242"
DECLINE = "4000000000000002"
NO_FUNDS = "4000000000009995"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"
DISCOVER = "6011111111111117"
#: Every test PAN, for "never in clear" checks.
ALL_PANS = [VISA, DECLINE, NO_FUNDS, MASTERCARD, AMEX, DISCOVER]
EXP_YEAR = datetime.now(UTC).year + 3
VECTOR_DIM, CODE_BYTES = 1176, 768
CARD_LIMIT = 100_000


def card(number: str = VISA, **kw) -> CardInput:
    return CardInput(number=number, exp_month=kw.pop("exp_month", 12),
                     exp_year=kw.pop("exp_year", EXP_YEAR), holder_name=kw.pop("holder_name", "A"))


def make_templates(n: int = 2, seed: int = 0) -> list[Template]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        v = rng.standard_normal(VECTOR_DIM).astype(np.float32)
        v /= np.linalg.norm(v)
        out.append(Template(v, rng.integers(0, 256, CODE_BYTES, dtype=np.uint8)))
    return out


@pytest.fixture
def keyring_path(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "keyring.json"
    write_keyring_file(path, generate_keyring())
    return path


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:  # noqa: F811 - db_url is the imported fixture
    database = Database(db_url)
    upgrade(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def vault(keyring_path: Path) -> CardVault:
    return CardVault(read_keyring_file(keyring_path),
                     keyring_loader=lambda: read_keyring_file(keyring_path))


@pytest.fixture
def acquirer() -> SimulatedAcquirer:
    return SimulatedAcquirer(card_limit=CARD_LIMIT)


@pytest.fixture
def events() -> list[tuple[str, dict]]:
    return []


@pytest.fixture
def service(db: Database, vault: CardVault, acquirer: SimulatedAcquirer,
            events: list) -> PaymentService:
    return PaymentService(db, vault, acquirer, on_event=lambda t, o, _m: events.append((t, o)))


@pytest.fixture
def enroll(service: PaymentService) -> Callable[..., CustomerView]:
    counter = iter(range(1000))

    def _enroll(number: str = VISA, name: str | None = None, n_templates: int = 2,
                **card_kw) -> CustomerView:
        i = next(counter)
        return service.create_customer(name or f"customer {i}", card(number, **card_kw),
                                       make_templates(n_templates, seed=i), consent=True)

    return _enroll
