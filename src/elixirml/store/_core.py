"""The store's core: the engine and its sessions, retried writes, the schema (Alembic) and the save/load hooks.

Each resource's methods live in a mixin over :class:`StoreCore` (``_versions``, ``_runs``,
``_evaluations``, ``_traces``, ``_checkpoints``, ``_jobs``); :class:`~elixirml.store.ResourceStore`
(``_store``) composes them into the one store object.
"""

from __future__ import annotations

import collections
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

from .._secrets import find_secrets, redact_url
from ..errors import ConfigurationError, LoadError, MissingDependencyError, StoreError
from ._url import store_url

EVENTS = ("before_save", "after_save", "before_load", "after_load")
_WRITE_ATTEMPTS = 30
T = TypeVar("T")


def _sqlalchemy() -> Any:
    try:
        import sqlalchemy
    except ImportError:
        raise MissingDependencyError("sqlalchemy", "all", "The store") from None
    return sqlalchemy


def _refuse_secrets(*values: Any) -> None:
    found = [path for value in values for path in find_secrets(value)]
    if found:
        raise ConfigurationError(
            f"Refusing to store what looks like credentials at {found}; pass keys and tokens to the LM "
            "(api_key=..., headers=...) or the environment, never in program state or traces."
        )


def _busy(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "locked" in text or "busy" in text or "could not serialize" in text or "deadlock" in text


def _aware(moment: Any) -> Any:
    """A datetime read back from the database, in UTC (SQLite returns it without its zone)."""
    import datetime as dt

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _iso(moment: Any) -> str | None:
    """A timestamp as ISO 8601 text (None for none)."""
    return moment.isoformat() if moment else None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _sqlite_read_only_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_file(url: str) -> str | None:
    """The file of a plain SQLite URL (None for memory, other databases, or a URI the user wrote)."""
    sa = _sqlalchemy()
    parsed = sa.engine.make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.query.get("uri"):
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return str(database)


def _read_only_file(path: str) -> bool:
    """Whether an existing SQLite file cannot be written here (a read-only file system or no permission).

    SQLite also writes beside the file (its WAL and shared-memory files), so the folder counts too.
    """
    if not os.path.exists(path):
        return False
    folder = os.path.dirname(os.path.abspath(path))
    return not (os.access(path, os.W_OK) and os.access(folder, os.W_OK))


def _read_only_url(path: str) -> str:
    """A URL opening ``path`` for reading only: ``immutable`` because nothing here can change it."""
    from urllib.parse import quote

    return f"sqlite:///file:{quote(os.path.abspath(path))}?mode=ro&immutable=1&uri=true"


def _hint(detail: str) -> str:
    """What to do about a database error, from its message."""
    text = detail.lower()
    if "not a database" in text or "file is encrypted" in text:
        return (
            "The file is not an SQLite database: point the store at another file (em.configure(store=...) or "
            "$ELIXIRML_STORE), or move this file away and a new store is created there."
        )
    if "readonly" in text or "read-only" in text:
        return (
            "The store cannot be written here (a read-only file system or no write permission); it can still be "
            "read. To write, copy the file to a writable disk and point em.configure(store=...) at the copy."
        )
    return "Another process may hold the database; try again, or check the store URL and its disk."


class StoreCore:
    """The engine, sessions, retries, schema and hooks that every part of the store shares.

    Args:
        url: a SQLAlchemy URL (default: the configured store, ``$ELIXIRML_STORE``, or a SQLite
            file in the user's data directory).
        migrate: upgrade the schema to the latest revision on open.
    """

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        sa = _sqlalchemy()
        from sqlalchemy.orm import sessionmaker

        self.url = store_url(url)
        options: dict[str, Any] = {}
        if self.url.startswith("sqlite"):
            options["connect_args"] = {"timeout": 30}
        file = _sqlite_file(self.url) if self.url.startswith("sqlite") else None
        #: True when the store is open for reading only (its file cannot be written here).
        self.read_only = file is not None and _read_only_file(file)
        self.engine = sa.create_engine(_read_only_url(file) if self.read_only and file else self.url, **options)
        if self.url.startswith("sqlite"):
            pragmas = _sqlite_read_only_pragmas if self.read_only else _sqlite_pragmas
            sa.event.listen(self.engine, "connect", pragmas)

        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._hooks: dict[str, list[Callable[..., Any]]] = collections.defaultdict(list)
        if self.read_only:
            self._check_revision()
        elif migrate:
            self.upgrade()

    def __repr__(self) -> str:
        sa = _sqlalchemy()
        shown = redact_url(sa.engine.make_url(self.url).render_as_string(hide_password=True))
        return f"{type(self).__name__}({shown!r}{', read-only' if self.__dict__.get('read_only') else ''})"

    # ------------------------------------------------------------------ schema
    def _alembic_config(self) -> Any:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(resources.files("elixirml.store") / "migrations"))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return config

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema up to ``revision``.

        On SQLite the migration holds the database's write lock from the start, so processes
        opening a new store at the same moment migrate it once, one after the other.
        """
        from alembic import command
        from alembic.util import CommandError

        config = self._alembic_config()

        def migrate() -> None:
            with self.engine.connect() as connection:
                if self.url.startswith("sqlite"):
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                connection.commit()

        try:
            self._retrying("Upgrading the schema", migrate)
        except CommandError as exc:
            raise self._revision_error(self._revision(), exc) from exc

    def _known_revisions(self) -> tuple[set[str], str | None]:
        """Every schema revision this version of ElixirML knows, and the newest."""
        from alembic.script import ScriptDirectory

        scripts = ScriptDirectory.from_config(self._alembic_config())
        return {s.revision for s in scripts.walk_revisions()}, scripts.get_current_head()

    def _revision(self) -> str | None:
        """The schema revision recorded in the database (None for a database with no schema yet)."""
        sa = _sqlalchemy()
        from ._models import VERSION_TABLE

        try:
            with self.engine.connect() as connection:
                if not sa.inspect(connection).has_table(VERSION_TABLE):
                    return None
                row = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
        except sa.exc.DatabaseError as exc:
            raise self._store_error("Reading the schema revision", exc) from exc
        return None if row is None else str(row[0])

    def _revision_error(self, found: str | None, cause: BaseException | None = None) -> StoreError:
        known, head = self._known_revisions()
        if found is not None and found not in known:
            return StoreError(
                f"The store {self!r} was written by a newer ElixirML (schema revision {found!r}; this version "
                f"knows revisions up to {head!r}). Upgrade ElixirML (pip install -U elixirml) to use it, or point "
                "the store elsewhere (em.configure(store=...) or $ELIXIRML_STORE)."
            )
        return StoreError(
            f"The schema of the store {self!r} is at revision {found!r}, not {head!r}"
            + (f" ({cause})" if cause is not None else "")
            + (
                ", and it is open read-only, so it cannot be upgraded here. Open it once where it can be written "
                "(ResourceStore(url) upgrades it), or copy the file to a writable disk."
                if self.read_only
                else ". Run ResourceStore(url).upgrade() where the store can be written."
            )
        )

    def _check_revision(self) -> None:
        """A read-only store is used as it is: its schema must be this version's."""
        found = self._revision()
        if found != self._known_revisions()[1]:
            raise self._revision_error(found)

    def downgrade(self, revision: str = "base") -> None:
        """Migrate the schema down to ``revision`` (``base``: no tables)."""
        from alembic import command

        config = self._alembic_config()
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, revision)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Any]:
        """A transaction: committed on success, rolled back on error.

        Raises:
            StoreError: the database failed (its error is the cause).
        """
        sa = _sqlalchemy()
        try:
            with self._sessions.begin() as session:
                yield session
        except sa.exc.SQLAlchemyError as exc:
            raise self._store_error("A store transaction", exc) from exc

    def _store_error(self, what: str, exc: BaseException, attempts: int = 1) -> StoreError:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        error = StoreError(f"{what} failed in {self!r}{tried}: {type(exc).__name__}: {detail}. {_hint(detail)}")
        error.retryable = _busy(exc) or type(exc).__name__ == "IntegrityError"  # type: ignore[attr-defined]
        return error

    def _retrying(self, what: str, operation: Callable[[], T]) -> T:
        """Run ``operation`` (one transaction), again when a concurrent writer got in the way.

        A unique-key collision (two processes taking the same version number) or a busy
        database is retried with jittered backoff; anything else, or a collision that keeps
        happening, raises :class:`StoreError`.
        """
        sa = _sqlalchemy()
        last: BaseException | None = None
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return operation()
            except StoreError as exc:
                cause = exc.__cause__
                if cause is None:
                    raise
                if not getattr(exc, "retryable", False):
                    raise self._store_error(what, cause) from cause
                last = cause
            except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
                if isinstance(exc, sa.exc.OperationalError) and not _busy(exc):
                    raise self._store_error(what, exc) from exc
                last = exc
            except sa.exc.DatabaseError as exc:  # not a database, a corrupt file: trying again cannot help
                raise self._store_error(what, exc) from exc
            time.sleep(random.uniform(0.0, min(0.5, 0.005 * 2**attempt)))
        assert last is not None
        raise self._store_error(what, last, _WRITE_ATTEMPTS) from last

    def _transaction(self, what: str, operation: Callable[[Any], T]) -> T:
        """Run ``operation(session)`` in one transaction, retried as :meth:`_retrying` retries."""

        def attempt() -> T:
            with self.session() as session:
                return operation(session)

        return self._retrying(what, attempt)

    @staticmethod
    def _insert(session: Any, record: Any) -> int:
        session.add(record)
        session.flush()
        return int(record.id)

    @staticmethod
    def _get(session: Any, model: Any, key: Any, missing: str) -> Any:
        """The ``model`` record under primary key ``key``; without one, a ``LoadError`` saying ``missing``."""
        record = session.get(model, key)
        if record is None:
            raise LoadError(missing)
        return record

    @staticmethod
    def _matching(query: Any, **filters: Any) -> Any:
        """``query`` narrowed to the given column values (a None value does not filter)."""
        return query.filter_by(**{column: value for column, value in filters.items() if value is not None})

    # ------------------------------------------------------------------ hooks
    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Register ``callback(kind, record)`` for ``before_save``/``after_save``/``before_load``/``after_load``.

        ``before_save`` may raise to refuse the save.
        """
        if event not in EVENTS:
            raise ConfigurationError(f"Unknown store event {event!r}; events: {EVENTS}")
        self._hooks[event].append(callback)

    def _fire(self, event: str, kind: str, record: dict[str, Any]) -> None:
        for callback in self._hooks[event]:
            callback(kind, record)
