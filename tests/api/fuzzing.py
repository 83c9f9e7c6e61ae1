"""A schemathesis campaign against a live PalmPay server (uvicorn in a thread, real HTTP).

Shared by ``tests/api/test_schemathesis.py`` (small, in CI on both backends) and
``scripts/security/fuzz.py`` (bigger, writes ``docs/security/fuzz.md``).

:func:`fuzz_server` starts the app on a database URL with a kiosk, a terminal and an admin key.
:func:`run_campaign` loads the server's own ``/openapi.json`` and, for every operation, every
generation mode (positive: requests the schema allows; negative: requests it forbids) and every
key scope (``kiosk``, ``terminal``, ``admin`` and ``none``: no ``Authorization``), sends
``max_examples`` generated requests and runs the response checks on each answer:

- ``not_a_server_error``: no 5xx;
- ``status_code_conformance``, ``content_type_conformance``, ``response_headers_conformance``,
  ``response_schema_conformance``: the answer is one the schema documents (schema violations).

Failures are collected, not raised (no shrinking: every request counts once), and grouped by
operation, mode, scope, status and failed check in :attr:`CampaignResult.findings`.

:func:`run_hostile_strings` is the deterministic complement: random generation rarely puts a
NUL or a lone ``\\f`` exactly where a name goes in a handful of examples, so it takes one
generated request per operation and replaces each string field (JSON or form body, path) in
turn by each value of :data:`HOSTILE_STRINGS`, with an admin key (past every scope check).

The abuse limits (rate limits, lock-outs, the bad-key back-off) are raised out of the way in
:data:`FUZZ_SETTINGS`: a campaign from one address with four keys would otherwise spend most of
its requests on 429s, and the limits have their own tests.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from palmpay.api.keys import create_api_key
from palmpay.api.threaded import serve_in_thread
from tests.api.conftest import make_app, make_settings

__all__ = ["CHECKS", "FUZZ_SETTINGS", "HOSTILE_STRINGS", "SCOPES", "CampaignResult", "Finding",
           "fuzz_server", "run_campaign", "run_hostile_strings"]

SCOPES = ("kiosk", "terminal", "admin", "none")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
#: Values every string field must refuse (or take) without a 5xx: NUL alone and inside, C0 and
#: C1 controls, blanks, Unicode separators, a lone surrogate, a header injection, a long value.
HOSTILE_STRINGS = ["\x00", "a\x00b", "\f", " ", "\t\n", "\u2028", "\u0085", "\u200b",
                   "\ud800", "x\r\nX-Injected: 1", "%00", "'; --",
                   "x" * 5000]
_UNLIMITED = 1_000_000_000
FUZZ_SETTINGS: dict[str, Any] = {
    "rate_limit_requests": f"{_UNLIMITED}/minute",
    "rate_limit_payments": f"{_UNLIMITED}/minute",
    "rate_limit_customers": f"{_UNLIMITED}/minute",
    "bad_key_max_failures": _UNLIMITED,
    "unrecognised_max_failures": _UNLIMITED,
    "unenroll_max_failures": _UNLIMITED,
    "narrowing_max_failures": _UNLIMITED,
    "webhook_poll_s": 3600.0,
}


@dataclass(frozen=True)
class Finding:
    """One kind of failed answer: where, how often, and a curl line to repeat it (the API key
    is filtered out of it)."""

    operation: str
    mode: str
    scope: str
    status: int
    checks: tuple[str, ...]
    count: int
    curl: str = field(repr=False)
    response: str = field(repr=False)

    @property
    def server_error(self) -> bool:
        return self.status >= 500


@dataclass(frozen=True)
class CampaignResult:
    """What one campaign sent and found."""

    requests: int
    operations: int
    seconds: float
    statuses: Mapping[int, int]
    findings: tuple[Finding, ...]
    stopped_early: bool

    @property
    def server_errors(self) -> int:
        """Answers with a 5xx status."""
        return sum(f.count for f in self.findings if f.server_error)

    @property
    def violations(self) -> int:
        """Answers (of any status) that failed a schema conformance check."""
        return sum(f.count for f in self.findings
                   if any(c != "not_a_server_error" for c in f.checks))

    def report(self) -> str:
        """Every finding with a request that repeats it (for an assertion message)."""
        lines = [f"{self.requests} requests, {self.server_errors} 5xx, {self.violations} schema "
                 "violations"]
        for f in self.findings:
            lines += [f"- {f.count}x {f.operation} [{f.mode}, {f.scope} key] -> {f.status} "
                      f"({', '.join(f.checks)})", f"    {f.curl[:600]}",
                      f"    {f.response[:300]}"]
        return "\n".join(lines)


@contextmanager
def fuzz_server(db_url: str, tmp_path: Path, models: Any,
                **overrides: Any) -> Iterator[tuple[str, dict[str, str | None]]]:
    """The app on ``db_url`` served by uvicorn on 127.0.0.1; yields its base URL and a secret
    per scope of :data:`SCOPES` (None for ``none``)."""
    settings = make_settings(db_url, tmp_path, **(FUZZ_SETTINGS | overrides))
    app = make_app(settings, models)
    with serve_in_thread(app) as base_url:
        db = app.state.palmpay.db
        keys: dict[str, str | None] = {
            scope: create_api_key(db, f"fuzz {scope}", scope)[1]
            for scope in SCOPES if scope != "none"}
        keys["none"] = None
        yield base_url, keys


def _checks(group: FailureGroup) -> tuple[str, ...]:
    names = []
    for failure in group.exceptions:
        check = "not_a_server_error" if failure.code == "ST101" else (
            failure.checks[0] if isinstance(failure, Failure) and failure.checks
            else failure.title)
        names.append(check)
    return tuple(sorted(set(names)))


def run_campaign(base_url: str, keys: Mapping[str, str | None], *, max_examples: int,
                 seed: int = 0, deadline_s: float | None = None,
                 modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE,
                                                      GenerationMode.NEGATIVE),
                 operation_labels: Collection[str] | None = None) -> CampaignResult:
    """Fuzz every operation of the server at ``base_url`` (see the module docstring), or only
    those of ``operation_labels`` (``"POST /v1/customers"``). ``deadline_s`` stops sending once
    that many seconds have passed (``stopped_early``)."""
    started = time.monotonic()
    spec = requests.get(f"{base_url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(spec)
    session = requests.Session()
    statuses: Counter[int] = Counter()
    found: Counter[tuple[str, str, str, int, tuple[str, ...]]] = Counter()
    examples: dict[tuple[str, str, str, int, tuple[str, ...]], tuple[str, str]] = {}
    sent = 0
    stopped = False
    operations = [op for op in (result.ok() for result in schema.get_all_operations())
                  if operation_labels is None or op.label in operation_labels]

    def out_of_time() -> bool:
        return deadline_s is not None and time.monotonic() - started > deadline_s

    def sender(operation: Any, mode: GenerationMode, scope: str,
               headers: dict[str, str]) -> Any:
        @hypothesis.seed(seed)
        @hypothesis.settings(max_examples=max_examples, deadline=None, database=None,
                             phases=[Phase.explicit, Phase.generate],
                             suppress_health_check=list(HealthCheck))
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def send(case: Any) -> None:
            nonlocal sent, stopped
            if out_of_time():
                stopped = True
                return
            response = case.call(base_url=base_url, session=session, headers=headers,
                                 timeout=60)
            sent += 1
            statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except FailureGroup as group:
                key = (operation.label, mode.value, scope, response.status_code,
                       _checks(group))
                found[key] += 1
                examples.setdefault(key, (case.as_curl_command(headers=headers),
                                          response.text))

        return send

    for operation in operations:
        for mode in modes:
            for scope, secret in keys.items():
                if out_of_time():
                    stopped = True
                    break
                headers = {"Authorization": f"Bearer {secret}"} if secret else {}
                # Unsatisfiable: e.g. no negative request exists for GET /healthz.
                with contextlib.suppress(Unsatisfiable):
                    sender(operation, mode, scope, headers)()
    findings = tuple(
        Finding(operation=k[0], mode=k[1], scope=k[2], status=k[3], checks=k[4], count=n,
                curl=examples[k][0], response=examples[k][1])
        for k, n in sorted(found.items()))
    return CampaignResult(requests=sent, operations=len(operations),
                          seconds=time.monotonic() - started, statuses=dict(statuses),
                          findings=findings, stopped_early=stopped)


def _string_fields(spec: dict[str, Any], operation: Any) -> tuple[list[str], list[str]]:
    """The string properties of the operation's request body and its path parameters."""
    raw = spec["paths"][operation.path][operation.method.lower()]
    body: list[str] = []
    for content in raw.get("requestBody", {}).get("content", {}).values():
        node = content.get("schema", {})
        for branch in node.get("anyOf", [node]):
            ref = branch.get("$ref", "")
            props = spec["components"]["schemas"][ref.rsplit("/", 1)[1]].get(
                "properties", {}) if ref else branch.get("properties", {})
            for name, prop in props.items():
                kinds = [b.get("type") for b in prop.get("anyOf", [prop])]
                if "string" in kinds and "contentMediaType" not in prop:
                    body.append(name)
    path = [p["name"] for p in raw.get("parameters", []) if p.get("in") == "path"]
    return body, path


