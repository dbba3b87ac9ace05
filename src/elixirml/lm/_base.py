"""The LM base class: one async request method, with cache, limits, retries and history.

``em.LM("provider/model", ...)`` builds the right subclass: ``"local"`` (embedded
llama.cpp), ``"openai/<model>"`` (any OpenAI-compatible server), ``"anthropic/<model>"``,
``"litellm/<provider>/<model>"``. Subclasses implement only the transport, :meth:`LM._send`.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from .. import settings as _settings
from ..errors import (
    CircuitOpenError,
    ConfigurationError,
    OutputError,
    ProviderError,
    ProviderTimeoutError,
    TruncatedResponseError,
)
from ..runtime import (
    CircuitBreaker,
    CompletionTexts,
    ConcurrencyLimiter,
    RateLimiter,
    RetryPolicy,
    aobserve_callbacks,
    run_sync,
)
from ._deadlines import LoopDeadlines
from ._settings import SETTING_NAMES, UNSENT_SETTINGS, MergedSettings, check_settings, merge_settings
from ._types import (
    Completion,
    LMResponse,
    Message,
    Usage,
    estimate_message_tokens,
    estimate_tokens,
    has_images,
    messages_length,
    messages_text,
)
from ._usage import open_budgets, price_for, record_usage, reserve_call

#: Characters of prompts and outputs that ``lm.history`` keeps at most (besides its count limit).
DEFAULT_HISTORY_BYTES = 16 * 1024 * 1024
# What every LM honours itself, whatever its provider declares.
_ALWAYS_HONOURED = UNSENT_SETTINGS | {"extra"}
# Why generation stopped when it reached the token limit (OpenAI and llama.cpp; Anthropic).
_TRUNCATED_REASONS = frozenset({"length", "max_tokens"})
# How often a call waiting on an open circuit breaker looks again while the probe is out.
_PROBE_POLL = 0.05


def _sendable(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings a provider receives: everything but the cache-only keys (a copy either way)."""
    if UNSENT_SETTINGS.isdisjoint(settings):
        return settings.copy()
    return {k: v for k, v in settings.items() if k not in UNSENT_SETTINGS}


def _entry_size(messages: list[Message], outputs: list[str]) -> int:
    """The characters of a history entry's prompt and outputs (what makes an entry big)."""
    return messages_length(messages) + sum(map(len, outputs))


class History(collections.deque[dict[str, Any]]):
    """An LM's recent calls, bounded by count (``maxlen``) and by size (``max_bytes``).

    Oldest entries go first. The newest entry is always kept, even when it alone is bigger
    than ``max_bytes``. Size is counted in characters of the prompt and the outputs.
    """

    def __init__(
        self, iterable: Iterable[dict[str, Any]] = (), maxlen: int | None = None, *, max_bytes: int | None = None
    ) -> None:
        super().__init__(maxlen=maxlen)
        self.max_bytes = max_bytes
        self.bytes = 0
        self._sizes: collections.deque[int] = collections.deque(maxlen=maxlen)
        for entry in iterable:
            self.append(entry)

    def add(self, entry: dict[str, Any], size: int) -> None:
        """Append ``entry`` of ``size`` characters, dropping the oldest entries over either limit."""
        sizes = self._sizes
        if len(sizes) == self.maxlen:  # full: appending drops the oldest entry (and its size)
            if not self.maxlen:
                return
            self.bytes -= sizes[0]
        collections.deque.append(self, entry)
        sizes.append(size)
        self.bytes += size
        if self.max_bytes is not None:
            while self.bytes > self.max_bytes and len(self) > 1:
                self.popleft()

    def append(self, entry: dict[str, Any]) -> None:
        """Append a history entry (its size measured from its ``messages`` and ``outputs``)."""
        self.add(entry, _entry_size(entry.get("messages") or [], list(entry.get("outputs") or [])))

    def popleft(self) -> dict[str, Any]:
        """Remove and return the oldest entry."""
        entry = super().popleft()
        self.bytes -= self._sizes.popleft()
        return entry

    def clear(self) -> None:
        """Forget every entry."""
        super().clear()
        self._sizes.clear()
        self.bytes = 0


def is_truncated(response: LMResponse) -> bool:
    """Whether a completion of ``response`` stopped at the token limit."""
    for completion in response.completions:  # noqa: SIM110 (a loop, not any(...): this runs on every answer)
        if completion.finish_reason in _TRUNCATED_REASONS:
            return True
    return False


def check_complete(response: LMResponse, endpoint: str) -> None:
    """Raise :class:`~elixirml.errors.TruncatedResponseError` if a completion stopped at the token limit."""
    for completion in response.completions:
        if completion.finish_reason in _TRUNCATED_REASONS:
            tail = " ".join(completion.text[-80:].split())
            raise TruncatedResponseError(
                f"{endpoint}: the model never ended its answer: it was still writing at the token limit "
                f"(finish_reason {completion.finish_reason!r}) after {len(completion.text)} characters, "
                f"ending {tail!r}. More tokens rarely help a model that rambles or repeats itself: ask for a "
                "short answer in the instructions or the field's desc, add demos with short answers, use a "
                "prompt format whose ends stop the answer (adapter='plain' or 'chat' send stop sequences), or "
                "use a stronger LM. Only if a complete answer is really longer: raise max_tokens, or let the "
                "retry policy grow it: retry=RetryPolicy(grow_max_tokens=2.0).",
                completion=completion.text,
            )


