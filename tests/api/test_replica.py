"""Index replicas (palmpay/api/replica.py) in one test process: two "API processes" (each a
payment service, a palm directory and a replica) on one database, on SQLite and PostgreSQL.

What a replica must do: follow enrollments, added templates, unenrollments and retention purges
made by the other one (through LISTEN/NOTIFY on PostgreSQL: the poll is turned off there, so
only notifications and reconnects deliver; through the poll on SQLite); apply its own
enrollment once; load at a position consistent with what it loaded; not skip a change whose seq
was drawn before one already committed; catch up after its listening connection is killed;
take the cross-process enrollment lock and see the other's enrollments before checking.
Templates are random (the replica does not look at them; the real-image, real-process test is
test_replica_processes.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from palmpay.api.palms import PalmDirectory
from palmpay.api.replica import IndexReplica
from palmpay.config import Settings
from palmpay.db import utcnow
from palmpay.embed import Template
from palmpay.payments.cards import CardInput
from palmpay.payments.changes import ChangeKind, head, record_change
from palmpay.payments.errors import PaymentError
from palmpay.payments.retention import apply_retention
from palmpay.payments.service import PaymentService, build_service
from palmpay.recognizer import Recognizer
from tests.api.conftest import make_settings
from tests.api.crashkit import luhn_card
from tests.dbfixtures import pg_admin_url

log = logging.getLogger(__name__)

#: Generous bound on convergence (the replica normally converges in milliseconds).
CONVERGE_S = 30.0
PG_ONLY = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@dataclass
class Node:
    """One simulated API process."""

    service: PaymentService
    palms: PalmDirectory
    replica: IndexReplica


@pytest.fixture
def nodes(db_url, tmp_path: Path, models) -> Iterator[Callable[..., Node]]:
    made: list[Node] = []

    def make(**overrides) -> Node:
        settings = make_settings(db_url, tmp_path, **overrides)
        extractor, embedder = models
        service = build_service(settings)
        palms = PalmDirectory(Recognizer(settings, extractor=extractor, embedder=embedder),
                              settings, transform=service.template_transform)
        replica = IndexReplica(service, palms, settings)
        replica.load()
        node = Node(service, palms, replica)
        made.append(node)
        return node

    yield make
    for node in made:
        node.replica.stop()
        node.service.db.dispose()


def _templates(node: Node, n: int, seed: int) -> list[Template]:
    rng = np.random.default_rng(seed)
    embedder = node.palms.recognizer.embedder
    out = []
    for _ in range(n):
        vector = rng.normal(size=embedder.dim).astype(np.float32)
        out.append(Template(vector / np.linalg.norm(vector),
                            rng.integers(0, 256, embedder.code_bytes, dtype=np.uint8)))
    return out


def _enroll(node: Node, n: int, samples: int = 3) -> str:
    card = CardInput(number=luhn_card(n), exp_month=12, exp_year=2031)
    return node.service.create_customer(f"Customer {n}", card, _templates(node, samples, n),
                                        consent=True).id


def _wait(predicate: Callable[[], bool], what: str) -> float:
    """Poll ``predicate`` until true (at most CONVERGE_S); the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > CONVERGE_S:
            raise AssertionError(f"not within {CONVERGE_S:.0f} s: {what}")
        time.sleep(0.01)
    took = time.monotonic() - start
    log.info("converged in %.3f s: %s", took, what)
    return took


def _head(node: Node) -> int:
    with node.service.db.session(readonly=True) as s:
        return head(s)


def _follow(nodes, db_url: str) -> Node:
    """A replica that follows: on PostgreSQL by notifications only (no poll), on SQLite by a
    fast poll."""
    postgres = db_url.startswith("postgresql")
    node = nodes(replica_poll_s=3600.0 if postgres else 0.05, replica_reconnect_s=0.2)
    node.replica.start()
    if postgres:
        _wait(lambda: node.replica.listening, "the listener connected")
    return node


