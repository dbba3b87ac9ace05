"""Dense retrieval inside PostgreSQL with the pgvector extension.

The passages and their vectors live in one table (``id``, ``text``, ``metadata``, ``embedding``);
a search is one ``ORDER BY embedding <=> query LIMIT k`` statement (cosine distance), so the
index is shared by every process that reaches the database and survives restarts.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import ConfigurationError, MissingDependencyError, StoreError
from ..runtime import run_sync
from ._base import Passage, as_passages, check_k, check_query
from ._embeddings import as_embedder, normalized

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def quoted_table(table: str) -> str:
    """``table`` as a quoted SQL identifier (``schema.table`` allowed); anything else is refused."""
    parts = table.split(".") if isinstance(table, str) else []
    if not parts or len(parts) > 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise ConfigurationError(
            f"PGVector table {table!r} is not a plain SQL name (letters, digits and _, at most 63; "
            "optionally schema.table)"
        )
    return ".".join(f'"{p}"' for p in parts)


def vector_literal(vector: Sequence[float]) -> str:
    """The text form of a vector that pgvector reads: ``[0.1,0.2,...]``."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def create_table_sql(table: str, dim: int) -> str:
    """The statement that creates the passages table for vectors of ``dim`` dimensions."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigurationError(f"dim must be a positive int, got {dim!r}")
    return (
        f"CREATE TABLE IF NOT EXISTS {quoted_table(table)} (id TEXT PRIMARY KEY, text TEXT NOT NULL, "
        f"metadata JSONB NOT NULL DEFAULT '{{}}', embedding vector({dim}) NOT NULL)"
    )


def upsert_sql(table: str) -> str:
    """The statement that adds or replaces one passage."""
    return (
        f"INSERT INTO {quoted_table(table)} (id, text, metadata, embedding) "
        "VALUES (:id, :text, CAST(:metadata AS JSONB), CAST(:embedding AS vector)) "
        "ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, metadata = EXCLUDED.metadata, "
        "embedding = EXCLUDED.embedding"
    )


def search_sql(table: str) -> str:
    """The statement that finds the ``:k`` nearest passages to ``:query`` (score: cosine similarity)."""
    return (
        f"SELECT id, text, metadata, 1 - (embedding <=> CAST(:query AS vector)) AS score "
        f"FROM {quoted_table(table)} ORDER BY embedding <=> CAST(:query AS vector) LIMIT :k"
    )


def engine_url(url: str) -> str:
    """A SQLAlchemy URL on the psycopg (3) driver: ``postgresql://`` becomes ``postgresql+psycopg://``."""
    if not isinstance(url, str) or not re.match(r"^postgres(ql)?(\+\w+)?://", url):
        raise ConfigurationError(f"PGVector needs a PostgreSQL URL (postgresql://user@host/db), got {url!r}")
    scheme, rest = url.split("://", 1)
    if "+" not in scheme:
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


class PGVector:
    """Retrieve from a PostgreSQL table with pgvector (cosine distance).

    Args:
        url: the database (``postgresql://user:password@host:5432/db``); the password is never shown.
        table: the table of passages (created when missing).
        embedder: an :class:`~elixirml.Embedder`, a model name or a function from texts to vectors.
        corpus: passages to add (embedded and upserted by id) now; more with :meth:`add`.

    Raises:
        ConfigurationError: a bad URL or table name, or a server without the ``vector`` extension.
        MissingDependencyError: ``psycopg`` is not installed (extra ``pgvector``).
        StoreError: the database cannot be reached.
    """

    def __init__(self, url: str, table: str, embedder: Any, *, corpus: Iterable[Any] | None = None) -> None:
        quoted_table(table)
        self.table = table
        self.embedder = as_embedder(embedder)
        try:
            import psycopg  # noqa: F401
            import sqlalchemy
        except ImportError:
            raise MissingDependencyError("psycopg", "pgvector", "em.retrievers.PGVector") from None
        self._sql = sqlalchemy
        self._engine = sqlalchemy.create_engine(engine_url(url), pool_pre_ping=True)
        self._ensure_extension()
        if corpus is not None:
            self.add(corpus)

    def __repr__(self) -> str:
        return f"PGVector(url={self._engine.url.render_as_string(hide_password=True)!r}, table={self.table!r})"

    def __deepcopy__(self, memo: dict[int, Any]) -> PGVector:
        return self  # a client of a shared table, like an LM

    def _ensure_extension(self) -> None:
        sqlalchemy = self._sql
        try:
            with self._engine.begin() as connection:
                connection.execute(sqlalchemy.text("CREATE EXTENSION IF NOT EXISTS vector"))
        except sqlalchemy.exc.OperationalError as exc:
            raise StoreError(f"{self!r}: cannot reach the database ({exc.orig})") from None
        except sqlalchemy.exc.DBAPIError as exc:
            raise ConfigurationError(
                f"{self!r}: the server has no pgvector extension (CREATE EXTENSION vector failed: {exc.orig}). "
                "Install pgvector on the PostgreSQL server, or use em.retrievers.Embeddings."
            ) from None

    def add(self, corpus: Iterable[Any]) -> int:
        """Embed and upsert passages (by id); creates the table on first use. Returns how many."""
        passages = as_passages(corpus)
        if not passages:
            return 0
        vectors = normalized(self.embedder([p.text for p in passages]), f"PGVector({self.embedder!r})")
        rows = [
            {"id": p.id, "text": p.text, "metadata": json.dumps(dict(p.metadata)), "embedding": vector_literal(v)}
            for p, v in zip(passages, vectors.tolist(), strict=True)
        ]
        sqlalchemy = self._sql
        with self._engine.begin() as connection:
            connection.execute(sqlalchemy.text(create_table_sql(self.table, len(vectors[0]))))
            connection.execute(sqlalchemy.text(upsert_sql(self.table)), rows)
        return len(rows)

    def __len__(self) -> int:
        sqlalchemy = self._sql
        with self._engine.connect() as connection:
            count = connection.execute(sqlalchemy.text(f"SELECT COUNT(*) FROM {quoted_table(self.table)}")).scalar()
        return int(count or 0)

    def _nearest(self, vector: Sequence[float], k: int) -> list[Passage]:
        sqlalchemy = self._sql
        with self._engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text(search_sql(self.table)), {"query": vector_literal(vector), "k": k}
            ).all()
        return [
            Passage(text=row.text, id=row.id, score=float(row.score), metadata=dict(row.metadata or {})) for row in rows
        ]

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """The ``k`` passages closest in meaning to ``query``, best first (score: cosine similarity)."""
        return run_sync(self.asearch(query, k))

    async def asearch(self, query: str, k: int = 3) -> list[Passage]:
        """Async :meth:`search`: the query is embedded, then one SQL statement runs in a worker thread."""
        k = check_k(k)
        vector = await self.embedder.aembed(check_query(query))
        return await asyncio.to_thread(self._nearest, [float(x) for x in vector], k)

    def close(self) -> None:
        """Close the database connections."""
        self._engine.dispose()
