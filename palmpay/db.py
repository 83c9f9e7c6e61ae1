"""Storage: SQLAlchemy 2 engine, sessions and Alembic migrations, for SQLite and PostgreSQL.

Every table of PalmPay (payments and the API's) is declared on :class:`Base` and created only by
the Alembic migrations in ``palmpay/migrations`` (:func:`upgrade`), never by ``create_all``.

Backends
    ``sqlite:///path.db``
        One file, for a single host. :func:`make_engine` turns on WAL (readers do not block the
        writer), foreign keys and a busy timeout, and starts every read-write transaction with
        ``BEGIN IMMEDIATE``: SQLite allows one writer at a time, and taking the write lock at the
        start (rather than at the first write) is what makes read-check-write sequences such as
        "refund at most what is left" safe between threads and processes — a second writer waits
        (up to the busy timeout) instead of failing or reading stale data. Read-only sessions
        (``Database.session(readonly=True)``) start with a plain deferred ``BEGIN`` and read a
        WAL snapshot without blocking. The file holds card envelopes and palm templates: its
        folder is created 0700 and the file itself 0600 before SQLite opens it (SQLite gives
        the ``-wal`` and ``-shm`` files the database file's mode); an existing file that group
        or others may access is tightened to 0600, with a warning (:func:`private_sqlite_file`).
    ``postgresql+psycopg://user@host/db``
        psycopg 3 (``postgresql://`` URLs are mapped to it). Row locks (``SELECT ... FOR
        UPDATE``) serialise concurrent changes of one row; READ COMMITTED isolation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import string
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import BigInteger, DateTime, Engine, Integer, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "BigIntId",
    "Database",
    "ID_LEN",
    "check_in",
    "new_id",
    "MIGRATIONS_DIR",
    "SQLITE_BUSY_TIMEOUT_S",
    "NAMING_CONVENTION",
    "UTCDateTime",
    "utcnow",
    "make_engine",
    "normalise_url",
    "private_sqlite_file",
    "upgrade",
    "open_database",
    "current_revision",
]

log = logging.getLogger(__name__)

#: Alembic script directory shipped inside the package (no alembic.ini needed at run time).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: How long an SQLite writer waits for the lock before "database is locked". Long enough for
#: a burst of concurrent payments on one host; a writer holds the lock for one processor call.
SQLITE_BUSY_TIMEOUT_S = 30.0
#: Connection execution option marking a read-only session (deferred BEGIN on SQLite).
_READONLY = "palmpay_readonly"


#: Constraint names, so that migrations can refer to them identically on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every PalmPay table (payments in ``palmpay.payments.models``, API
    tables in ``palmpay.api.models``). Constraint names follow :data:`NAMING_CONVENTION`."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


#: Auto-incremented 64-bit primary key (SQLite only auto-increments an ``INTEGER PRIMARY KEY``).
BigIntId = BigInteger().with_variant(Integer, "sqlite")

_ALPHABET = string.ascii_letters + string.digits
#: Random characters after the prefix of every id and token (24 × log2(62) ≈ 143 bits).
ID_LEN = 24


def new_id(prefix: str) -> str:
    """``<prefix>_`` + :data:`ID_LEN` random alphanumerics (``cus_...``, ``pay_...``)."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(ID_LEN))


def check_in(column: str, values: Iterable[str]) -> str:
    """SQL of a ``CHECK`` constraint keeping ``column`` to ``values`` (e.g. a ``StrEnum``'s)."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (what every timestamp column stores)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as UTC and
    marked UTC again when read. Naive datetimes are refused on write (ambiguous).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: PalmPay stores timezone-aware UTC timestamps")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def normalise_url(url: str) -> str:
    """Map ``postgresql://`` / ``postgres://`` to the psycopg 3 driver; other URLs unchanged."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def private_sqlite_file(path: Path) -> None:
    """Make sure the SQLite database at ``path`` is private to this user before SQLite opens
    it: a missing folder is created 0700, a missing file 0600 (empty: a valid empty database),
    and an existing file, ``-wal`` or ``-shm`` that group or others may access is chmod 0600."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = file.stat().st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            log.warning("SQLite file %s was accessible by group/others (mode %o): now 0600",
                        file, mode)
            os.chmod(file, 0o600)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url`` with PalmPay's connection settings (see the module docstring).

    For a SQLite file the file and its folder are made private (:func:`private_sqlite_file`).
    ``sqlite://`` (in memory) uses a single shared connection so that every session sees the
    same database.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, echo=echo, pool_pre_ping=True)

    in_memory = parsed.database in (None, "", ":memory:")
    if not in_memory and parsed.database:
        private_sqlite_file(Path(parsed.database).expanduser().resolve())
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        **({"poolclass": StaticPool} if in_memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # pragma: no cover - exercised via engine
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own implicit
        # BEGIN is deferred and skipped before DDL).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            if not in_memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cur.execute("PRAGMA synchronous=NORMAL" if not in_memory else "PRAGMA synchronous=OFF")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        if conn.get_execution_options().get(_READONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """An engine and its session factory.

    ``Database(url)`` builds the engine with :func:`make_engine`; ``Database(engine=...)`` wraps
    an existing one. Sessions do not expire objects on commit, so ORM rows can be read after
    the ``with`` block.
    """

    def __init__(self, url: str | None = None, *, engine: Engine | None = None) -> None:
        if (url is None) == (engine is None):
            raise ValueError("Database needs exactly one of url or engine")
        if engine is None:
            assert url is not None  # checked above: exactly one of url, engine
            engine = make_engine(url)
        self.engine: Engine = engine
        self.sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._readonly_sessionmaker = sessionmaker(
            bind=self.engine.execution_options(**{_READONLY: True}), expire_on_commit=False
        )

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back (and the
        exception re-raised) when it raises. ``readonly=True`` is a hint for SQLite (no write
        lock taken up front); it is always rolled back."""
        factory = self._readonly_sessionmaker if readonly else self.sessionmaker
        session = factory()
        try:
            yield session
            if readonly:
                session.expunge_all()  # keep loaded rows readable after the rollback
                session.rollback()
            else:
                session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"


def _alembic_config(connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` (default: head) on ``engine``.

    Safe to call on every start: it does nothing when the database is current. On PostgreSQL
    concurrent callers are serialised by an advisory lock (see ``migrations/env.py``).
    """
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), revision)
    log.info("database at revision %s", current_revision(engine))


def open_database(url: str) -> Database:
    """A :class:`Database` on ``url`` with its schema migrated to head: what every entry point
    (the service, the admin commands, the CLI) starts from."""
    db = Database(url)
    upgrade(db.engine)
    return db


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