def test_a_replica_follows_every_kind_of_change(nodes, db_url):
    writer = nodes()
    follower = _follow(nodes, db_url)

    ann = _enroll(writer, 1)
    _wait(lambda: follower.palms.indexed(ann) == 3, "ann enrolled")
    writer.service.add_templates(ann, _templates(writer, 2, 101))
    _wait(lambda: follower.palms.indexed(ann) == 5, "ann's two more templates")
    bob = _enroll(writer, 2, samples=4)
    writer.service.delete_customer(ann)
    _wait(lambda: not follower.palms.indexed(ann) and follower.palms.indexed(bob) == 4,
          "ann unenrolled, bob enrolled")
    report = apply_retention(writer.service.db, utcnow() + timedelta(days=400), 1)
    assert report.customers == (bob,)
    _wait(lambda: not follower.palms.indexed(bob), "bob's templates purged")

    assert follower.replica.position == _head(writer) == 5  # enroll, templates, enroll,
    assert follower.palms.customers == 0  # delete, purge
    assert follower.replica.lag_seconds == 0.0
    assert follower.replica.head_position == follower.replica.position


def test_a_change_that_rolls_back_leaves_no_row(nodes):
    node = nodes()
    _enroll(node, 1)
    with pytest.raises(PaymentError) as err:
        _enroll(node, 1)  # the same card: refused inside the transaction
    assert err.value.code == "duplicate_card"
    assert _head(node) == 1


def test_the_own_enrollment_is_applied_once(nodes):
    node = nodes()
    templates = _templates(node, 3, 7)
    with node.replica.enrollment():  # what the enrollment route does
        customer = node.service.create_customer(
            "Ann", CardInput(number=luhn_card(1), exp_month=12, exp_year=2031), templates,
            consent=True)
        node.palms.add(customer.id, templates)
    assert node.replica.catch_up() == 1
    assert node.palms.indexed(customer.id) == 3
    assert node.palms.samples == 3


def test_the_load_position_covers_what_committed_during_the_load(nodes, monkeypatch):
    writer = nodes()
    first = _enroll(writer, 1)
    node = nodes()
    late: list[str] = []
    original = node.service.templates

    def templates(customer_ids=None):
        for n, pair in enumerate(original(customer_ids)):
            if customer_ids is None and n == 0:  # the load is running: enroll meanwhile
                late.append(_enroll(writer, 2))
            yield pair

    monkeypatch.setattr(node.service, "templates", templates)
    node.replica.load()
    assert late
    assert node.palms.indexed(first) == 3 and node.palms.indexed(late[0]) == 3
    assert node.palms.samples == 6  # nothing indexed twice
    assert node.replica.position == _head(writer) == 2


def test_a_customer_indexed_in_part_is_indexed_anew(nodes):
    """What a load reading templates page by page while the customer enrolled can leave."""
    writer = nodes()
    node = nodes()
    ann = _enroll(writer, 1)
    stored = [t for _, t in node.service.templates([ann])]
    node.palms.add_protected(ann, stored[:2])
    assert node.replica.catch_up() == 1
    assert node.palms.indexed(ann) == 3 and node.palms.samples == 3


def test_a_notification_makes_the_replica_lag_until_it_catches_up(nodes):
    writer = nodes()
    node = nodes()  # not started: nothing applies changes behind our back
    _enroll(writer, 1)
    seq = _head(writer)
    assert node.replica.position == 0 and node.replica.lag_seconds == 0.0
    assert node.replica.notice([str(seq)])
    assert node.replica.head_position == seq
    assert node.replica.position < node.replica.head_position
    assert node.replica.lag_seconds >= 0.0
    assert not node.replica.notice(["0"])  # nothing new
    assert node.replica.catch_up() == 1
    assert node.replica.position == node.replica.head_position == seq
    assert node.replica.lag_seconds == 0.0


def _backend_waiting_on_advisory_lock(schema_app_name: str) -> bool:
    with psycopg.connect(pg_admin_url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
            (schema_app_name,)).fetchone()
    return bool(row and row[0])


def _app_name(db_url: str) -> str:
    from tests.dbfixtures import pg_schema_of

    schema = pg_schema_of(db_url)
    assert schema is not None
    return schema  # db_url sets application_name to the schema


