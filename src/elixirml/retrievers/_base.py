"""The retriever protocol, passages, corpora, and what every index does on disk."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigurationError, LoadError, MissingDependencyError
from ..runtime import run_sync

#: The version of the files an index writes; another version is refused when loading.
INDEX_FORMAT = 1


@dataclasses.dataclass(frozen=True, slots=True)
class Passage:
    """One retrieved passage.

    Attributes:
        text: the passage's text.
        id: its id in the corpus (the position, unless the corpus gave ids).
        score: how well it matches the query (higher is better; its scale depends on the retriever).
        metadata: whatever the corpus carried besides the text and id.
    """

    text: str
    id: str = ""
    score: float = 0.0
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``text``, ``id``, ``score``, ``metadata``)."""
        return {"text": self.text, "id": self.id, "score": self.score, "metadata": dict(self.metadata)}


@runtime_checkable
class Retriever(Protocol):
    """Anything that finds the ``k`` passages best matching a query.

    ``em.retrievers.BM25``, ``Embeddings`` and ``PGVector`` implement it; so can any object with
    these two methods (``em.Retrieve`` takes it).
    """

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """The ``k`` best passages for ``query``, best first."""
        ...

    async def asearch(self, query: str, k: int = 3) -> list[Passage]:
        """Async :meth:`search`."""
        ...


def numpy_module(feature: str) -> Any:
    """numpy, or :class:`MissingDependencyError` naming the ``retrieval`` extra."""
    try:
        import numpy
    except ImportError:
        raise MissingDependencyError("numpy", "retrieval", feature) from None
    return numpy


def as_passages(corpus: Iterable[Any]) -> list[Passage]:
    """A corpus as passages: strings, ``{"text": ..., "id": ..., ...}`` dicts, or :class:`Passage` objects.

    Raises:
        ConfigurationError: an item of another kind, a dict without text, or two items with one id.
    """
    if isinstance(corpus, (str, bytes, Mapping)):
        raise ConfigurationError("A corpus is a list of passages (strings or dicts), not a single string or dict")
    passages: list[Passage] = []
    for position, item in enumerate(corpus):
        if isinstance(item, Passage):
            passage = item if item.id else dataclasses.replace(item, id=str(position))
        elif isinstance(item, str):
            passage = Passage(text=item, id=str(position))
        elif isinstance(item, Mapping):
            text = item.get("text", item.get("long_text"))
            if not isinstance(text, str):
                raise ConfigurationError(f"Corpus item {position} has no 'text' string: {sorted(item)}")
            metadata = {k: v for k, v in item.items() if k not in ("text", "long_text", "id")}
            passage = Passage(text=text, id=str(item.get("id", position)), metadata=metadata)
        else:
            raise ConfigurationError(
                f"Corpus item {position} is {type(item).__name__}; expected a string, a dict with 'text', or a Passage"
            )
        passages.append(passage)
    seen: set[str] = set()
    for passage in passages:
        if passage.id in seen:
            raise ConfigurationError(f"Corpus ids must be unique; {passage.id!r} appears more than once")
        seen.add(passage.id)
    return passages


def check_k(k: Any) -> int:
    """``k`` checked: a positive int."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigurationError(f"k must be a positive int, got {k!r}")
    return k


class IndexRetriever:
    """Shared parts of the built-in retrievers: the sync/async pair and the files of a saved index.

    Subclasses implement one of :meth:`_search` (CPU work, run in a worker thread by
    :meth:`asearch`) or :meth:`asearch` (I/O; :meth:`search` runs it), never both.
    """

    kind = "index"
    passages: list[Passage]

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """The ``k`` passages that best match ``query``, best first."""
        if type(self)._search is IndexRetriever._search:
            return run_sync(self.asearch(query, k))
        return self._search(check_query(query), check_k(k))

    async def asearch(self, query: str, k: int = 3) -> list[Passage]:
        """Async :meth:`search`."""
        import asyncio

        return await asyncio.to_thread(self._search, check_query(query), check_k(k))

    def _search(self, query: str, k: int) -> list[Passage]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.passages)

    def __deepcopy__(self, memo: dict[int, Any]) -> IndexRetriever:
        return self  # an index is shared, like an LM: copying a program does not copy its corpus

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.passages)} passages)"

    # ------------------------------------------------------------------ files
    def _write_meta(self, folder: Path, **extra: Any) -> None:
        meta = {"format": INDEX_FORMAT, "kind": self.kind, **extra}
        (folder / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        with (folder / "passages.jsonl").open("w", encoding="utf-8") as out:
            for passage in self.passages:
                out.write(json.dumps({"text": passage.text, "id": passage.id, **dict(passage.metadata)}) + "\n")

    @classmethod
    def _read_meta(cls, path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any], list[Passage]]:
        folder = Path(path)
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            with (folder / "passages.jsonl").open(encoding="utf-8") as lines:
                rows = [json.loads(line) for line in lines if line.strip()]
        except (OSError, ValueError) as exc:
            raise LoadError(
                f"{folder} is not a saved {cls.__name__} index ({exc}); save one with .save(path)"
            ) from None
        if not isinstance(meta, dict) or meta.get("kind") != cls.kind:
            found = meta.get("kind") if isinstance(meta, dict) else None
            raise LoadError(f"{folder} holds a {found!r} index, not a {cls.kind!r} one; load it with its own class")
        if meta.get("format") != INDEX_FORMAT:
            raise LoadError(
                f"{folder} was written in index format {meta.get('format')!r}; this version reads {INDEX_FORMAT}"
            )
        try:
            passages = as_passages(rows)
        except ConfigurationError as exc:
            raise LoadError(f"{folder}/passages.jsonl: {exc}") from None
        return folder, meta, passages


def check_query(query: Any) -> str:
    if not isinstance(query, str):
        raise ConfigurationError(f"A query is a string, got {type(query).__name__}")
    return query


def prepare_folder(path: str | os.PathLike[str]) -> Path:
    """The folder an index is saved into (created)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigurationError(f"An index is saved into a folder; {folder} is a file")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
