"""KNNFewShot: demos chosen per input, the trainset examples nearest to it."""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import ConfigurationError, LoadError
from ..lm import Embedder, FunctionEmbedder, embedder_from_state, saveable_function
from ..program import Module, build_program, class_path, demo_from_json, demo_to_json, refuse_unsafe_lm_state
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

    It saves (``save``, ``em.load``, the store) with its trainset, ``k``, the input keys and the
    similarity: lexical, or an :class:`~elixirml.Embedder` described by its model. A function
    embedder (``em.Embedder(f)`` with a module-level ``f``) is found again among the loaded
    modules and the embedded local model is built again; an embedder that sends requests is
    never built from a file: give it to the loaded program with :meth:`set_embedder`.
    """

    def __init__(
        self,
        program: Module,
        trainset: Sequence[Example],
        k: int,
        index: LexicalIndex | EmbeddingIndex | None,
        keys: Sequence[str] | None,
    ) -> None:
        super().__init__()
        self.program = program
        self._trainset = list(trainset)
        self._k = k
        self._index = index
        self._keys = list(keys) if keys is not None else None
        self._awaited: dict[str, Any] | None = None  # the saved embedder a loaded program waits for
        self.last_demos: list[Example] = []

    def demos_for(self, **inputs: Any) -> list[Example]:
        """The trainset examples nearest these inputs (most similar first)."""
        if self._index is None:
            spec = self._awaited or {}
            raise ConfigurationError(
                f"This KNNProgram was saved with the embedder {spec.get('model')!r} ({spec.get('kind')}), which a "
                "saved file never builds (it would choose where requests go): give it in code with "
                f"program.set_embedder(em.Embedder({spec.get('model')!r}, ...))"
            )
        query = _text(inputs, self._keys)
        return [self._trainset[i] for i in self._index.nearest(query, self._k)]

    def set_embedder(self, embedder: Callable[[list[str]], Any]) -> KNNProgram:
        """Choose the demos by this embedder's similarity (the trainset is embedded again); returns self.

        Raises:
            ConfigurationError: the program was saved with another embedder model.
        """
        if self._awaited is not None:
            model = embedder.dump_state().get("model") if isinstance(embedder, Embedder) else None
            if model != self._awaited.get("model"):
                raise ConfigurationError(
                    f"This KNNProgram was saved with the embedder {self._awaited.get('model')!r}; give that model "
                    f"(got {model!r}): another model's vectors would choose other demos"
                )
        self._index = EmbeddingIndex([_text(e, self._keys) for e in self._trainset], embedder)
        self._awaited = None
        return self

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

    # ------------------------------------------------------------------ state
    def _similarity(self) -> dict[str, Any]:
        if self._awaited is not None:
            return {"kind": "embedding", "embedder": dict(self._awaited)}
        if not isinstance(self._index, EmbeddingIndex):
            return {"kind": "lexical"}
        embedder = self._index.embedder
        instead = (
            "pass embedder=em.Embedder(f) with a function f defined at module level, em.Embedder('local') or "
            "em.Embedder('openai/<model>', ...), or no embedder (lexical similarity)"
        )
        if not isinstance(embedder, Embedder):
            raise ConfigurationError(
                f"KNNFewShot's embedder {embedder!r} is a plain callable, which cannot be saved: {instead}"
            )
        if isinstance(embedder, FunctionEmbedder) and not saveable_function(embedder.function):
            raise ConfigurationError(
                f"KNNFewShot's embedder wraps {embedder.model}, a lambda or nested function that cannot be found "
                f"again when loading: {instead}"
            )
        return {"kind": "embedding", "embedder": embedder.dump_state()}

    def dump_state(self) -> dict[str, Any]:
        """As :meth:`Module.dump_state`, with the trainset, ``k``, input keys, similarity and inner program.

        Raises:
            ConfigurationError: the embedder cannot be saved (a plain callable, or a lambda).
        """
        state = super().dump_state()
        state["knn"] = {
            "k": self._k,
            "input_keys": self._keys,
            "similarity": self._similarity(),
            "examples": [demo_to_json(e) for e in self._trainset],  # user data: names in it are not settings
            "program": {"class": class_path(type(self.program)), "state": self.program.dump_state()},
        }
        return state

    def load_state(self, state: dict[str, Any], *, allow_unsafe_lm_state: bool = False) -> KNNProgram:
        """Load what :meth:`dump_state` wrote into this program (its inner program keeps its class and LM)."""
        refuse_unsafe_lm_state(allow_unsafe_lm_state)
        knn = _knn_state(state)
        self.program.load_state(knn["program"]["state"])
        self._set_from(knn)
        return self

    @classmethod
    def from_saved_state(cls, state: dict[str, Any]) -> KNNProgram:
        """Build a KNNProgram from a saved file's state (used by ``em.load`` and the store).

        Its inner program is built as ``em.load`` builds one (its class must be loaded).
        """
        knn = _knn_state(state)
        program = build_program(knn["program"])
        new = cls(program, [], 1, None, None)
        new._set_from(knn)
        return new

    def _set_from(self, knn: dict[str, Any]) -> None:
        try:
            self._k = int(knn["k"])
            self._keys = list(knn["input_keys"]) if knn["input_keys"] is not None else None
            self._trainset = [demo_from_json(d) for d in knn["examples"]]
            similarity = knn["similarity"]
            kind = similarity["kind"]
        except (KeyError, TypeError, ValueError) as exc:
            raise LoadError(f"Malformed KNNProgram state: {exc!r}") from None
        self._awaited = None
        if kind == "lexical":
            self._index = LexicalIndex([_text(e, self._keys) for e in self._trainset])
        elif kind == "embedding":
            embedder = embedder_from_state(similarity["embedder"])
            if embedder is None:
                self._index, self._awaited = None, dict(similarity["embedder"])
            else:
                self._index = EmbeddingIndex([_text(e, self._keys) for e in self._trainset], embedder)
        else:
            raise LoadError(f"Unknown KNNProgram similarity {kind!r}")


def _knn_state(state: dict[str, Any]) -> dict[str, Any]:
    knn = state.get("knn")
    if not isinstance(knn, dict) or not isinstance(knn.get("program"), dict):
        raise LoadError("State has no 'knn' section; was it written by KNNProgram.dump_state()?")
    return knn


class KNNFewShot(Optimizer):
    """Demos chosen per input: the ``k`` trainset examples nearest to it (DSPy's ``KNNFewShot``).

    Similarity is lexical (TF-IDF cosine over words, no model needed) unless an ``embedder``
    is given: any callable ``embedder(texts: list[str]) -> numpy array (n, d)``, such as an
    ``em.Embedder``. The compiled program embeds each input and sets the demos of every
    predictor for that call only; no LM call is made while compiling. The compiled
    :class:`KNNProgram` saves with its trainset (``save``, ``em.load``, the store) when its
    similarity is lexical or an ``em.Embedder``; a plain callable refuses to save.

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
