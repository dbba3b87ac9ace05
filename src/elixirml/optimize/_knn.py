"""KNNFewShot: demos chosen per input, the trainset examples nearest to it."""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import ConfigurationError
from ..program import Module
from ..schema import Example
from ._base import OptimizationState, Optimizer

_WORD = re.compile(r"\w+", re.UNICODE)


def _text(example: Example | dict[str, Any], keys: Sequence[str] | None = None) -> str:
    values = example.inputs() if isinstance(example, Example) and example.input_keys is not None else example
    items = values.items() if keys is None else ((k, values[k]) for k in keys if k in values)
    return " | ".join(f"{k}: {v}" for k, v in items)


class LexicalIndex:
    """TF-IDF cosine similarity over word tokens: nearest neighbours that need no model."""

    def __init__(self, texts: Sequence[str]) -> None:
        docs = [Counter(w.lower() for w in _WORD.findall(t)) for t in texts]
        n = len(docs)
        frequency = Counter(w for d in docs for w in d)
        self._idf = {w: math.log((1 + n) / (1 + f)) + 1.0 for w, f in frequency.items()}
        self._vectors = [self._vector(d) for d in docs]

    def _vector(self, counts: Counter[str]) -> dict[str, float]:
        weights = {w: c * self._idf.get(w, math.log(1 + len(self._idf)) + 1.0) for w, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
        return {w: v / norm for w, v in weights.items()}

    def nearest(self, text: str, k: int) -> list[int]:
        query = self._vector(Counter(w.lower() for w in _WORD.findall(text)))
        scores = [sum(query.get(w, 0.0) * v for w, v in doc.items()) for doc in self._vectors]
        return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


class EmbeddingIndex:
    """Cosine similarity of embeddings from any ``embedder(texts) -> array (n, d)`` (an ``em.Embedder``)."""

    def __init__(self, texts: Sequence[str], embedder: Callable[[list[str]], Any]) -> None:
        self.embedder = embedder
        self._matrix = self._embed(list(texts))
        if self._matrix.shape[0] != len(texts):
            raise ConfigurationError(
                f"The embedder returned {self._matrix.shape[0]} vectors for {len(texts)} texts; it must return "
                "an array of shape (n, d)"
            )

    def _embed(self, texts: list[str]) -> Any:
        import numpy as np

        matrix = np.asarray(self.embedder(texts), dtype=float)
        if matrix.ndim != 2:
            raise ConfigurationError(f"The embedder must return a 2-d array (n, d), got shape {matrix.shape}")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix / np.where(norms == 0, 1.0, norms)

    def nearest(self, text: str, k: int) -> list[int]:
        scores = self._matrix @ self._embed([text])[0]
        return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))[:k]


class KNNProgram(Module):
    """A program whose every predictor gets, per call, the ``k`` trainset examples nearest the input as demos.

    Built by :class:`KNNFewShot`. ``last_demos`` holds the demos of the latest call.
    """

    def __init__(
        self,
        program: Module,
        trainset: Sequence[Example],
        k: int,
        index: LexicalIndex | EmbeddingIndex,
        keys: Sequence[str] | None,
    ) -> None:
        super().__init__()
        self.program = program
        self._trainset = list(trainset)
        self._k = k
        self._index = index
        self._keys = list(keys) if keys is not None else None
        self.last_demos: list[Example] = []

    def demos_for(self, **inputs: Any) -> list[Example]:
        """The trainset examples nearest these inputs (most similar first)."""
        query = _text(inputs, self._keys)
        return [self._trainset[i] for i in self._index.nearest(query, self._k)]

    async def aforward(self, **inputs: Any) -> Any:
        if isinstance(self._index, EmbeddingIndex):
            demos = await asyncio.to_thread(lambda: self.demos_for(**inputs))
        else:
            demos = self.demos_for(**inputs)
        self.last_demos = demos
        program = self.program.deepcopy()  # per call: concurrent calls never see each other's demos
        for _, predictor in program.named_predictors():
            predictor.demos = list(demos)
        return await program.acall(**inputs)


class KNNFewShot(Optimizer):
    """Demos chosen per input: the ``k`` trainset examples nearest to it (DSPy's ``KNNFewShot``).

    Similarity is lexical (TF-IDF cosine over words, no model needed) unless an ``embedder``
    is given: any callable ``embedder(texts: list[str]) -> numpy array (n, d)``, such as an
    ``em.Embedder``. The compiled program embeds each input and sets the demos of every
    predictor for that call only; no LM call is made while compiling.

    Args:
        k: demos per call.
        trainset: the labelled examples to choose from (``compile(trainset=...)`` may give them instead).
        vectorizer: DSPy's name for ``embedder``.
        embedder: the embedding function (default: lexical similarity).
        input_keys: the input fields compared (default: every input field of the example).
        **kwargs: as for :class:`Optimizer`.
    """

    name = "KNNFewShot"

    def __init__(
        self,
        k: int,
        trainset: Iterable[Example] | None = None,
        vectorizer: Callable[[list[str]], Any] | None = None,
        *,
        embedder: Callable[[list[str]], Any] | None = None,
        input_keys: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(kwargs.pop("metric", None), **kwargs)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigurationError(f"KNNFewShot needs k >= 1, got {k!r}")
        if vectorizer is not None and embedder is not None:
            raise ConfigurationError("Pass embedder= or DSPy's vectorizer=, not both")
        chosen = embedder or vectorizer
        if chosen is not None and not callable(chosen):
            raise ConfigurationError("embedder must be a callable embedder(texts) -> array of shape (n, d)")
        self.k = k
        self.trainset = [e if isinstance(e, Example) else Example(e) for e in trainset or []]
        self.embedder = chosen
        self.input_keys = input_keys

    def compile(
        self, program: Module | None = None, trainset: Iterable[Example] | None = None, *args: Any, **kwargs: Any
    ) -> Module:
        """As :meth:`Optimizer.compile`; the trainset defaults to the one given to the constructor."""
        return super().compile(program, trainset if trainset is not None else self.trainset, *args, **kwargs)

    def optimize_step(self, state: OptimizationState) -> bool:
        train = state.trainset
        if any(e.input_keys is None for e in train) and self.input_keys is None:
            raise ConfigurationError("KNNFewShot needs examples with inputs marked (.with_inputs(...)) or input_keys=")
        texts = [_text(e, self.input_keys) for e in train]
        index: LexicalIndex | EmbeddingIndex = (
            EmbeddingIndex(texts, self.embedder) if self.embedder is not None else LexicalIndex(texts)
        )
        state.best_program = KNNProgram(state.program.reset_copy(), train, self.k, index, self.input_keys)
        state.best_configuration = {"k": self.k, "similarity": "embedding" if self.embedder else "lexical"}
        return False
