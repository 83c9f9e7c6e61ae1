"""Enrollment into the full index, and start-up: loading a saved index, rebuilding from the
database.

:func:`run_on_full_index` runs in the search worker of the product's structure at the largest
gallery (:mod:`palmpay.bench.search`), with that index built:

- **enroll**, on SQLite and on PostgreSQL: new customers (4 session-1 photos of a never-enrolled
  tongji palm each) the way ``POST /v1/customers`` enrolls them, through
  :class:`~palmpay.payments.service.PaymentService` and :class:`~palmpay.api.palms.PalmDirectory`
  with the service's cancelable transform: the duplicate-palm check (``PalmDirectory.match`` of
  the 4 templates), the database commit of the customer, card and encrypted templates
  (``create_customer``) and the index add (``PalmDirectory.add``). *Durable* is commit + add.
  The gallery rows were added to the index in clear (the enrollments measured are protected as
  in production); this changes no timing.
- **load**: ``PalmIndex.save`` of the full index, then ``PalmIndex.load`` (memory-mapped when it
  takes ``mmap``), the resident memory it adds and the first searches after it.

:func:`rebuild` runs in the main process: it enrolls ``templates / 4`` customers through the
service (not timed: ``prepare_s``), then times what ``palmpay serve`` does at start-up —
``PaymentService.templates()`` (read and decrypt every row) and ``PalmDirectory.load``.
"""

from __future__ import annotations

import gc
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from palmpay.bench.gallery import RealSet, TemplateSet
from palmpay.bench.harness import Timing, measure, rss_bytes
from palmpay.bench.results import EnrollRow, LoadRow, RebuildRow

__all__ = ["PG_URL", "database_settings", "rebuild", "run_on_full_index"]

