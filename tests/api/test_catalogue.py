"""The problem catalogue: one status per code, every raised code catalogued, all in OpenAPI."""

from __future__ import annotations

import ast
from pathlib import Path

import palmpay
from palmpay.api.errors import _REASONS, CATALOGUE, problem_body, problem_type, status_of

PACKAGE = Path(palmpay.__file__).parent


def _raised_codes() -> set[str]:
    """Every string literal given as the code of a PaymentError or a problem in palmpay/."""
    calls = {"PaymentError", "problem_response", "problem_body", "send_problem"}
    codes: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name not in calls or not node.args:
                continue
            # send_problem(send, scope, code, ...): the code is the first string literal
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    codes.add(arg.value)
                    break
    return codes


def test_every_code_has_exactly_one_status():
    for code, entry in CATALOGUE.items():
        assert entry.code == code and entry.type == f"/problems/{code}"
        assert isinstance(entry.status, int) and 400 <= entry.status < 600, code
        assert entry.title and entry.description, code
        assert status_of(code) == entry.status == problem_body(code, "x")["status"]
    # the two codes the old tables disagreed on
    assert CATALOGUE["palm_not_found"].status == 422
    assert CATALOGUE["expired_card"].status == 402


def test_every_raised_code_is_catalogued():
    raised = _raised_codes() | set(_REASONS.values()) | {"internal_error"}
    assert len(raised) > 25  # the scan found the raise sites
    assert raised - set(CATALOGUE) == set()


def test_openapi_lists_every_problem_type(api):
    schema = api.client.get("/openapi.json").json()
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["properties"]["code"]["enum"]) == set(CATALOGUE)
    assert set(problem["properties"]["type"]["enum"]) == {problem_type(c) for c in CATALOGUE}
    listed = problem["x-problem-types"]
    assert {code: item["status"] for code, item in listed.items()} == {
        code: entry.status for code, entry in CATALOGUE.items()}
    for code in CATALOGUE:
        assert f"| `{code}` |" in problem["description"], code
    # error responses are documented as problem+json and reference the Problem component
    default = schema["paths"]["/v1/payments"]["post"]["responses"]["default"]["content"]
    assert default["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
