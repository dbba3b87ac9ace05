"""The resource store: programs, versions, runs, trials, evaluations and executions in a database.

SQLite by default (``ELIXIRML_STORE`` / ``em.configure(store=...)``), PostgreSQL by URL. The
schema is managed by Alembic and upgraded when a store is opened. Everything is JSON; nothing
read back is ever executed. Credentials are refused before anything is written.

Several processes may share one store: writes that collide (two savers taking the same
version number, a database busy with another writer) are retried, and what still fails
raises :class:`~elixirml.errors.StoreError`, never a raw database error. Program states are
content-addressed: a state is stored once however many versions share it, and saving or
loading a version reads no other version's state.
"""

from __future__ import annotations

from ._checkpoints import Checkpoints
from ._core import StoreCore
from ._evaluations import Evaluations
from ._jobs import Jobs
from ._runs import Runs
from ._traces import Traces
from ._versions import Versions


class ResourceStore(Versions, Runs, Evaluations, Traces, Checkpoints, Jobs, StoreCore):
    """Data-level access to the store (plain dicts in, plain dicts out).

    Args:
        url: a SQLAlchemy URL (default: the configured store, ``$ELIXIRML_STORE``, or a SQLite
            file in the user's data directory).
        migrate: upgrade the schema to the latest revision on open.

    Attributes:
        read_only: the SQLite file cannot be written here (a read-only file system or no
            write permission): the store is open for reading, and writes raise ``StoreError``.
    """
