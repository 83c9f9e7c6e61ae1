"""schemathesis against a real uvicorn server, on SQLite and PostgreSQL: every operation of the
OpenAPI document, positive and negative requests, with a kiosk, a terminal, an admin and no API
key. No answer may be a 5xx or break the schema (status, content type, headers, body).

The campaign is :func:`tests.api.fuzzing.run_campaign`; ``scripts/security/fuzz.py`` runs a
bigger one (docs/security/fuzz.md). What it found, and the fix of each:

- a NUL in a webhook URL, a customer name or an API key name: a 500 on PostgreSQL
  (``DataError``: ``text`` cannot hold NUL) → the text rule on every string field
  (tests/api/test_hostile_text.py);
- a blank or ``\\f`` API key name: a 500 on both backends (``ValueError``) → same;
- ``OPTIONS``: a 405 naming only some of the path's methods → 204 with the full ``Allow``
  (tests/api/test_openapi_details.py).
"""

from __future__ import annotations

from tests.api.fuzzing import SCOPES, fuzz_server, run_campaign, run_hostile_strings

#: Generated requests per operation, mode and scope: ~1,500 requests, about a minute per
#: backend on a CI machine (the script's campaign is bigger).
MAX_EXAMPLES = 12


def test_schemathesis_finds_no_server_error_and_no_schema_violation(db_url, tmp_path, models):
    with fuzz_server(db_url, tmp_path, models) as (base_url, keys):
        assert set(keys) == set(SCOPES)
        result = run_campaign(base_url, keys, max_examples=MAX_EXAMPLES, seed=12,
                              deadline_s=240)
    assert not result.stopped_early, result.report()
    assert result.operations >= 15 and result.requests >= 15 * 2 * 4
    assert {401, 403, 404, 415, 422} <= set(result.statuses), result.statuses  # it got in
    assert result.server_errors == 0 and result.violations == 0, result.report()


def test_hostile_strings_in_every_string_field(db_url, tmp_path, models):
    """Each string field of each operation set to NUL, controls, blanks, separators, a lone
    surrogate, ...: refused or taken, never a 5xx or an undocumented answer. (This is what
    found the NUL and blank-name 500s deterministically; random generation needs luck.)"""
    with fuzz_server(db_url, tmp_path, models) as (base_url, keys):
        admin = keys["admin"]
        assert admin is not None
        result = run_hostile_strings(base_url, admin, seed=3)
    assert result.requests >= 100 and 422 in result.statuses, result.statuses
    assert result.server_errors == 0 and result.violations == 0, result.report()
