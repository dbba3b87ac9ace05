"""BM25 over a corpus, on ``bm25s``: the embedded default retriever (no model needed)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, LoadError, MissingDependencyError
from ._base import IndexRetriever, Passage, as_passages, prepare_folder


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError:
        raise MissingDependencyError("bm25s", "retrieval", "em.retrievers.BM25") from None
    return bm25s


class BM25(IndexRetriever):
    """Lexical retrieval with BM25 (``bm25s``): fast, no model, a strong baseline on factual questions.

    Args:
        corpus: the passages: strings, ``{"text": ..., "id": ...}`` dicts or :class:`Passage` objects.
        k1, b: BM25's term-frequency saturation and length normalisation.
        method: the BM25 variant (``"lucene"``, ``"robertson"``, ``"atire"``, ``"bm25l"``, ``"bm25+"``).
        stopwords: a language name (``"english"``), a list of words, or None for none.

    Raises:
        ConfigurationError: an empty or malformed corpus.
        MissingDependencyError: ``bm25s`` is not installed (extra ``retrieval``).
    """

    kind = "bm25"

    def __init__(
        self,
        corpus: Iterable[Any],
        *,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stopwords: str | list[str] | None = "english",
    ) -> None:
        self.passages = as_passages(corpus)
        if not self.passages:
            raise ConfigurationError("BM25 needs a corpus of at least one passage")
        self.k1, self.b, self.method, self.stopwords = k1, b, method, stopwords
        bm25s = _bm25s()
        self._index = bm25s.BM25(k1=k1, b=b, method=method)
        tokens = self._tokenize([p.text for p in self.passages])
        if not any(tokens):
            raise ConfigurationError(
                "BM25 found no words to index in the corpus (words of two or more letters, stopwords left out)"
            )
        self._index.index(tokens, show_progress=False)

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        tokens: list[list[str]] = _bm25s().tokenize(
            texts, stopwords=self.stopwords or [], return_ids=False, show_progress=False
        )
        return tokens

    def _search(self, query: str, k: int) -> list[Passage]:
        tokens = self._tokenize([query])[0]
        vocab = self._index.vocab_dict
        known = [t for t in tokens if t in vocab]
        if not known:
            return []  # no word of the query is in the corpus: nothing matches
        k = min(k, len(self.passages))
        documents, scores = self._index.retrieve([known], k=k, show_progress=False, n_threads=1)
        found = []
        for position, score in zip(documents[0], scores[0], strict=True):
            if score > 0:
                passage = self.passages[int(position)]
                found.append(Passage(passage.text, passage.id, float(score), passage.metadata))
        return found

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index and its passages into the folder ``path``; :meth:`load` reads it back."""
        folder = prepare_folder(path)
        self._index.save(str(folder / "bm25s"), show_progress=False)
        self._write_meta(folder, k1=self.k1, b=self.b, method=self.method, stopwords=self.stopwords)
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BM25:
        """The index saved at ``path`` by :meth:`save` (no pickle: arrays and JSON only)."""
        folder, meta, passages = cls._read_meta(path)
        bm25s = _bm25s()
        self = cls.__new__(cls)
        self.passages = passages
        self.k1, self.b, self.method = meta.get("k1", 1.5), meta.get("b", 0.75), meta.get("method", "lucene")
        self.stopwords = meta.get("stopwords", "english")
        try:
            self._index = bm25s.BM25.load(str(folder / "bm25s"), allow_pickle=False, show_progress=False)
        except (OSError, ValueError, KeyError) as exc:
            raise LoadError(f"{folder}: the BM25 index files cannot be read ({exc})") from None
        if self._index.scores["num_docs"] != len(passages):
            raise LoadError(
                f"{folder}: the index has {self._index.scores['num_docs']} documents but {len(passages)} passages"
            )
        return self