async def _sleep(seconds: float) -> None:
    """``asyncio.sleep``: asyncio is imported by the first call that waits, not by ``import elixirml``."""
    import asyncio

    await asyncio.sleep(seconds)


def _judge(breaker: CircuitBreaker, exc: ProviderError, probe: bool) -> None:
    """Tell the circuit breaker what a failed attempt says about the endpoint."""
    if isinstance(exc, TruncatedResponseError):
        breaker.record_success()  # the endpoint answered; the model ran out of tokens
    elif exc.status == 429:
        if probe:
            breaker.release_probe()  # busy, not broken: no verdict
    else:
        breaker.record_failure(probe=probe)


def resolve_cache(choice: Any, default_cache: bool, opened: dict[str, Any]) -> Any:
    """The :class:`~elixirml.lm.Cache` a client's ``cache=`` choice names, or None for none.

    ``None`` follows ``em.configure(cache=...)`` (when ``default_cache``); ``False`` is none;
    ``True`` is the default location; a path or a ``Cache`` selects one. Caches opened from a
    path are kept in ``opened`` (one per path and client).
    """
    if choice is None:
        choice = _settings.current().cache if default_cache else False
    if choice is False or choice is None:
        return None
    from ._cache import Cache

    if isinstance(choice, Cache):
        return choice
    key = "" if choice is True else str(choice)
    cache = opened.get(key)
    if cache is None:
        cache = Cache(None if choice is True else choice)
        opened[key] = cache
    return cache


def _resolve_class(model: str) -> type[LM]:
    """The LM class of ``model``'s provider, found in the extensions registry (group ``elixirml.lms``)."""
    from .. import extensions

    provider, sep, _ = model.partition("/")
    if not sep and provider != "local":
        raise ConfigurationError(
            f"LM model {model!r} names no provider. Use '<provider>/<model>' with one of the installed "
            f"providers {extensions.names('lms')}: 'local', 'openai/<model>', 'anthropic/<model>', "
            "'litellm/<provider>/<model>'."
        )
    if provider not in extensions.names("lms"):
        raise ConfigurationError(
            f"Unknown LM provider {provider!r} in {model!r}. Installed: {extensions.names('lms')}. "
            "For other OpenAI-compatible servers use 'openai/<model>' with base_url=...; for others, "
            "install a package that provides the provider (entry-point group 'elixirml.lms')."
        )
    cls = extensions.get("lms", provider)
    if not (isinstance(cls, type) and issubclass(cls, LM)):
        raise ConfigurationError(
            f"The LM provider extension {provider!r} provides {cls!r}, which is not an em.LM subclass; "
            "an 'elixirml.lms' extension must provide a subclass of elixirml.LM"
        )
    return cls


class _Pieces:
    """Where a streamed request hands its pieces (to :meth:`LM.astream`'s reader), and whether one went."""

    __slots__ = ("_put", "started")

    def __init__(self, put: Callable[[str], Any]) -> None:
        self._put = put
        self.started = False

    def put(self, piece: str) -> None:
        """Hand ``piece`` to the reader."""
        self.started = True
        self._put(piece)


