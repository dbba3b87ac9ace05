"""The store's core: the engine and its sessions, retried writes, the schema (Alembic) and the save/load hooks.

Each resource's methods live in a mixin over :class:`StoreCore` (``_versions``, ``_runs``,
``_evaluations``, ``_traces``, ``_checkpoints``, ``_jobs``); :class:`~elixirml.store.ResourceStore`
(``_store``) composes them into the one store object.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

from .._secrets import find_secrets, redact_url
from ..errors import ConfigurationError, LoadError, MissingDependencyError, StoreError, VariableError
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


def validate_configuration(configuration: Mapping[str, Any], space: Mapping[str, Any]) -> None:
    """Check a configuration against a stored variable space (name -> encoding).

    Raises:
        VariableError: naming the variable, the value and the rule it breaks.
    """
    for name, value in configuration.items():
        if name not in space:
            raise VariableError(
                f"Configuration names unknown variable {name!r}; the program's variables: {sorted(space)}"
            )
        rule = space[name]
        kind = rule.get("type")
        if kind == "numeric":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise VariableError(f"Variable {name!r}: expected a number, got {value!r}")
            if not rule["low"] <= value <= rule["high"]:
                raise VariableError(f"Variable {name!r}: {value} is out of range [{rule['low']}, {rule['high']}]")
            if rule.get("integer") and not float(value).is_integer():
                raise VariableError(f"Variable {name!r}: expected an integer, got {value!r}")
        elif kind == "categorical":
            if value not in rule["choices"]:
                raise VariableError(f"Variable {name!r}: {value!r} is not one of {rule['choices']}")
        elif kind == "text" and not isinstance(value, str):
            raise VariableError(f"Variable {name!r}: expected text, got {value!r}")
        elif kind == "demos" and not isinstance(value, list):
            raise VariableError(f"Variable {name!r}: expected a list of demos, got {type(value).__name__}")


def content_hash(state: Any, configuration: Any) -> str:
    """SHA-256 of a version's content (state and configuration)."""
    text = json.dumps({"state": state, "configuration": configuration}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def state_hash(state: Any) -> str:
    """SHA-256 of a program state alone: the key under which the store keeps it once."""
    text = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _field_summary(signature: Any) -> str | None:
    """``"question: str -> reasoning: str, answer: str"`` of a stored signature (None without one)."""
    if not isinstance(signature, dict):
        return None
    fields = [f for f in signature.get("fields") or [] if isinstance(f, dict)]

    def side(kind: str) -> str:
        return ", ".join(f"{f.get('name')}: {f.get('type')}" for f in fields if f.get("kind") == kind)

    return f"{side('input')} -> {side('output')}"


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

    @staticmethod
    def _insert(session: Any, record: Any) -> int:
        session.add(record)
        session.flush()
        return int(record.id)

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

    # ------------------------------------------------------------------ programs
    def add_version(
        self,
        name: str,
        state: dict[str, Any],
        *,
        configuration: dict[str, Any] | None = None,
        space: dict[str, Any] | None = None,
        class_path: str = "",
        class_file: str | None = None,
        signature_summary: str = "",
        tags: list[str] | None = None,
        message: str = "",
        parent: int | str | None = "latest",
    ) -> dict[str, Any]:
        """Save a new version of program ``name`` and return its description.

        ``class_path`` (``"module:QualName"``) and ``class_file`` (its source file) are kept
        with the version: each version loads as the class it was saved from.
        ``parent`` is ``"latest"`` (chain to the newest version), a version number, or None.
        Version numbers are allocated safely when several processes save at once; the state
        is stored once per distinct content.

        Raises:
            ConfigurationError: the state or configuration holds credentials.
            VariableError: the configuration breaks the variable space.
            StoreError: the database failed (after retrying collisions with other writers).
        """
        configuration = dict(configuration or {})
        _refuse_secrets(state, configuration)
        record = {"kind": "version", "name": name, "state": state, "configuration": configuration, "tags": tags or []}
        self._fire("before_save", "version", record)
        digest = state_hash(state)
        whole = content_hash(state, configuration)

        def save() -> dict[str, Any]:
            with self.session() as session:
                return self._add_version(
                    session,
                    name,
                    state,
                    digest,
                    whole,
                    configuration=configuration,
                    space=space,
                    class_path=class_path,
                    class_file=class_file,
                    signature_summary=signature_summary,
                    tags=tags,
                    message=message,
                    parent=parent,
                )

        info = self._retrying(f"Saving a version of {name!r}", save)
        self._fire("after_save", "version", info)
        return info

    def _add_version(
        self,
        session: Any,
        name: str,
        state: dict[str, Any],
        digest: str,
        whole: str,
        *,
        configuration: dict[str, Any],
        space: dict[str, Any] | None,
        class_path: str,
        class_file: str | None,
        signature_summary: str,
        tags: list[str] | None,
        message: str,
        parent: int | str | None,
    ) -> dict[str, Any]:
        from ._models import ProgramRecord, ProgramVersion, StateBlob, VariableSpaceRecord

        program = session.query(ProgramRecord).filter_by(name=name).one_or_none()
        if program is None:
            program = ProgramRecord(name=name, signature_summary=signature_summary, class_path=class_path)
            session.add(program)
            session.flush()
        latest = self._latest(session, program.id)
        if space is None and latest is not None and latest.variable_space is not None:
            space = latest.variable_space.space
        if space is not None:
            validate_configuration(configuration, space)
        parent_version = None
        if parent == "latest":
            parent_version = latest
        elif parent is not None:
            parent_version = self._numbered(session, program.id, int(parent))
            if parent_version is None:
                raise LoadError(f"Program {name!r} has no version {parent}")
        config_digest = state_hash(configuration)
        for key, content in ((digest, state), (config_digest, configuration)):
            if session.get(StateBlob, key) is None:
                session.add(StateBlob(hash=key, state=content))
                session.flush()
        version = ProgramVersion(
            program=program,
            number=(latest.number + 1) if latest is not None else 1,
            state_hash=digest,
            configuration_hash=config_digest,
            tags=list(tags or []),
            message=message,
            parent=parent_version,
            content_hash=whole,
            class_path=class_path,
            class_file=class_file,
        )
        if class_path:
            program.class_path = class_path
        if signature_summary:
            program.signature_summary = signature_summary
        session.add(version)
        if space is not None:
            session.add(VariableSpaceRecord(version=version, space=space))
        session.flush()
        return self._version_info(version)

    @staticmethod
    def _latest(session: Any, program_id: int) -> Any:
        from ._models import ProgramVersion

        query = session.query(ProgramVersion).filter_by(program_id=program_id)
        return query.order_by(ProgramVersion.number.desc()).first()

    @staticmethod
    def _numbered(session: Any, program_id: int, number: int) -> Any:
        from ._models import ProgramVersion

        return session.query(ProgramVersion).filter_by(program_id=program_id, number=number).one_or_none()

    @staticmethod
    def _version_info(version: Any, *, with_state: bool = False, session: Any = None) -> dict[str, Any]:
        info = {
            "id": version.id,
            "name": version.program.name,
            "number": version.number,
            "parent": version.parent.number if version.parent is not None else None,
            "content_hash": version.content_hash,
            "tags": list(version.tags or []),
            "message": version.message,
            "created_at": version.created_at.isoformat() if version.created_at else None,
            "class_path": version.class_path or version.program.class_path,
            "class_file": version.class_file,
        }
        if with_state:
            from ._models import StateBlob

            def content(digest: str | None, legacy: Any) -> Any:
                if digest is None:
                    return legacy
                blob = session.get(StateBlob, digest)
                return blob.state if blob is not None else None

            info["state"] = content(version.state_hash, version.state if version.state_hash is None else None)
            configuration = content(
                version.configuration_hash, version.configuration if version.configuration_hash is None else None
            )
            info["configuration"] = configuration if configuration is not None else {}
            info["space"] = version.variable_space.space if version.variable_space is not None else None
        return info

    def get_version(self, name: str, version: int | str = "latest") -> dict[str, Any]:
        """A version of ``name`` with its state: ``"latest"``, a version number, or ``"#<id>"``.

        Raises:
            LoadError: no such program or version, or ``version`` is not one of those forms.
        """
        from ._models import ProgramRecord, ProgramVersion

        self._fire("before_load", "version", {"name": name, "version": version})
        with self.session() as session:
            program = session.query(ProgramRecord).filter_by(name=name).one_or_none()
            latest = self._latest(session, program.id) if program is not None else None
            if program is None or latest is None:
                known = [p.name for p in session.query(ProgramRecord).order_by(ProgramRecord.name)]
                raise LoadError(f"No stored program named {name!r}; stored programs: {known}")
            if version == "latest":
                chosen = latest
            elif isinstance(version, str) and version.startswith("#"):
                ident = version[1:]
                if not ident.isdigit():
                    raise LoadError(f"Version id must be '#<number>', got {version!r} for program {name!r}")
                chosen = session.get(ProgramVersion, int(ident)) if len(ident) < 19 else None  # past a 64-bit id
                if chosen is None or chosen.program_id != program.id:
                    raise LoadError(f"Program {name!r} has no version with id {ident}")
            else:
                if isinstance(version, bool):
                    raise LoadError(f"Version must be 'latest', a number or '#id', got {version!r}")
                try:
                    number = int(version)
                except (TypeError, ValueError):
                    raise LoadError(f"Version must be 'latest', a number or '#id', got {version!r}") from None
                chosen = self._numbered(session, program.id, number) if -(2**63) <= number < 2**63 else None
                if chosen is None:
                    numbers = [n for (n,) in session.query(ProgramVersion.number).filter_by(program_id=program.id)]
                    raise LoadError(f"Program {name!r} has no version {number}; versions: {sorted(numbers)}")
            info = self._version_info(chosen, with_state=True, session=session)
        if not isinstance(info["state"], dict):
            raise LoadError(f"Stored state of {name!r} v{info['number']} is not a JSON object")
        self._fire("after_load", "version", info)
        return info

    def programs(self) -> list[dict[str, Any]]:
        """Every stored program with its version count."""
        sa = _sqlalchemy()
        from ._models import ProgramRecord, ProgramVersion

        with self.session() as session:
            counts = dict(
                session.query(ProgramVersion.program_id, sa.func.count(ProgramVersion.id)).group_by(
                    ProgramVersion.program_id
                )
            )
            latest = dict(
                session.query(ProgramVersion.program_id, sa.func.max(ProgramVersion.number)).group_by(
                    ProgramVersion.program_id
                )
            )
            return [
                {
                    "name": p.name,
                    "versions": counts.get(p.id, 0),
                    "signature": p.signature_summary,
                    "latest": latest.get(p.id),
                    "class_path": p.class_path,
                }
                for p in session.query(ProgramRecord).order_by(ProgramRecord.name)
            ]

    def versions(self, name: str) -> list[dict[str, Any]]:
        """The versions of ``name``, oldest first."""
        from ._models import ProgramRecord

        with self.session() as session:
            program = session.query(ProgramRecord).filter_by(name=name).one_or_none()
            if program is None:
                raise LoadError(f"No stored program named {name!r}")
            return [self._version_info(v) for v in program.versions]

    def diff(self, name: str, a: int | str, b: int | str) -> dict[str, Any]:
        """What changed between two versions: class, configuration values and predictor state.

        Returns ``{"class": {"from", "to"} or None, "configuration": {key: {"from", "to"}},
        "predictors": {name: {what: {"from", "to"}}}}``; a predictor's ``what`` is ``type``,
        ``signature`` (its fields), ``instructions``, ``demos`` (counts), ``decoding`` or
        ``config``, and a predictor only one version has shows as ``present``.
        """
        left, right = self.get_version(name, a), self.get_version(name, b)
        changes: dict[str, Any] = {"class": None, "configuration": {}, "predictors": {}}
        if left["class_path"] != right["class_path"]:
            changes["class"] = {"from": left["class_path"], "to": right["class_path"]}
        for key in sorted(set(left["configuration"]) | set(right["configuration"])):
            before, after = left["configuration"].get(key), right["configuration"].get(key)
            if before != after:
                changes["configuration"][key] = {"from": before, "to": after}
        lp = left["state"].get("predictors", {"self": left["state"]})
        rp = right["state"].get("predictors", {"self": right["state"]})
        for key in sorted(set(lp) | set(rp)):
            before, after = lp.get(key) or {}, rp.get(key) or {}
            entry: dict[str, dict[str, Any]] = {}
            if (key in lp) != (key in rp):
                entry["present"] = {"from": key in lp, "to": key in rp}
            if before.get("type") != after.get("type"):
                entry["type"] = {"from": before.get("type"), "to": after.get("type")}
            b_fields = _field_summary(before.get("signature"))
            a_fields = _field_summary(after.get("signature"))
            if b_fields != a_fields:
                entry["signature"] = {"from": b_fields, "to": a_fields}
            b_instr = (before.get("signature") or {}).get("instructions")
            a_instr = (after.get("signature") or {}).get("instructions")
            if b_instr != a_instr:
                entry["instructions"] = {"from": b_instr, "to": a_instr}
            if len(before.get("demos", [])) != len(after.get("demos", [])) or before.get("demos") != after.get("demos"):
                entry["demos"] = {"from": len(before.get("demos", [])), "to": len(after.get("demos", []))}
            if before.get("decoding") != after.get("decoding"):
                entry["decoding"] = {"from": before.get("decoding"), "to": after.get("decoding")}
            if (before.get("config") or {}) != (after.get("config") or {}):
                entry["config"] = {"from": before.get("config") or {}, "to": after.get("config") or {}}
            if entry:
                changes["predictors"][key] = entry
        return changes

    # ------------------------------------------------------------------ evaluations and executions