@PG_ONLY
def test_seqs_are_handed_out_in_commit_order(nodes, db_url):
    """T1 draws a seq and stays open; T2 must wait for T1's commit before drawing one, so a
    replica that has read past T2 cannot have missed T1 (the hazard of a plain sequence)."""
    writer = nodes()
    reader = nodes()
    a, b = _enroll(writer, 1), _enroll(writer, 2)  # seq 1, 2
    assert reader.replica.catch_up() == 2
    db = writer.service.db
    first = db.sessionmaker()
    seq1 = record_change(first, a, ChangeKind.DELETE)  # open transaction, seq drawn
    done: list[int] = []

    def second() -> None:
        with db.session() as s:
            done.append(record_change(s, b, ChangeKind.DELETE))

    thread = threading.Thread(target=second)
    thread.start()
    _wait(lambda: _backend_waiting_on_advisory_lock(_app_name(db_url)),
          "the second writer waits for the first")
    assert not done
    assert reader.replica.catch_up() == 0  # nothing committed yet
    first.commit()
    first.close()
    thread.join(CONVERGE_S)
    assert done and done[0] > seq1
    assert reader.replica.catch_up() == 2
    assert reader.replica.position == done[0]


@PG_ONLY
def test_the_listener_reconnects_and_catches_up_after_its_connection_is_killed(nodes, db_url):
    writer = nodes()
    follower = nodes(replica_poll_s=3600.0, replica_reconnect_s=2.0)  # no poll
    follower.replica.start()
    _wait(lambda: follower.replica.listening, "listening")
    feed = follower.replica.feed
    assert feed is not None
    pid = feed.backend_pid
    with psycopg.connect(pg_admin_url(), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    _wait(lambda: not follower.replica.listening, "the feed saw its connection die")
    ann = _enroll(writer, 1)  # committed while nothing listens for the follower
    _wait(lambda: follower.palms.indexed(ann) == 3, "ann indexed after the reconnect")
    assert feed.connections == 2
    assert feed.backend_pid not in (None, pid)
    assert follower.replica.position == _head(writer)


@PG_ONLY
def test_enrollment_takes_a_cross_process_lock_and_reads_the_others_writes(nodes, db_url):
    one = nodes()
    two = nodes()  # not started: only its enrollment catch-up can index ann
    entered = threading.Event()
    seen: list[int] = []

    def enroll_on_two() -> None:
        with two.replica.enrollment():
            entered.set()
            seen.append(two.palms.customers)

    with one.replica.enrollment():
        thread = threading.Thread(target=enroll_on_two)
        thread.start()
        _wait(lambda: _backend_waiting_on_advisory_lock(_app_name(db_url)),
              "process two waits for the enrollment lock")
        assert not entered.is_set()
        ann = _enroll(one, 1)
    thread.join(CONVERGE_S)
    assert entered.is_set()
    assert seen == [1] and two.palms.indexed(ann) == 3


@PG_ONLY
def test_an_enrollment_lock_held_too_long_answers_server_busy(nodes):
    one = nodes()
    two = nodes(replica_lock_timeout_s=0.2)
    with one.replica.enrollment(), pytest.raises(PaymentError) as err, \
            two.replica.enrollment():
        pass
    assert err.value.code == "server_busy"


def test_serve_refuses_several_workers_on_sqlite(tmp_path):
    from palmpay.api.server import WorkersRefusedError, check_workers, serve

    sqlite = Settings(data_dir=tmp_path, dev_mode=True)
    check_workers(sqlite, 1)
    with pytest.raises(WorkersRefusedError, match="needs PostgreSQL"):
        serve(settings=sqlite, workers=2)
    check_workers(Settings(database_url="postgresql://u@h/db"), 4)
    with pytest.raises(WorkersRefusedError):
        check_workers(sqlite, 0)


def test_the_migration_creates_the_change_log_of_the_model(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from palmpay.db import Base, current_revision, make_engine, upgrade

    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert current_revision(engine) == "0007_palm_changes"

        def ours(obj, name, type_, reflected, compare_to):
            table = obj if type_ == "table" else getattr(obj, "table", None)
            return getattr(table, "name", name) == "palm_changes"

        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_object": ours})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


@PG_ONLY
def test_enrollments_at_two_merchants_do_not_wait_for_each_other(nodes):
    one = nodes()
    two = nodes(replica_lock_timeout_s=0.2)  # would answer server_busy if it waited
    with one.replica.enrollment("mer_a"), two.replica.enrollment("mer_b"):
        pass
    with one.replica.enrollment("mer_a"), pytest.raises(PaymentError) as err, \
            two.replica.enrollment("mer_a"):
        pass
    assert err.value.code == "server_busy"