class LM:
    """A language model client.

    Args:
        model: ``"local"``, ``"openai/<model>"``, ``"anthropic/<model>"`` or
            ``"litellm/<provider>/<model>"``.
        temperature: default sampling temperature.
        max_tokens: default cap on generated tokens (every request carries one).
        cache: ``None`` follows ``em.configure(cache=...)``; ``False`` disables; ``True`` uses
            the default location; a path or a :class:`~elixirml.lm.Cache` selects one.
        max_concurrency: most requests in flight at once (per event loop).
        rpm: requests-per-minute limit.
        tpm: tokens-per-minute limit (prompt estimate plus ``max_tokens``).
        num_retries: most retries of a failed request (0: none). The default (None) retries
            transient failures for up to 60 s per call, with capped exponential backoff.
        retry: a :class:`~elixirml.runtime.RetryPolicy` (overrides ``num_retries``);
            ``RetryPolicy(max_time=...)`` sets the time bound of the retries.
        timeout: seconds before one attempt is abandoned.
        fallbacks: LMs to try, in order, when this one fails after its retries.
        price: ``(input, output)`` price in dollars per million tokens; overrides the table.
        circuit_breaker: ``False`` to disable, or a :class:`~elixirml.runtime.CircuitBreaker`.
        history_size: recent calls kept in :attr:`history` (default from settings).
        history_bytes: most characters of prompts and outputs kept in :attr:`history`
            (default 16 MiB; the newest call is always kept).
        **defaults: more default request settings (``top_p``, ``stop``, ``seed``, ``extra``, ...;
            see :class:`~elixirml.lm.RequestSettings`). An unknown name raises
            :class:`~elixirml.errors.ConfigurationError`, as does one the provider cannot honour.

    Attributes:
        supported_settings: the request settings this provider honours (a class attribute;
            ``cache`` and ``rollout_id`` are honoured by every LM). A request with any other
            setting raises :class:`~elixirml.errors.ConfigurationError`: nothing is dropped.
        supported_extras: the names allowed in the ``extra`` setting, or ``None`` when any
            extra passes through to the provider.
    """

    provider = "base"
    supported_settings: frozenset[str] = frozenset({"max_tokens"})
    supported_extras: frozenset[str] | None = frozenset()
    _setting_notes: Mapping[str, str] = {}  # why a provider cannot honour a setting, where it is worth saying
    supports_json_schema = False
    supports_tools = False
    #: Whether the provider takes image content parts (``em.Image`` inputs); others refuse them.
    supports_images = False
    supports_logprobs = False
    supports_scoring = False
    default_adapter = "chat"
    #: Prompt format and decoding for a predictor whose only output is a closed set (``Literal``,
    #: enum, ``bool``) when it names neither (``None``: the default adapter).
    closed_set_adapter: str | None = None
    closed_set_decoding = "generate"
    default_cache = True

    def __new__(cls, *args: Any, **kwargs: Any) -> LM:
        if cls is LM:
            model = args[0] if args else kwargs.get("model")
            if not isinstance(model, str):
                raise ConfigurationError("em.LM(model) needs a model name such as 'local' or 'openai/gpt-4o-mini'")
            return object.__new__(_resolve_class(model))
        return object.__new__(cls)

    def __init__(
        self,
        model: str,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache: Any = None,
        max_concurrency: int | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        num_retries: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        fallbacks: list[LM] | None = None,
        price: tuple[float, float] | None = None,
        circuit_breaker: CircuitBreaker | bool = True,
        history_size: int | None = None,
        history_bytes: int | None = DEFAULT_HISTORY_BYTES,
        **defaults: Any,
    ) -> None:
        self.model = model
        where = f"{type(self).__name__}({model!r})"
        self.defaults: dict[str, Any] = dict(
            check_settings({**defaults, "temperature": temperature, "max_tokens": max_tokens}, where=where)
        )
        self.check_supported(self.defaults, where=where)
        self.cache = cache
        self.timeout = timeout
        self.fallbacks = list(fallbacks or [])
        self.price = price
        self.retry = retry if retry is not None else RetryPolicy(num_retries)
        self.limiter = ConcurrencyLimiter(max_concurrency)
        self.rate_limiter = RateLimiter(rpm, tpm)
        if circuit_breaker is True:
            self.breaker: CircuitBreaker | None = CircuitBreaker(self.endpoint_label)
        elif circuit_breaker is False:
            self.breaker = None
        else:
            self.breaker = circuit_breaker
        size = history_size if history_size is not None else _settings.current().history_size
        self.history = History(maxlen=size, max_bytes=history_bytes)
        self.usage = Usage()
        self._caches: dict[str, Any] = {}

    # ------------------------------------------------------------------ identity
    @property
    def endpoint_label(self) -> str:
        """A label for the endpoint (no secrets), used by the circuit breaker and logs."""
        return self.model

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    def __deepcopy__(self, memo: dict[int, Any]) -> LM:
        return self  # clients hold connections and locks; copies of a program share them

    def dump_state(self) -> dict[str, Any]:
        """A JSON-ready description: the model and non-secret defaults (never keys or URLs)."""
        return {"model": self.model, "defaults": dict(self.defaults)}

    # ------------------------------------------------------------------ description (the same LM elsewhere)
    def describe(self) -> dict[str, Any]:
        """Plain JSON data from which :meth:`from_description` builds the same LM in another process.

        It holds the model, the provider's options (base URL, ...), the default settings, the
        timeout, the retry policy, the rate limit, the circuit breaker's policy, the history bounds
        and the fallbacks' descriptions. It never holds a key, headers or a URL with credentials:
        those are :meth:`secret_options`, and an LM built without a key reads its provider's
        environment variable where it runs (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ...).

        Raises:
            ConfigurationError: the LM cannot be described as data (it calls a Python function,
                its class is not its provider's registered one, a setting is not plain data).
        """
        where = f"{type(self).__name__}({self.model!r})"
        try:
            registered = _resolve_class(self.model)
        except ConfigurationError:
            registered = None
        if registered is not type(self):
            raise ConfigurationError(
                f"{where} cannot be described as data: its class is not the registered class of its provider "
                f"(em.LM({self.model!r}) would build {registered.__name__ if registered else 'nothing'})"
            )
        options: dict[str, Any] = {
            **self.defaults,
            "cache": self._described_cache(where),
            "max_concurrency": self.limiter.limit,
            "rpm": self.rate_limiter.rpm,
            "tpm": self.rate_limiter.tpm,
            "timeout": self.timeout,
            "price": list(self.price) if self.price is not None else None,
            "history_size": self.history.maxlen,
            "history_bytes": self.history.max_bytes,
            **self._provider_options(),
        }
        retry = self.retry
        breaker = self.breaker
        description = {
            "model": self.model,
            "options": options,
            "rate_window": self.rate_limiter.window,
            "retry": {
                "retries": retry.retries,
                "base_delay": retry.base_delay,
                "max_delay": retry.max_delay,
                "max_time": retry.max_time,
                "truncation_retries": retry.truncation_retries,
                "grow_max_tokens": retry.grow_max_tokens,
            },
            "breaker": None
            if breaker is None
            else {
                "endpoint": breaker.endpoint,
                "failure_threshold": breaker.failure_threshold,
                "reset_timeout": breaker.reset_timeout,
                "max_reset_timeout": breaker.max_reset_timeout,
            },
            "fallbacks": [fallback.describe() for fallback in self.fallbacks],
        }
        try:
            return dict(json.loads(json.dumps(description, allow_nan=False)))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{where} cannot be described as plain data: {exc}") from None

    def _described_cache(self, where: str) -> Any:
        from ._cache import Cache

        choice = self.cache
        if isinstance(choice, Cache):
            if choice.path is None:
                raise ConfigurationError(f"{where} cannot be described as data: its cache is in this process' memory")
            return str(choice.path)
        return choice if choice is None or isinstance(choice, bool) else str(choice)

    def _provider_options(self) -> dict[str, Any]:
        """The provider's own constructor options that :meth:`describe` carries (plain data, no secrets)."""
        return {}

    def secret_options(self) -> dict[str, Any]:
        """The constructor options :meth:`describe` leaves out because they may hold credentials.

        An explicit ``api_key``, ``headers``, a base URL with credentials in it; ``{"fallbacks": [...]}``
        holds the fallbacks' own. Empty for an LM that reads its key from the environment.
        """
        secrets = self._provider_secrets()
        fallbacks = [fallback.secret_options() for fallback in self.fallbacks]
        if any(fallbacks):
            secrets["fallbacks"] = fallbacks
        return secrets

    def _provider_secrets(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_description(cls, description: Mapping[str, Any], secrets: Mapping[str, Any] | None = None) -> LM:
        """The LM that :meth:`describe` described, with ``secrets`` (:meth:`secret_options`) added.

        Raises:
            ConfigurationError: the description names an unknown provider or a setting it cannot honour.
        """
        secrets = dict(secrets or {})
        secret_fallbacks = list(secrets.pop("fallbacks", None) or [])
        fallbacks = [
            LM.from_description(part, secret_fallbacks[i] if i < len(secret_fallbacks) else None)
            for i, part in enumerate(description.get("fallbacks") or [])
        ]
        breaker = description.get("breaker")
        options = dict(description["options"])
        if isinstance(options.get("price"), list):
            options["price"] = tuple(options["price"])
        lm = LM(
            description["model"],
            retry=RetryPolicy(**description["retry"]),
            circuit_breaker=CircuitBreaker(**breaker) if breaker else False,
            fallbacks=fallbacks,
            **options,
            **secrets,
        )
        lm.rate_limiter = RateLimiter(lm.rate_limiter.rpm, lm.rate_limiter.tpm, description["rate_window"])
        return lm

    # ------------------------------------------------------------------ settings and cache
    def merge_settings(
        self,
        *,
        forced: Mapping[str, Any] | None = None,
        call: Mapping[str, Any] | None = None,
        bound: Mapping[str, Any] | None = None,
        predictor: Mapping[str, Any] | None = None,
        owner: Any = None,
    ) -> MergedSettings:
        """The settings of one request to this LM: every layer checked, then merged once.

        The layers are those of :func:`~elixirml.lm.merge_settings`; this LM adds its defaults
        and the process settings. Each layer is checked (names, types, and what this LM's
        provider honours), so an error names the setting, its value and the layer.

        Args:
            forced: settings forced by a wrapper (BestOfN, Refine, bootstrapping).
            call: per-call settings (``config=`` of a call, ``lm.request(**settings)``).
            bound: settings bound from Variables.
            predictor: the predictor's own ``config``.
            owner: what the settings are for, named in errors (default: this LM).

        Raises:
            ConfigurationError: a setting that is not valid, or that this LM cannot honour.
        """
        merged: MergedSettings = merge_settings(  # type: ignore[assignment]
            forced=forced,
            call=call,
            bound=bound,
            predictor=predictor,
            lm=self.defaults,
            process={"max_tokens": _settings.current().max_tokens},
            supported=self.check_supported,
            owner=self if owner is None else owner,
        )
        merged.checked_for = self
        return merged

    def effective_settings(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Process settings, then this LM's defaults, then ``overrides``, checked (see :meth:`merge_settings`)."""
        return self.merge_settings(call=overrides)

    def check_supported(self, settings: Mapping[str, Any], *, where: str | None = None) -> None:
        """Raise :class:`~elixirml.errors.ConfigurationError` unless this LM honours every setting.

        Args:
            settings: request settings (merged or not).
            where: where the settings come from, for the message (default: this LM's class).
        """
        supported = self.supported_settings
        for key in settings:
            if key not in supported and key not in _ALWAYS_HONOURED:
                self._refuse(key, where)
        extra = settings.get("extra")
        if extra:
            for key in extra:
                if key in supported or (key in SETTING_NAMES and key in settings):
                    prefix = f"{where}: " if where else ""
                    raise ConfigurationError(
                        f"{prefix}extra[{key!r}] (value {extra[key]!r}) names the request setting {key!r}, which "
                        f"{type(self).__name__} takes by name: pass {key}=... instead of putting it in extra, "
                        "so it is checked and merged like every setting."
                    )
                if self.supported_extras is not None and key not in self.supported_extras:
                    self._refuse(key, where, extra=True)

    def _refuse(self, key: str, where: str | None, *, extra: bool = False) -> None:
        name = type(self).__name__
        prefix = f"{where}: " if where else ""
        if extra:
            allowed = ", ".join(sorted(self.supported_extras or ())) or "none"
            raise ConfigurationError(
                f"{prefix}{name} cannot honour the provider setting extra[{key!r}]; "
                f"the extras it takes: {allowed}. Remove it, or use an LM whose provider takes it."
            )
        if key not in SETTING_NAMES:
            raise ConfigurationError(
                f"{prefix}unknown request setting {key!r} for {name}. Known settings: "
                f"{', '.join(sorted(SETTING_NAMES))}; put provider-specific ones in extra={{...}}."
            )
        note = self._setting_notes.get(key)
        raise ConfigurationError(
            f"{prefix}{name} cannot honour the request setting {key!r}{f' ({note})' if note else ''}; "
            f"it honours: {', '.join(sorted(self.supported_settings))}. "
            "Remove the setting, or use an LM that supports it."
        )

    def _resolve_cache(self, choice: Any) -> Any:
        return resolve_cache(self.cache if choice is None else choice, self.default_cache, self._caches)

    def _cached(self, choice: Any, messages: list[Message], settings: dict[str, Any]) -> tuple[Any, str]:
        """The cache in force for this request and the request's key in it (``(None, "")`` without one)."""
        cache = self._resolve_cache(choice)
        return (cache, cache.key(self.model, messages, settings)) if cache is not None else (None, "")

    def stream_settings(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Effective settings for a streamed request (without the cache-only keys); unsupported ones raise.

        A stream carries one completion's text, so ``n > 1``, ``logprobs`` and ``tools`` raise too.
        """
        return _sendable(self._check_streamable(self.merge_settings(call=overrides)))

    def _check_streamable(self, settings: dict[str, Any]) -> dict[str, Any]:
        lost = [k for k in ("logprobs", "top_logprobs", "tools") if settings.get(k)]
        if settings.get("n", 1) != 1:
            lost.insert(0, "n")
        if lost:
            raise ConfigurationError(
                f"{type(self).__name__}: a streamed request returns one completion's text, so it cannot honour "
                f"{', '.join(repr(k) for k in lost)}. Call without streaming to use them."
            )
        return settings

    def _settings_for(self, settings: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """``settings`` if merged already (by :meth:`merge_settings`), else merged with ``overrides`` as one layer."""
        if type(settings) is MergedSettings and not overrides:
            return settings
        if settings:
            overrides = {**settings, **overrides}
        return self.merge_settings(call=overrides)

    # ------------------------------------------------------------------ requests
    async def arequest(
        self,
        messages: list[Message],
        *,
        validate: Callable[[LMResponse], Any] | None = None,
        allow_truncated: bool = False,
        settings: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> LMResponse:
        """Send a chat request and return the response.

        Args:
            messages: OpenAI-style chat messages.
            validate: called on the response before it is cached; if it raises, nothing is
                cached and the exception propagates (adapters pass their parser). A
                :class:`~elixirml.errors.TruncatedResponseError` it raises is retried per the
                retry policy, as is an answer that stopped at the token limit; only complete,
                validated answers are cached.
            allow_truncated: return an answer that stopped at the token limit as it is (its
                completion's ``finish_reason`` says so) instead of retrying it and raising
                :class:`~elixirml.errors.TruncatedResponseError`: for free text where a cut-off
                answer is still of use, such as GEPA's reflections. It is not cached.
            settings: settings merged already by :meth:`merge_settings` (what ``Predict``
                passes): sent as they are, checked only against this provider. A plain dict
                here is the per-call layer, as keywords are.
            **overrides: request settings for this call (``temperature``, ``max_tokens``,
                ``n``, ``response_format``, ``tools``, ``logprobs``, ``rollout_id``, ``cache``;
                see :class:`~elixirml.lm.RequestSettings`).

        Raises:
            ConfigurationError: a setting that is not valid (naming it, its value and its
                layer), or one this LM's provider cannot honour.
        """
        if type(settings) is MergedSettings and not overrides:
            merged: dict[str, Any] = settings  # what Predict passes: merged and checked once, not again
        else:
            merged = self._settings_for(settings, overrides)
        if _settings.callbacks_configured and (callbacks := _settings.current().callbacks):
            inputs = {"prompt": None, "messages": messages, "kwargs": dict(merged)}
            texts = await aobserve_callbacks(
                callbacks,
                "lm",
                self,
                inputs,
                functools.partial(self._observed_request, messages, validate, merged, allow_truncated),
            )
            response: LMResponse = texts.response
            return response
        return await self._request(messages, validate, merged, allow_truncated)

    async def _observed_request(
        self,
        messages: list[Message],
        validate: Callable[[LMResponse], Any] | None,
        settings: dict[str, Any],
        allow_truncated: bool,
    ) -> CompletionTexts:
        response = await self._request(messages, validate, settings, allow_truncated)
        return CompletionTexts([c.text for c in response.completions], response)

    def _prepare_request(self, messages: list[Message], settings: dict[str, Any]) -> tuple[Any, str, dict[str, Any]]:
        """Check merged settings against this provider and find the cache: ``(cache, key, keyed settings)``."""
        if getattr(settings, "checked_for", None) is not self:  # an adapter's or another LM's additions
            self.check_supported(settings)
        if not self.supports_images and has_images(messages):
            raise ConfigurationError(
                f"{self.endpoint_label} cannot take images, and the request has an em.Image input. "
                "Use an LM whose provider takes images (openai/..., anthropic/..., litellm/...)."
            )
        keyed = settings
        if "cache" in settings:
            keyed = {k: v for k, v in settings.items() if k != "cache"}
        cache, key = self._cached(settings.get("cache"), messages, keyed)
        return cache, key, keyed

    def _cache_hit(self, cache: Any, key: str, validate: Callable[[LMResponse], Any] | None) -> LMResponse | None:
        hit: LMResponse | None = cache.get(key) if cache is not None else None
        if hit is None:
            return None
        try:
            if is_truncated(hit):
                check_complete(hit, self.endpoint_label)
            if validate is not None:
                validate(hit)
        except TruncatedResponseError:
            return None  # a cut-off answer stored by an older version: ask again
        except OutputError as exc:
            exc.usage = hit.usage  # what the answer cost (a hit: nothing but the cached call)
            raise
        return hit

    async def _request(
        self,
        messages: list[Message],
        validate: Callable[[LMResponse], Any] | None,
        settings: dict[str, Any],
        allow_truncated: bool,
        pieces: _Pieces | None = None,
    ) -> LMResponse:
        """The body of :meth:`arequest` (what callbacks observe); ``settings`` are merged and checked.

        The one path of a request and a stream (``pieces`` takes a stream's pieces as they come):
        cache, call budget, the policies of :meth:`_send_with_policies`, fallbacks, usage and history.
        """
        cache, key, keyed = self._prepare_request(messages, settings)
        hit = self._cache_hit(cache, key, validate) if cache is not None else None
        if hit is not None:
            self._record(messages, keyed, hit)
            return hit
        send_settings = _sendable(keyed)
        if open_budgets():
            await reserve_call()
        accept = _Accept(self, messages, keyed, validate, allow_truncated)
        try:
            response = await self._send_with_policies(messages, send_settings, accept, pieces)
        except ProviderError:
            if not self.fallbacks or (pieces is not None and pieces.started):  # a stream under way stays here
                raise
            response = await self._try_fallbacks(messages, settings, validate, allow_truncated, pieces)
            return response
        if cache is not None and not is_truncated(response):
            cache.put(key, response)  # only complete, validated answers get here
        return response

    def request(self, messages: list[Message], **overrides: Any) -> LMResponse:
        """Synchronous :meth:`arequest`."""
        return run_sync(self.arequest(messages, **overrides))

    def __call__(
        self, prompt: str | None = None, *, messages: list[Message] | None = None, **overrides: Any
    ) -> list[str]:
        """Ask with a prompt (or messages); returns the completion texts (DSPy's ``lm(...)``)."""
        if messages is None:
            if prompt is None:
                raise ConfigurationError("Pass a prompt or messages=[...]")
            messages = [{"role": "user", "content": prompt}]
        return [c.text for c in self.request(messages, **overrides).completions]

    async def _try_fallbacks(
        self,
        messages: list[Message],
        settings: dict[str, Any],
        validate: Callable[[LMResponse], Any] | None,
        allow_truncated: bool,
        pieces: _Pieces | None = None,
    ) -> LMResponse:
        """Ask each fallback in turn with the settings this LM merged (a fallback refuses what it cannot honour)."""
        last: ProviderError | None = None
        merged = settings if type(settings) is MergedSettings else MergedSettings(settings)
        for fallback in self.fallbacks:
            try:
                if pieces is not None:  # a stream that failed before its first piece: the fallback streams it
                    return await fallback._request(messages, validate, merged, allow_truncated, pieces)
                return await fallback.arequest(
                    messages, validate=validate, allow_truncated=allow_truncated, settings=merged
                )
            except ProviderError as exc:
                if pieces is not None and pieces.started:
                    raise
                last = exc
        assert last is not None
        raise last

    async def _send_with_policies(
        self,
        messages: list[Message],
        settings: dict[str, Any],
        accept: Callable[[LMResponse], Any] | None = None,
        pieces: _Pieces | None = None,
    ) -> LMResponse:
        """Send under this LM's policies: circuit breaker, rate and concurrency limits, timeout, retries.

        ``accept(response)`` runs on every answer before it counts as a success: a
        :class:`~elixirml.errors.ProviderError` it raises (a cut-off answer) is retried like a
        failed request; any other exception propagates. A call that meets an open circuit
        breaker waits for it (within the retry policy's ``max_time``) unless the LM has
        fallbacks to go to or its policy does not retry.

        With ``pieces``, each attempt is a stream (:meth:`_stream_attempt`, whose ``timeout``
        bounds each piece): the same policies, and a failure is retried only before the first piece.
        """
        policy = self.retry
        breaker = self.breaker
        started = time.monotonic()
        attempt = truncations = 0
        while True:
            probe = False
            if breaker is not None:
                try:
                    probe = breaker.before_request()
                except CircuitOpenError as exc:
                    await self._wait_for_breaker(exc, started)
                    continue
            try:
                if self.rate_limiter.active:
                    tokens = estimate_message_tokens(messages) + int(settings.get("max_tokens", 0))
                    await self.rate_limiter.acquire(tokens)
                sem = None if self.limiter.limit is None else self.limiter.semaphore()
                start = time.perf_counter()
                if pieces is not None:
                    if sem is None:
                        response = await self._stream_attempt(messages, settings, pieces)
                    else:
                        async with sem:
                            response = await self._stream_attempt(messages, settings, pieces)
                elif sem is None and self.timeout is None:
                    response = await self._send(messages, settings)  # the common case: no wrapper coroutine
                elif sem is None:
                    response = await self._send_timed(messages, settings)
                else:
                    async with sem:
                        response = await self._send_timed(messages, settings)
                response.latency = time.perf_counter() - start
                if accept is not None:
                    accept(response)
            except ProviderError as exc:
                if breaker is not None:
                    _judge(breaker, exc, probe)
                truncated = isinstance(exc, TruncatedResponseError)
                wait = None
                if pieces is not None and pieces.started:
                    raise  # part of the answer reached the reader: nothing can be asked again
                if exc.retryable and not (truncated and truncations >= policy.truncation_retries):
                    # a cut-off answer is retried at once: the endpoint is not overloaded
                    wait = policy.next_delay(attempt, time.monotonic() - started, 0.0 if truncated else exc.retry_after)
                if wait is None:
                    raise
                if truncated:
                    truncations += 1
                    settings = self._grow_max_tokens(settings)
                await _sleep(wait)
                attempt += 1
                continue
            except OutputError:
                if breaker is not None:
                    breaker.record_success()  # the endpoint answered; the answer is what is wrong
                raise
            except BaseException:
                if probe and breaker is not None:
                    breaker.release_probe()  # cancelled, or failed in our own code: no verdict
                raise
            if breaker is not None:
                breaker.record_success()
            return response

    async def _wait_for_breaker(self, exc: CircuitOpenError, started: float) -> None:
        """Sleep until the open breaker may let a request through, or raise ``exc`` if this call should not wait.

        It should not when the LM has fallbacks to go to, when its retry policy does not retry,
        or when the wait would end after the policy's ``max_time``.
        """
        wait = exc.reopens_in if exc.reopens_in > 0 else _PROBE_POLL  # 0: a probe is out
        if self.fallbacks or not self.retry.enabled or not self.retry.fits(time.monotonic() - started, wait):
            raise exc
        await _sleep(wait)

    def _grow_max_tokens(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The settings for retrying a cut-off answer: ``max_tokens`` grown by the retry policy's factor."""
        factor = self.retry.grow_max_tokens
        limit = settings.get("max_tokens")
        if factor <= 1.0 or not isinstance(limit, int):
            return settings
        return {**settings, "max_tokens": max(limit + 1, int(limit * factor))}

    async def _send_timed(self, messages: list[Message], settings: dict[str, Any]) -> LMResponse:
        """:meth:`_send` within the LM's ``timeout`` (one timer for all of this LM's requests on a loop)."""
        if self.timeout is None:
            return await self._send(messages, settings)
        import asyncio

        task = asyncio.current_task()
        loop_deadlines: LoopDeadlines | None = self.__dict__.get("_deadlines")
        if loop_deadlines is None:
            loop_deadlines = self.__dict__.setdefault("_deadlines", LoopDeadlines())
        deadlines = loop_deadlines.of(task.get_loop()) if task is not None else None
        deadline = deadlines.start(task, self.timeout) if deadlines is not None and task is not None else None
        if deadlines is None or deadline is None:  # not in a task, or the timeout was lowered meanwhile
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._send(messages, settings)
            except TimeoutError:
                raise self._timed_out() from None
        try:
            return await self._send(messages, settings)
        except asyncio.CancelledError:
            if deadline.timed_out():
                raise self._timed_out() from None
            raise
        finally:
            deadlines.end(deadline)

    def _timed_out(self) -> ProviderTimeoutError:
        return ProviderTimeoutError(f"{self.endpoint_label}: no answer within {self.timeout}s (timeout=...)")

    async def _send(self, messages: list[Message], settings: dict[str, Any]) -> LMResponse:
        """Transport: send one request and return the response. Subclasses implement this."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _send")

    async def ascore(
        self, messages: list[Message], prefix: str, continuations: list[str], *, cache: Any = None
    ) -> list[float]:
        """Log-probability of each continuation after the messages and an assistant ``prefix``.

        Only LMs with ``supports_scoring`` can do it. Results are cached like answers, and a
        scoring request counts as one LM call.
        """
        if not self.supports_scoring:
            raise ConfigurationError(
                f"{type(self).__name__} cannot score continuations by log-probability; "
                "use decoding='generate' or an LM with supports_scoring (em.LM('local'))"
            )
        if not continuations:
            return []
        settings = {"score_prefix": prefix, "continuations": list(continuations)}
        store, key = self._cached(cache, messages, settings)
        hit: LMResponse | None = store.get(key) if store is not None else None
        if hit is not None:
            self._record(messages, settings, hit)
            return [float(x) for x in json.loads(hit.text)]
        await reserve_call()
        start = time.perf_counter()
        scores = await self._score_send(messages, prefix, list(continuations))
        response = LMResponse(
            [Completion(text=json.dumps(scores))],
            Usage(prompt_tokens=estimate_tokens(messages_text(messages) + prefix), calls=1),
            self.model,
            latency=time.perf_counter() - start,
        )
        self._price(response)
        self._record(messages, settings, response)
        if store is not None:
            store.put(key, response)
        return scores

    async def _score_send(self, messages: list[Message], prefix: str, continuations: list[str]) -> list[float]:
        """Scoring transport; LMs with ``supports_scoring`` implement it."""
        raise NotImplementedError

    async def astream(
        self,
        messages: list[Message],
        *,
        validate: Callable[[LMResponse], Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> AsyncIterator[str]:
        """Yield the completion text in chunks as the model produces it.

        A stream takes the path of a request (:meth:`arequest`): its settings are merged and
        checked, a cached answer is yielded whole, it counts against the call budget, and it goes
        through the rate and concurrency limits, the circuit breaker, the retries and the
        fallbacks. Only the attempt differs: the provider's pieces are yielded as they come, so
        a failure is retried (or sent to a fallback) only before the first piece; the LM's
        ``timeout`` bounds the wait for each piece. The completed answer counts in usage and
        history and, once ``validate`` accepts it, is cached (an answer cut off at the token
        limit is yielded as it is, and not cached). LMs without native streaming yield the
        whole text as one chunk.

        Args:
            messages: OpenAI-style chat messages.
            validate: called on the completed response before it is cached (adapters parse it).
            settings: settings merged already by :meth:`merge_settings` (see :meth:`arequest`).
            **overrides: request settings for this call.

        Raises:
            ConfigurationError: a setting that is not valid, or that a stream cannot carry
                (``n > 1``, ``logprobs``, ``tools``).
        """
        import asyncio  # not at import time (see _sleep)

        merged = self._check_streamable(self._settings_for(settings, overrides))
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        pieces = _Pieces(queue.put_nowait)
        # The request runs in a task that hands each piece over; this generator yields them.
        task = asyncio.ensure_future(self._request(messages, validate, merged, True, pieces))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (piece := await queue.get()) is not None:
                yield piece
            response = await task
            if not pieces.started and response.text:
                yield response.text  # a cached answer, or one that came whole: one chunk
        finally:
            if not task.done():  # the reader stopped early: limits and the probe are released now
                task.cancel()
                await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved (it was raised above when the reader read to the end)

    async def _stream_attempt(self, messages: list[Message], settings: dict[str, Any], pieces: _Pieces) -> LMResponse:
        """One streamed attempt (the transport of a stream): :meth:`_stream`'s pieces go to ``pieces``.

        Each piece is awaited for at most the LM's ``timeout`` (an idle-read timeout). Returns
        the whole answer: the provider's final response, or one built from the pieces.
        """
        parts: list[str] = []
        final: LMResponse | None = None
        async with contextlib.aclosing(self._stream(messages, settings)) as stream:
            while True:
                try:
                    item = await self._next_item(stream)
                except StopAsyncIteration:
                    break
                if isinstance(item, LMResponse):
                    final = item
                    if not parts and item.text:  # the whole answer at once (a server that did not stream)
                        parts.append(item.text)
                        pieces.put(item.text)
                else:
                    parts.append(item)
                    pieces.put(item)
        text = "".join(parts)
        if final is None or final.text != text:
            finish = final.completions[0].finish_reason if final is not None and final.completions else "stop"
            final = LMResponse(
                [Completion(text=text, finish_reason=finish)],
                Usage(estimate_message_tokens(messages), estimate_tokens(text), calls=1),
                self.model,
            )
        return final

    async def _next_item(self, stream: AsyncGenerator[str | LMResponse, None]) -> str | LMResponse:
        """The stream's next item, waiting at most the LM's ``timeout`` (an idle-read timeout)."""
        if self.timeout is None:
            return await anext(stream)
        import asyncio

        try:
            async with asyncio.timeout(self.timeout):
                return await anext(stream)
        except TimeoutError:
            raise ProviderTimeoutError(
                f"{self.endpoint_label}: the stream sent nothing for {self.timeout}s (timeout=...)"
            ) from None

    async def _stream(
        self, messages: list[Message], settings: dict[str, Any]
    ) -> AsyncGenerator[str | LMResponse, None]:
        """Streaming transport: yield text pieces, then optionally the whole :class:`LMResponse`.

        An LMResponse with no pieces before it is a whole answer (yielded as one chunk). The
        default sends one request (:meth:`_send`) and yields its response; LMs that stream
        natively override this.
        """
        yield await self._send(messages, settings)

    # ------------------------------------------------------------------ accounting
    def _price(self, response: LMResponse) -> None:
        price = self.price or price_for(self.model)
        if price is not None:
            response.usage.cost = (
                response.usage.prompt_tokens * price[0] + response.usage.completion_tokens * price[1]
            ) / 1_000_000

    def _record(self, messages: list[Message], settings: dict[str, Any], response: LMResponse) -> None:
        self.usage.add(response.usage)
        if self.history.maxlen:
            outputs = [c.text for c in response.completions]
            entry = {
                "model": self.model,
                "messages": messages,
                "settings": settings,
                "outputs": outputs,
                "usage": response.usage.as_dict(),
                "cached": response.cached,
                "latency": response.latency,
                "timestamp": time.time(),
            }
            self.history.add(entry, _entry_size(messages, outputs))
        record_usage(response.usage, self.model)

    def inspect_history(self, n: int = 1) -> str:
        """Print and return the last ``n`` prompts and answers of this LM."""
        from ._usage import format_history

        text = format_history(list(self.history)[-n:])
        print(text)
        return text


class _Accept:
    """What each answer of one request goes through before it counts (the ``accept`` of ``_send_with_policies``).

    Priced, counted in usage and history, checked for a cut-off and then by ``validate``. An
    object, not a closure: one per request in flight, where a closure's cells are several.
    """

    __slots__ = ("allow_truncated", "keyed", "lm", "messages", "validate")

    def __init__(
        self,
        lm: LM,
        messages: list[Message],
        keyed: dict[str, Any],
        validate: Callable[[LMResponse], Any] | None,
        allow_truncated: bool,
    ) -> None:
        self.lm = lm
        self.messages = messages
        self.keyed = keyed
        self.validate = validate
        self.allow_truncated = allow_truncated

    def __call__(self, response: LMResponse) -> None:
        lm = self.lm
        lm._price(response)
        lm._record(self.messages, self.keyed, response)
        if not self.allow_truncated and is_truncated(response):
            check_complete(response, lm.endpoint_label)  # raises (the label is built only then)
        validate = self.validate
        if validate is not None:
            try:
                validate(response)
            except OutputError as exc:  # an answer paid for: its usage goes with the error (for re-asks)
                exc.usage = response.usage
                raise


def completion_response(texts: list[str], messages: list[Message], model: str) -> LMResponse:
    """Build a response from plain texts, with estimated usage (for LMs that count no tokens)."""
    completion_tokens = 0
    completions = []
    for text in texts:
        completion_tokens += estimate_tokens(text)
        completions.append(Completion(text, None, None, "stop"))
    return LMResponse(completions, Usage(estimate_message_tokens(messages), completion_tokens, 0.0, 1), model)