def run_hostile_strings(base_url: str, secret: str, *, seed: int = 0) -> CampaignResult:
    """Every string field of every operation, in turn, set to each :data:`HOSTILE_STRINGS`
    value, in an otherwise generated request sent with the (admin) key ``secret``."""
    started = time.monotonic()
    spec = requests.get(f"{base_url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(spec)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {secret}"}
    statuses: Counter[int] = Counter()
    found: Counter[tuple[str, str, str, int, tuple[str, ...]]] = Counter()
    examples: dict[tuple[str, str, str, int, tuple[str, ...]], tuple[str, str]] = {}
    sent = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    def sender(operation: Any, body_fields: list[str], path_fields: list[str]) -> Any:
        @hypothesis.seed(seed)
        @hypothesis.settings(max_examples=1, deadline=None, database=None,
                             phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @hypothesis.given(case=operation.as_strategy())
        def send(case: Any) -> None:
            nonlocal sent
            for where, name in [("body", f) for f in body_fields] + [
                    ("path", f) for f in path_fields]:
                for value in HOSTILE_STRINGS:
                    body = case.body
                    path_parameters = dict(case.path_parameters or {})
                    if where == "body":
                        body = {**(body if isinstance(body, dict) else {}), name: value}
                    else:
                        path_parameters[name] = value
                    hostile = operation.Case(
                        path_parameters=path_parameters, body=body, media_type=case.media_type,
                        multipart_content_types=case.multipart_content_types)
                    try:
                        response = hostile.call(base_url=base_url, session=session,
                                                headers=headers, timeout=60)
                    except UnicodeError:  # a lone surrogate cannot be sent in a URL or a form
                        continue
                    sent += 1
                    statuses[response.status_code] += 1
                    try:
                        hostile.validate_response(response, checks=CHECKS, headers=headers)
                    except FailureGroup as group:
                        key = (operation.label, f"{where}.{name}={value[:12]!r}", "admin",
                               response.status_code, _checks(group))
                        found[key] += 1
                        examples.setdefault(key, (hostile.as_curl_command(headers=headers),
                                                  response.text))

        return send

    for operation in operations:
        body_fields, path_fields = _string_fields(spec, operation)
        if body_fields or path_fields:
            sender(operation, body_fields, path_fields)()
    findings = tuple(
        Finding(operation=k[0], mode=k[1], scope=k[2], status=k[3], checks=k[4], count=n,
                curl=examples[k][0], response=examples[k][1])
        for k, n in sorted(found.items()))
    return CampaignResult(requests=sent, operations=len(operations),
                          seconds=time.monotonic() - started, statuses=dict(statuses),
                          findings=findings, stopped_early=False)
