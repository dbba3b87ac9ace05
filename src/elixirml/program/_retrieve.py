"""``em.Retrieve``: a module that fetches passages for a query from a retriever (DSPy's ``dspy.Retrieve``)."""

from __future__ import annotations

from typing import Any

from .. import settings as _settings
from ..errors import ConfigurationError
from ..retrievers import Retriever
from ..schema import Prediction
from ..variables import Variable
from ._module import Module


class Retrieve(Module):
    """Fetch the ``k`` best passages for a query.

    ``k`` is a Variable (``retrieve.k`` in the program's variable space), so optimizers search it.

    Args:
        k: passages per query (1 to 20), or a ``Variable.int`` that sets its own range and
            default (``em.Retrieve(k=em.Variable.int(3, low=1, high=5))``: what fits the LM's context).
        retriever: what to search (``em.retrievers.BM25(corpus)``, ``Embeddings``, ``PGVector``,
            or any object with ``search``/``asearch``); default: ``em.configure(rm=...)``.

    Calling it with ``query`` (a string, or a list of strings whose results are merged by best
    score) returns a Prediction with ``passages`` (the texts, best first) and ``documents``
    (the :class:`~elixirml.retrievers.Passage` objects with ids and scores).
    """

    k = Variable.int(default=3, low=1, high=20, description="passages retrieved per query")

    def __init__(self, k: int | Variable = 3, retriever: Retriever | None = None) -> None:
        super().__init__()
        if isinstance(k, Variable):
            if k.kind != "int" or k.low is None or k.low < 1:
                raise ConfigurationError(f"Retrieve(k=...) takes an int or a Variable.int with low >= 1, got {k!r}")
            self.register_variable("k", k)
        else:
            self.k = k
        if retriever is not None and not isinstance(retriever, Retriever):
            raise ConfigurationError(
                "Retrieve(retriever=...) needs an object with search(query, k) and asearch(query, k), "
                f"got {retriever!r}"
            )
        self.retriever = retriever

    def _retriever(self) -> Retriever:
        retriever = self.retriever if self.retriever is not None else _settings.current().rm
        if retriever is None:
            raise ConfigurationError(
                "Retrieve has no retriever: pass one (em.Retrieve(k=3, retriever=em.retrievers.BM25(corpus))) "
                "or configure a default with em.configure(rm=...)"
            )
        return retriever

    async def aforward(self, query: str | list[str], k: int | None = None) -> Prediction:
        """The passages for ``query`` (``k`` overrides the variable for this call)."""
        retriever = self._retriever()
        count = self.k if k is None else k
        queries = [query] if isinstance(query, str) else list(query)
        if not queries or not all(isinstance(q, str) for q in queries):
            raise ConfigurationError(f"Retrieve takes a query string or a list of them, got {query!r}")
        import asyncio

        results = await asyncio.gather(*(retriever.asearch(q, count) for q in queries))
        best: dict[str, Any] = {}
        for passages in results:
            for passage in passages:
                key = passage.id or passage.text
                if key not in best or passage.score > best[key].score:
                    best[key] = passage
        documents = sorted(best.values(), key=lambda p: -p.score)[:count] if len(queries) > 1 else results[0]
        return Prediction(passages=[p.text for p in documents], documents=list(documents))