log = logging.getLogger(__name__)

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def database_settings(kind: str, data_dir: Path, pg_url: str, **overrides: Any
                      ) -> Iterator[Any]:
    """Settings on a fresh SQLite file or a fresh PostgreSQL schema (dropped afterwards);
    yields None when PostgreSQL cannot be reached. One ``data_dir``: one dev-mode keyring."""
    from palmpay.config import Settings

    data_dir.mkdir(parents=True, exist_ok=True)
    if kind == "SQLite":
        url = f"sqlite:///{data_dir / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        yield Settings(data_dir=data_dir, dev_mode=True, database_url=url, **overrides)
        return
    import psycopg

    admin = pg_url.replace("+psycopg", "")
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        log.warning("PostgreSQL at %s not reachable (%s): skipped", admin, exc)
        yield None
        return
    try:
        yield Settings(data_dir=data_dir, dev_mode=True, **overrides,
                       database_url=f"{pg_url}?options=-csearch_path%3D{schema}")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def customers_of(newcomers: TemplateSet, count: int) -> list[list[Any]]:
    """``count`` template lists of 4, cycling over the newcomer palms' photos."""
    from palmpay.embed import Template

    by_palm: dict[str, list[int]] = {}
    for i, palm in enumerate(newcomers.palms.tolist()):
        by_palm.setdefault(palm, []).append(i)
    rows = list(by_palm.values())
    out = []
    for n in range(count):
        palm_rows = rows[n % len(rows)]
        start = 4 * (n // len(rows))
        picks = [palm_rows[(start + j) % len(palm_rows)] for j in range(4)]
        out.append([Template(newcomers.vectors[i], newcomers.codes[i]) for i in picks])
    return out


def card(n: int) -> Any:
    from palmpay.payments.cards import CardInput, luhn_complete

    return CardInput(number=luhn_complete(f"424299{n:09d}"), exp_month=12, exp_year=2031)


def _enroll(kind: str, settings: Any, index: Any, real: RealSet, count: int, budget_s: float
            ) -> EnrollRow:
    from palmpay.api.palms import PalmDirectory
    from palmpay.payments.service import build_service
    from palmpay.recognizer import Recognizer

    service = build_service(settings)
    transform = service.template_transform
    directory = PalmDirectory(Recognizer(settings), settings, transform=transform)
    try:
        index.code_mask = transform.code_mask(index.code_bytes)
    except AttributeError:
        log.info("index has no settable code_mask; enroll scores are not meaningful")
    directory.recognizer.index = index
    before = len(index)
    commit, add, dup, both = [], [], [], []
    customers = customers_of(real.newcomers, count)
    start = time.perf_counter()
    for n, templates in enumerate(customers):
        t0 = time.perf_counter()
        directory.match(templates)
        t1 = time.perf_counter()
        view = service.create_customer(f"Bench {n}", card(n), templates, consent=True)
        t2 = time.perf_counter()
        directory.add(view.id, templates)
        t3 = time.perf_counter()
        dup.append(1000 * (t1 - t0))
        commit.append(1000 * (t2 - t1))
        add.append(1000 * (t3 - t2))
        both.append(1000 * (t3 - t1))
        if n >= 9 and time.perf_counter() - start > budget_s:
            break
    service.db.dispose()
    return EnrollRow(kind, before, Timing(commit), Timing(add), Timing(both), Timing(dup))


def run_on_full_index(holder: list[Any], real: RealSet, args: dict[str, Any]
                      ) -> tuple[list[EnrollRow], LoadRow | None]:
    """The enroll rows (SQLite, PostgreSQL when reachable) and the load row (module
    docstring) of the index in ``holder`` (taken out of it and freed before the load, so that
    two full indexes are never resident at once); ``args``: ``count``, ``budget_s``,
    ``pg_url``, ``load``."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="palmpay-bench-") as tmp:
        for kind in ("SQLite", "PostgreSQL"):
            with database_settings(kind, Path(tmp), args["pg_url"],
                                   intra_op_threads=1) as settings:
                if settings is not None:
                    rows.append(_enroll(kind, settings, holder[0], real, int(args["count"]),
                                        float(args["budget_s"])))
        load = _load(holder, real, Path(tmp)) if args.get("load", True) else None
    return rows, load


def _load(holder: list[Any], real: RealSet, tmp: Path) -> LoadRow:
    from palmpay.bench.search import load_kwargs
    from palmpay.index import PalmIndex

    folder = tmp / "index"
    index = holder.pop()
    samples, mask = len(index), getattr(index, "code_mask", None)
    t0 = time.perf_counter()
    index.save(folder)
    save_s = time.perf_counter() - t0
    disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    index = None
    gc.collect()
    rss0 = rss_bytes()
    kwargs = load_kwargs(PalmIndex.load)
    t0 = time.perf_counter()
    loaded = PalmIndex.load(folder, code_mask=mask, **kwargs)
    load_s = time.perf_counter() - t0
    probes = [(real.genuine.vectors[i], real.genuine.codes[i]) for i in range(50)]
    t0 = time.perf_counter()
    loaded.search(*probes[0])
    first = 1000 * (time.perf_counter() - t0)
    timing = measure(lambda p: loaded.search(*p), probes[1:], 49, warmup=0, budget_s=30)
    rss_delta = rss_bytes() - rss0
    shutil.rmtree(folder, ignore_errors=True)
    return LoadRow(samples, save_s, disk, load_s, bool(kwargs), rss_delta, first, timing)


def rebuild(kind: str, settings: Any, real: RealSet, templates: int) -> RebuildRow:
    """Start-up from the database with ``templates`` stored (module docstring)."""
    from palmpay.api.palms import PalmDirectory
    from palmpay.payments.service import build_service
    from palmpay.recognizer import Recognizer

    service = build_service(settings)
    t0 = time.perf_counter()
    for n, group in enumerate(customers_of(real.newcomers, -(-templates // 4))):
        service.create_customer(f"Stored {n}", card(n), group, consent=True)
    prepare_s = time.perf_counter() - t0
    directory = PalmDirectory(Recognizer(settings), settings,
                              transform=service.template_transform)
    t0 = time.perf_counter()
    records = list(service.templates())
    decrypt_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    directory.load(records)
    index_s = time.perf_counter() - t0
    service.db.dispose()
    count = len(records)
    del records
    return RebuildRow(kind, count, prepare_s, decrypt_s, index_s)
