"""Control characters, NUL and blank names in every text field: a 422 problem naming the field,
never a 500 (PostgreSQL refuses NUL in ``text``), never the value echoed back.

Before the shared text rule (:func:`palmpay.payments.validation.text_problem`), a NUL in a
customer name or an API key name was a 500 on PostgreSQL (``DataError``), and a blank or
``\\f`` API key name a 500 on both backends (``ValueError`` in ``create_api_key``).
"""

from __future__ import annotations

import pytest

from palmpay.api.keys import create_api_key
from palmpay.api.models import ApiKey, WebhookEndpoint
from palmpay.api.schemas import NAME_PATTERN, TEXT_PATTERN, ApiKeyIn
from palmpay.payments.errors import PaymentError
from palmpay.payments.models import Customer
from palmpay.payments.validation import check_name, text_problem
from tests.api.conftest import CARDS, assert_problem

#: Values no text field takes: C0 and C1 controls (NUL included), DEL, lone surrogates and the
#: Unicode line and paragraph separators.
HOSTILE = ["a\x00b", "\x00", "x\ny", "tab\there", "\f", "a\x1bb", "del\x7f", "c1\x85",
           "ls\u2028", "ps\u2029", "lone\ud800"]
#: Required names that are blank: white space, separators, invisible format characters.
BLANK = ["", " ", "\u00a0", "\u3000\u2003", "\u200b", "\ufeff "]


def _field_error(body: dict, field: str) -> None:
    assert body["code"] == "validation_error", body
    assert field in {e["field"] for e in body["errors"]}, body
    assert field in body["detail"]


def _no_echo(response, value: str) -> None:
    visible = value.strip("\x00\n\t\f\x1b\x7f\x85\u2028\u2029\ud800 ")
    raw = response.text
    for part in (value, visible) if len(visible) >= 2 else (value,):
        assert part not in raw and part.encode("unicode_escape").decode() not in raw


@pytest.mark.parametrize("value", HOSTILE)
def test_the_text_rule(value):
    assert text_problem(value) is not None
    assert text_problem(value, name=True) is not None
    with pytest.raises(PaymentError) as err:
        check_name(value)
    assert err.value.code == "invalid_request" and err.value.extra == {"field": "name"}
    assert value not in err.value.detail


def test_names_and_patterns():
    import re

    for blank in BLANK:
        assert text_problem(blank, name=True) is not None
        assert text_problem(blank) is None  # optional text may be blank
        with pytest.raises(PaymentError):
            check_name(blank)
    for good in ("Ada Lovelace", "  Zoë  ", "李小龍", "O'Brien-Smith", "Émile\u00a0Zola"):
        assert text_problem(good, name=True) is None
        assert check_name(good) == good.strip()
        assert re.match(NAME_PATTERN, good) and re.match(TEXT_PATTERN, good)
    for bad in ("a\x00b", "x\ny", "\x85", "\u2028"):
        assert not re.match(TEXT_PATTERN, bad)
    assert not re.match(NAME_PATTERN, "   ")
    assert ApiKeyIn(name="  lane 3 ", scope="terminal").name == "lane 3"


@pytest.mark.parametrize("value", ["a\x00b", "\f", "   ", "x\ny", "\u2028", "\u200b"])
def test_api_key_names(api, value):
    """Found by the attack: a ``\\f`` or blank name was a 500 on both backends, NUL on PG."""
    r = api.client.post("/v1/api_keys", json={"name": value, "scope": "terminal"},
                        headers=api.auth("admin"))
    _field_error(assert_problem(r, 422, "validation_error"), "name")
    _no_echo(r, value)
    keys = api.count(ApiKey)
    with pytest.raises(PaymentError) as err:  # the service layer has the same rule
        create_api_key(api.state.db, value, "terminal")
    assert err.value.code == "invalid_request"
    assert api.count(ApiKey) == keys


@pytest.mark.parametrize("field", ["name", "holder_name", "card_number", "consent"])
@pytest.mark.parametrize("value", ["Ada\x00Lovelace", "Ada\r\nX-Injected: 1", "Ada\u2029"])
def test_enrollment_form_fields(api, field, value):
    """Found by the attack: a NUL in ``name`` was a 500 on PostgreSQL (``DataError``)."""
    r = api.enroll("ann", **{field: value})
    _field_error(assert_problem(r, 422, "validation_error"), field)
    _no_echo(r, value)
    assert api.count(Customer) == 0


@pytest.mark.parametrize("value", BLANK[1:])
def test_blank_customer_names(api, value):
    r = api.enroll("ann", name=value)
    _field_error(assert_problem(r, 422, "validation_error"), "name")
    assert api.count(Customer) == 0


def test_service_layer_refuses_control_characters(api):
    """Callers of the payment service other than the API (CLI, scripts) get the same rule."""
    from tests.payments.conftest import card, make_templates

    for value in ("Ada\x00", "Ada\nLovelace", "\u200b"):
        with pytest.raises(PaymentError) as err:
            api.state.service.create_customer(value, card(CARDS["visa"]), make_templates(1),
                                              consent=True)
        assert err.value.code == "invalid_request" and err.value.extra == {"field": "name"}
    assert api.count(Customer) == 0


@pytest.mark.parametrize("path", ["/v1/customers/cus_\x00x", "/v1/payments/pay_%00",
                                  "/v1/refunds/re_%0a", "/v1/payments/pay_%00/cancel"])
def test_ids_in_paths(api, path):
    key = "kiosk" if "customers" in path else "terminal"
    method = api.client.post if path.endswith("cancel") else api.client.get
    r = method(path.replace("\x00", "%00"), headers=api.auth(key))
    assert_problem(r, 422, "validation_error")


def test_json_bodies(api):
    for body in ({"url": "https://example.com/\x00"}, {"url": "https://exa\nmple.com/"}):
        r = api.client.post("/v1/webhook_endpoints", json=body, headers=api.auth("admin"))
        _field_error(assert_problem(r, 422, "validation_error"), "url")
    assert api.count(WebhookEndpoint) == 0
    r = api.client.post("/v1/refunds", json={"payment": "pay_\x00"},
                        headers=api.auth("terminal"))
    _field_error(assert_problem(r, 422, "validation_error"), "payment")
    # A lone surrogate escaped in JSON decodes to a str UTF-8 cannot encode.
    r = api.client.post("/v1/api_keys", content=b'{"name": "a\\ud800", "scope": "kiosk"}',
                        headers=api.auth("admin", **{"Content-Type": "application/json"}))
    _field_error(assert_problem(r, 422, "validation_error"), "name")
