"""Dense retrieval: cosine similarity between the query's vector and the corpus's vectors.

The search is exact: a matrix product in numpy, or a flat inner-product FAISS index when
``faiss`` is installed (same results, faster on large corpora).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, LoadError
from ._base import IndexRetriever, Passage, as_passages, check_k, check_query, numpy_module, prepare_folder


def as_embedder(embedder: Any) -> Any:
    """An :class:`~elixirml.lm.Embedder` for ``embedder`` (a model name, a callable or an embedder)."""
    from ..lm import Embedder

    if isinstance(embedder, Embedder):
        return embedder
    if isinstance(embedder, str) or callable(embedder):
        return Embedder(embedder)
    raise ConfigurationError(f"embedder must be an em.Embedder, a model name or a function, got {embedder!r}")


def normalized(vectors: Any, where: str) -> Any:
    """Rows scaled to unit length (float32); a zero row is refused."""
    numpy = numpy_module(where)
    array = numpy.asarray(vectors, dtype=numpy.float32)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ConfigurationError(f"{where}: expected vectors of shape (n, dim), got {array.shape}")
    norms = numpy.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ConfigurationError(f"{where}: the embedder returned a zero vector; it has no direction to compare")
    return array / norms


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


class Embeddings(IndexRetriever):
    """Retrieve by meaning: the passages whose embeddings are closest (cosine) to the query's.

    Args:
        corpus: the passages: strings, ``{"text": ..., "id": ...}`` dicts or :class:`Passage` objects.
        embedder: an :class:`~elixirml.Embedder`, a model name for one (``"local"``,
            ``"openai/text-embedding-3-small"``) or a function from texts to vectors.
        use_faiss: ``None`` uses FAISS when it is installed; ``True`` requires it; ``False`` uses numpy.

    The corpus is embedded once, at construction (cached like every embedding).
    """

    kind = "embeddings"

    def __init__(self, corpus: Iterable[Any], embedder: Any, *, use_faiss: bool | None = None) -> None:
        self.passages = as_passages(corpus)
        if not self.passages:
            raise ConfigurationError("Embeddings needs a corpus of at least one passage")
        self.embedder = as_embedder(embedder)
        vectors = self.embedder([p.text for p in self.passages])
        self._set_vectors(vectors, use_faiss)

    def _set_vectors(self, vectors: Any, use_faiss: bool | None) -> None:
        self.vectors = normalized(vectors, f"Embeddings({self.embedder!r})")
        if len(self.vectors) != len(self.passages):
            raise ConfigurationError(f"{len(self.vectors)} vectors for {len(self.passages)} passages")
        faiss = _faiss() if use_faiss is not False else None
        if use_faiss and faiss is None:
            from ..errors import MissingDependencyError

            raise MissingDependencyError("faiss", "retrieval", "Embeddings(use_faiss=True)")
        self._faiss_index: Any = None
        if faiss is not None:
            self._faiss_index = faiss.IndexFlatIP(self.vectors.shape[1])
            self._faiss_index.add(self.vectors)

    @property
    def dim(self) -> int:
        """The size of the vectors."""
        return int(self.vectors.shape[1])

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """The ``k`` passages closest in meaning to ``query``, best first (score: cosine similarity)."""
        return self.nearest(self.embedder(check_query(query)), k)

    async def asearch(self, query: str, k: int = 3) -> list[Passage]:
        """Async :meth:`search` (the query is embedded without blocking the loop)."""
        return self.nearest(await self.embedder.aembed(check_query(query)), k)

    def nearest(self, vector: Any, k: int) -> list[Passage]:
        """The ``k`` passages closest to ``vector`` (one query vector of the index's size)."""
        numpy = numpy_module("Embeddings")
        k = min(check_k(k), len(self.passages))
        query = numpy.asarray(vector, dtype=numpy.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise ConfigurationError(f"The query vector has {query.shape[1]} dimensions; the index has {self.dim}")
        norm = float(numpy.linalg.norm(query))
        if norm == 0:
            return []
        query = query / norm
        if self._faiss_index is not None:
            scores, rows = self._faiss_index.search(query, k)
            pairs = list(zip(rows[0].tolist(), scores[0].tolist(), strict=True))
        else:
            similarity = self.vectors @ query[0]
            top = numpy.argpartition(-similarity, k - 1)[:k] if k < len(similarity) else numpy.arange(len(similarity))
            top = top[numpy.argsort(-similarity[top], kind="stable")]
            pairs = [(int(i), float(similarity[i])) for i in top]
        return [
            Passage(self.passages[i].text, self.passages[i].id, score, self.passages[i].metadata)
            for i, score in pairs
            if i >= 0
        ]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the vectors and passages into the folder ``path``; :meth:`load` reads them back."""
        numpy = numpy_module("Embeddings")
        folder = prepare_folder(path)
        numpy.save(folder / "vectors.npy", self.vectors, allow_pickle=False)
        self._write_meta(folder, embedder=self.embedder.model, dim=self.dim)
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike[str], embedder: Any, *, use_faiss: bool | None = None) -> Embeddings:
        """The index saved at ``path``, searched with ``embedder`` (the same model that built it).

        Raises:
            LoadError: the folder holds no such index, or it was built by another embedder.
        """
        numpy = numpy_module("Embeddings")
        folder, meta, passages = cls._read_meta(path)
        self = cls.__new__(cls)
        self.passages = passages
        self.embedder = as_embedder(embedder)
        if meta.get("embedder") != self.embedder.model:
            raise LoadError(
                f"{folder} was built with the embedder {meta.get('embedder')!r}, not {self.embedder.model!r}: "
                "vectors of different models cannot be compared. Load it with the same embedder."
            )
        try:
            vectors = numpy.load(folder / "vectors.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise LoadError(f"{folder}/vectors.npy cannot be read ({exc})") from None
        try:
            self._set_vectors(vectors, use_faiss)
        except ConfigurationError as exc:
            raise LoadError(f"{folder}: {exc}") from None
        return self
