"""Measure crash safety: N kills (-9, at the commit point) per point, on SQLite and PostgreSQL.

For every commit point of a payment and an enrollment (``palmpay.payments.faults.POINTS``), on
each backend, ``--kills`` times: a real uvicorn server armed with ``PALMPAY_FAULT_POINT`` dies
(``os._exit(137)``) in the middle of a request; a clean server starts; the same request is
retried with the same Idempotency-Key (``tests/api/crashkit.py``). Counted: double charges (a
sale with more than one captured authorisation at the acquirer, or more than one payment row),
orphaned authorisations (held at the acquirer without a payment row), retries that did not
answer 201 (a retry that waited for the dead request would not answer at all: the server waits
an hour), and ledger check failures. Writes ``docs/security/crash.md``.

    .venv/bin/python scripts/security/crash_retry.py --kills 2
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from palmpay import synth  # noqa: E402
from tests.api.conftest import SEEDS, _jpeg, _png  # noqa: E402
from tests.api.crashkit import ENROLL_POINT, PAYMENT_POINTS, CrashBench, SaleResult  # noqa: E402

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
OUT = ROOT / "docs" / "security" / "crash.md"


def _hands(names: list[str]) -> tuple[dict[str, list[bytes]], dict[str, list[bytes]]]:
    enroll, probe = {}, {}
    for name in names:
        identity = synth.HandIdentity.from_seed(SEEDS.get(name, 100 + len(enroll)))
        rng = np.random.default_rng(1000 + SEEDS.get(name, 100 + len(enroll)))
        images = [synth.render_hand(identity, synth.Variation.random(
            rng, synth.TEST_RANGES, size=(640, 480))) for _ in range(7)]
        enroll[name] = [_png(i) for i in images[:4]]
        probe[name] = [_jpeg(i) for i in images[4:]]
    return enroll, probe


def _pg_schema() -> tuple[str, str]:
    import uuid
    from urllib.parse import quote

    import psycopg

    schema = f"crash_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    return schema, f"{url}?options={quote(f'-csearch_path={schema}')}"


def _drop(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run(backend: str, kills: int, enroll: dict, probe: dict) -> list[SaleResult]:
    work = Path(tempfile.mkdtemp(prefix=f"crash-{backend}-"))
    schema = None
    if backend == "sqlite":
        url = f"sqlite:///{work / 'palmpay.db'}"
    else:
        schema, url = _pg_schema()
    bench = CrashBench(url, work, enroll, probe)
    results = []
    try:
        bench.setup("payer")
        for k in range(kills):
            for point in PAYMENT_POINTS:
                results.append(bench.sale(point, who="payer"))
            results.append(bench.sale(ENROLL_POINT, who=f"enrollee{k}"))
            print(f"{backend}: round {k + 1}/{kills} done", flush=True)
    finally:
        bench.stop()
        if schema:
            _drop(schema)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=2, help="kills per point and backend")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    names = ["payer"] + [f"enrollee{k}" for k in range(args.kills)]
    SEEDS.update({n: 200 + i for i, n in enumerate(names)})
    enroll, probe = _hands(names)
    started = time.monotonic()
    rows = []
    totals: dict[str, int] = defaultdict(int)
    for backend in ("sqlite", "postgresql"):
        by_point: dict[str, list[SaleResult]] = defaultdict(list)
        for r in run(backend, args.kills, enroll, probe):
            by_point[r.point].append(r)
        for point, results in by_point.items():
            payment = point != ENROLL_POINT
            double = sum(1 for r in results if r.payments > 1 or (payment and r.charges > 1))
            lost = sum(1 for r in results if r.payments < 1 or (payment and r.charges < 1))
            orphans = max(r.orphans for r in results)
            bad_retry = sum(1 for r in results if r.retry_status != 201
                            or not r.second_retry_same)
            killed = sum(1 for r in results if r.exit_code == 137)
            ledger_bad = sum(1 for r in results if not r.ledger_ok)
            replayed = sum(1 for r in results if r.retry_replayed)
            outcome = (f"201, committed result replayed ({replayed}/{len(results)})" if replayed
                       else "201, nothing had committed: ran again")
            rows.append((backend, point, killed, len(results), double, lost, orphans, bad_retry,
                         ledger_bad, outcome))
            for name, value in (("kills", killed), ("double", double), ("lost", lost),
                                ("orphans", orphans), ("bad_retry", bad_retry),
                                ("ledger_bad", ledger_bad)):
                totals[name] += value
    elapsed = time.monotonic() - started
    lines = [
        "# Crash safety: kill -9 at every commit point, then retry with the same key",
        "",
        f"Made by `.venv/bin/python scripts/security/crash_retry.py --kills {args.kills}` on "
        f"{datetime.date.today().isoformat()} ({elapsed:.0f} s). Each kill: a real uvicorn "
        "server armed with `PALMPAY_FAULT_POINT` exits with status 137 in the middle of the "
        "request (no rollback, no response), a clean server starts, the same request is "
        "retried with the same Idempotency-Key. The server waits `idempotency_wait_s` = 1 h "
        "for a running claim and its instance lease is 1 s, so an answered retry is one that "
        "recovered the dead claim instead of waiting for it. Harness: `tests/api/crashkit.py`; "
        "CI test: `tests/api/test_crash.py`.",
        "",
        f"**Totals: {totals['kills']} kills, {totals['double']} double charges, "
        f"{totals['orphans']} orphaned authorisations, {totals['lost']} lost sales, "
        f"{totals['bad_retry']} retries not answered 201 with the same object, "
        f"{totals['ledger_bad']} ledger check failures.**",
        "",
        "| backend | point | kills | sales | double charges | lost | orphaned authorisations "
        "| bad retries | ledger failures | retry outcome |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    lines += [
        "",
        "Double charge: a sale with more than one captured authorisation at the acquirer or "
        "more than one payment row (customer row, for the enrollment point). Orphaned "
        "authorisation: a hold at the acquirer (its journal, `PALMPAY_SIM_ACQUIRER_JOURNAL`) "
        "that is neither voided nor a payment row, counted over the whole run. Lost: a sale "
        "with no payment at all after the retry.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if totals["double"] == totals["orphans"] == totals["lost"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
