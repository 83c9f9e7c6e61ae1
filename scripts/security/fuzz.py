"""A schemathesis campaign bigger than CI's, on SQLite and PostgreSQL -> docs/security/fuzz.md.

    .venv/bin/python scripts/security/fuzz.py                      # -> docs/security/fuzz.md
    .venv/bin/python scripts/security/fuzz.py --seconds 20 --out /tmp/fuzz.md

Per backend, a fresh database behind a real uvicorn server (``tests.api.fuzzing.fuzz_server``)
is fuzzed for ``--seconds`` (default 50) by ``--workers`` processes (default 2), each running
rounds of :func:`tests.api.fuzzing.run_campaign` (every operation × positive and negative
generation × kiosk, terminal, admin and no key, ``--examples`` requests each, a new seed per
round) until the time is up, then one
:func:`tests.api.fuzzing.run_hostile_strings` pass (each string field × NUL, controls, blanks,
separators, a lone surrogate, ...). Every answer is checked for a 5xx and against the OpenAPI
document (status, content type, headers, body schema). PostgreSQL is
``PALMPAY_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``), in a schema of
its own that is dropped afterwards; when it is unreachable its rows say so.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import hypothesis  # noqa: E402
import schemathesis  # noqa: E402

from palmpay.config import Settings  # noqa: E402
from palmpay.embed import PalmEmbedder  # noqa: E402
from palmpay.roi import PalmRoiExtractor  # noqa: E402
from tests.api.fuzzing import (  # noqa: E402
    HOSTILE_STRINGS,
    CampaignResult,
    Finding,
    fuzz_server,
    run_campaign,
    run_hostile_strings,
)
from tests.dbfixtures import pg_admin_url  # noqa: E402

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "docs" / "security" / "fuzz.md"

#: What earlier campaigns (and the attack that motivated them) found, and the fix of each.
FIXED = [
    ("NUL in a customer name, an API key name, a webhook URL, a refund's payment id or an id "
     "in a path (`GET /v1/customers/%00`)", "500 on PostgreSQL (`DataError`: `text` cannot "
     "hold NUL)", "one text rule for every string field (`palmpay.payments.validation."
     "text_problem`, the `Text`/`Name` types of `palmpay/api/schemas.py`): 422 "
     "`validation_error` naming the field", "tests/api/test_hostile_text.py"),
    ("blank, `\\f`, `\\t\\n`, U+0085 or U+2028 as an API key name", "500 on both backends "
     "(`ValueError` in `create_api_key`)", "same rule; names must have a visible character",
     "tests/api/test_hostile_text.py"),
    ("`GET /problems/{code}` with an invalid code", "problem+json answer documented as "
     "text/html (content type violation)", "error responses documented as problem+json on "
     "every route, the HTML 404 page documented", "tests/api/test_schemathesis.py"),
    ("`OPTIONS` on a path with several methods", "405 with `Allow` naming one route's methods",
     "204 with every method of the path; 405 names them all",
     "tests/api/test_openapi_details.py"),
]


@dataclass(frozen=True)
class BackendRun:
    name: str
    campaign: CampaignResult | None
    hostile: CampaignResult | None
    rounds: int
    problem: str | None = None


def _merge(results: list[CampaignResult]) -> CampaignResult:
    statuses: Counter[int] = Counter()
    findings: dict[tuple, Finding] = {}
    for result in results:
        statuses.update(result.statuses)
        for f in result.findings:
            key = (f.operation, f.mode, f.scope, f.status, f.checks)
            old = findings.get(key)
            findings[key] = f if old is None else Finding(
                operation=f.operation, mode=f.mode, scope=f.scope, status=f.status,
                checks=f.checks, count=old.count + f.count, curl=old.curl,
                response=old.response)
    return CampaignResult(
        requests=sum(r.requests for r in results),
        operations=max((r.operations for r in results), default=0),
        seconds=sum(r.seconds for r in results), statuses=dict(statuses),
        findings=tuple(findings[k] for k in sorted(findings)), stopped_early=False)


def _rounds(base_url: str, keys: dict[str, str | None], worker: int, workers: int,
            seconds: float, examples: int) -> tuple[list[CampaignResult], int]:
    """One worker process: campaign rounds with seeds worker, worker + workers, ... until
    ``seconds`` have passed; returns them and the next seed."""
    started = time.monotonic()
    rounds: list[CampaignResult] = []
    seed = worker
    while time.monotonic() - started < seconds:
        left = seconds - (time.monotonic() - started)
        rounds.append(run_campaign(base_url, keys, max_examples=examples, seed=seed,
                                   deadline_s=left))
        print(f"  worker {worker}, seed {seed}: {rounds[-1].requests} requests", flush=True)
        seed += workers
    return rounds, seed


def _fuzz(url: str, models, seconds: float, examples: int,
          workers: int) -> tuple[CampaignResult, CampaignResult, int]:
    """Serve ``url`` in this process; generate requests in ``workers`` processes (generation
    costs as much CPU as answering)."""
    with tempfile.TemporaryDirectory() as tmp, \
            fuzz_server(url, Path(tmp), models) as (base_url, keys), \
            ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_rounds, base_url, keys, w, workers, seconds, examples)
                   for w in range(workers)]
        done = [f.result() for f in futures]
        rounds = [r for worker_rounds, _ in done for r in worker_rounds]
        admin = keys["admin"]
        assert admin is not None
        hostile = run_hostile_strings(base_url, admin, seed=max(seed for _, seed in done))
    return _merge(rounds), hostile, len(rounds)


def _pg_schema_url() -> tuple[str, str]:
    schema = f"fuzz_{uuid.uuid4().hex[:12]}"
    base = pg_admin_url().replace("postgresql://", "postgresql+psycopg://", 1)
    sep = "&" if "?" in base else "?"
    return schema, f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


def run_backends(seconds: float, examples: int, workers: int) -> list[BackendRun]:
    settings = Settings()
    models = (PalmRoiExtractor(settings), PalmEmbedder(settings))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        print("sqlite", flush=True)
        campaign, hostile, rounds = _fuzz(f"sqlite:///{Path(tmp) / 'fuzz.db'}", models,
                                          seconds, examples, workers)
        runs.append(BackendRun("SQLite", campaign, hostile, rounds))
    print("postgresql", flush=True)
    try:
        import psycopg

        with psycopg.connect(pg_admin_url(), connect_timeout=3, autocommit=True) as conn:
            schema, url = _pg_schema_url()
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except Exception as exc:  # noqa: BLE001 - any failure means "not measured"
        runs.append(BackendRun("PostgreSQL", None, None, 0,
                               problem=f"unreachable ({type(exc).__name__})"))
        return runs
    try:
        campaign, hostile, rounds = _fuzz(url, models, seconds, examples, workers)
        runs.append(BackendRun("PostgreSQL", campaign, hostile, rounds))
    finally:
        with psycopg.connect(pg_admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return runs


def _statuses(result: CampaignResult) -> str:
    return ", ".join(f"{code}: {n}" for code, n in sorted(result.statuses.items()))


def report(runs: list[BackendRun], seconds: float, examples: int, workers: int,
           command: str) -> str:
    today = datetime.date.today().isoformat()
    out = [
        "# Fuzzing the HTTP API with schemathesis", "",
        f"Made by `{command}` on {today} (schemathesis {schemathesis.__version__}, hypothesis "
        f"{hypothesis.__version__}); CI runs a smaller campaign of the same code in "
        "`tests/api/test_schemathesis.py` on both backends.", "",
        f"Per backend: a fresh database behind a real uvicorn server, fuzzed for {seconds:.0f} s "
        f"by {workers} processes in rounds (every operation × positive and negative generation "
        f"× kiosk, terminal, admin and no API key, {examples} generated requests each, a new "
        "seed per round), "
        f"then one pass setting each string field of each operation to each of "
        f"{len(HOSTILE_STRINGS)} hostile values (NUL, C0/C1 controls, blanks, U+2028, a lone "
        "surrogate, a header injection, 5,000 characters). Every answer is checked: no 5xx "
        "(`not_a_server_error`) and conformance to the OpenAPI document (status code, content "
        "type, headers, body schema). Rate limits and lock-outs are raised out of the way "
        "(they have their own tests); everything else runs as in production.", "",
        "| backend | rounds | requests | 5xx found | schema violations found | hostile-string "
        "requests | their 5xx | their violations |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        if run.campaign is None or run.hostile is None:
            out.append(f"| {run.name} | {run.problem} | | | | | | |")
            continue
        c, h = run.campaign, run.hostile
        out.append(f"| {run.name} | {run.rounds} | {c.requests:,} | {c.server_errors} | "
                   f"{c.violations} | {h.requests:,} | {h.server_errors} | {h.violations} |")
    out += ["", "Answers by status:", ""]
    for run in runs:
        if run.campaign is not None and run.hostile is not None:
            out.append(f"- {run.name}: {_statuses(run.campaign)}; hostile strings: "
                       f"{_statuses(run.hostile)}")
    findings = [(run.name, f) for run in runs for r in (run.campaign, run.hostile)
                if r is not None for f in r.findings]
    out += ["", "## Findings of this run", ""]
    if not findings:
        out.append("None: no 5xx and no schema violation on either backend.")
    for name, f in findings:
        out += [f"- {name}: {f.count}× `{f.operation}` [{f.mode}, {f.scope} key] → {f.status} "
                f"({', '.join(f.checks)})", "", f"  ```\n  {f.curl[:500]}\n  ```"]
    out += ["", "## Found earlier and fixed", "",
            "| input | was | fix | test |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | `{d}` |" for a, b, c, d in FIXED]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=50.0,
                        help="fuzzing time per backend (default 50)")
    parser.add_argument("--examples", type=int, default=10,
                        help="requests per operation, mode and scope in one round")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes generating requests (default 2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    runs = run_backends(args.seconds, args.examples, args.workers)
    command = "python scripts/security/fuzz.py" + (
        f" --seconds {args.seconds:g}" if args.seconds != 50 else "") + (
        f" --examples {args.examples}" if args.examples != 10 else "") + (
        f" --workers {args.workers}" if args.workers != 2 else "")
    text = report(runs, args.seconds, args.examples, args.workers, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    bad = sum(r.server_errors + r.violations for run in runs
              for r in (run.campaign, run.hostile) if r is not None)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
