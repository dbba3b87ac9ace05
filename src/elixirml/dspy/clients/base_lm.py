"""``dspy.clients.base_lm``: DSPy's ``BaseLM`` (custom LMs implementing ``forward``) and ``GLOBAL_HISTORY``.

A DSPy-style custom LM subclasses :class:`BaseLM` and implements ``forward(prompt=None,
messages=None, **kwargs)`` (and optionally ``aforward``), returning an OpenAI-shaped response:
an object or dict with ``choices[i].message.content`` (and ``tool_calls``), ``usage`` and
``model``. It runs under ElixirML's LM machinery (cache, history, usage, callbacks).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any

from ... import lm as _lm
from ...errors import ConfigurationError
from ...lm import (
    PROVIDER_SETTINGS,
    Completion,
    LMResponse,
    Usage,
    estimate_message_tokens,
    estimate_tokens,
    parse_chat_response,
)

__all__ = ["GLOBAL_HISTORY", "LM_CLASS_STATE_KEY", "MAX_HISTORY_SIZE", "BaseLM", "DSPyLMMixin", "response_as_dict"]

#: Every LM call of every LM built through ``elixirml.dspy``, oldest first (DSPy's global history).
GLOBAL_HISTORY: list[dict[str, Any]] = []
#: The most entries :data:`GLOBAL_HISTORY` keeps.
MAX_HISTORY_SIZE = 10_000
#: The key of an LM's class path in a saved LM state (DSPy's name; ElixirML never imports it on load).
LM_CLASS_STATE_KEY = "lm_class"


def response_as_dict(response: Any) -> dict[str, Any]:
    """An OpenAI-shaped response (a pydantic model, an object with attributes, or a dict) as a dict."""
    if isinstance(response, dict):
        return response
    dump = getattr(response, "model_dump", None)
    if callable(dump):
        data = dump()
        if isinstance(data, dict):
            return data
    choices = []
    for choice in getattr(response, "choices", None) or []:
        message = getattr(choice, "message", None)
        choices.append(
            {
                "message": {
                    "content": getattr(message, "content", None),
                    "tool_calls": getattr(message, "tool_calls", None),
                },
                "finish_reason": getattr(choice, "finish_reason", "stop"),
            }
        )
    usage = getattr(response, "usage", None)
    usage_dict = dict(usage) if isinstance(usage, dict) else {}
    if usage is not None and not usage_dict:
        usage_dict = {k: getattr(usage, k, 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    return {"choices": choices, "usage": usage_dict, "model": getattr(response, "model", None)}


#: The LMs (by id) whose own ``__call__`` is answering the request now: their ``super().__call__``
#: takes the LM's own path instead of calling ``__call__`` again.
_ANSWERING: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("dspy_lm_answering", default=frozenset())


class DSPyLMMixin:
    """DSPy's LM attributes on an ElixirML LM: ``model_type``, ``kwargs``, ``GLOBAL_HISTORY`` entries."""

    model: str
    defaults: dict[str, Any]
    model_type: str = "chat"
    retry: Any

    @property
    def default_adapter(self) -> Any:
        """DSPy's default adapter, ``dspy.ChatAdapter()`` (DSPy's prompt format), when none is configured."""
        chosen = self.__dict__.get("_default_adapter")
        if chosen is not None:
            return chosen
        from ..adapters import default_chat_adapter

        return default_chat_adapter()

    @default_adapter.setter
    def default_adapter(self, value: Any) -> None:
        self.__dict__["_default_adapter"] = value

    @property
    def kwargs(self) -> dict[str, Any]:
        """DSPy's ``lm.kwargs``: the default request settings."""
        return self.defaults

    @kwargs.setter
    def kwargs(self, value: dict[str, Any]) -> None:
        self.defaults = dict(value)

    @property
    def supports_function_calling(self) -> bool:
        """Whether the LM calls tools natively."""
        return bool(getattr(self, "supports_tools", False))

    @property
    def supports_reasoning(self) -> bool:
        """Whether the LM returns reasoning separately (no ElixirML LM does)."""
        return False

    @property
    def supports_response_schema(self) -> bool:
        """Whether the LM takes a JSON schema for its answer."""
        return bool(getattr(self, "supports_json_schema", False))

    @property
    def supported_params(self) -> set[str]:
        """The request settings the LM honours."""
        return set(getattr(self, "supported_settings", ()))

    async def arequest(
        self,
        messages: list[Any],
        *,
        validate: Any = None,
        allow_truncated: bool = False,
        settings: Any = None,
        **overrides: Any,
    ) -> LMResponse:
        """Send a request; a subclass that overrides DSPy's ``__call__`` is called through it.

        Such an LM (``def __call__(self, messages=None, **kwargs)`` returning a list of texts or
        of ``{"text": ..., "tool_calls": ...}`` dicts) answers as it is, in a worker thread (as
        DSPy's threads call it): ElixirML's cache, retries and history are not in the way. When
        that ``__call__`` asks ``super().__call__(...)``, the request takes the LM's own path.
        Others go through :meth:`elixirml.LM.arequest`.
        """
        if type(self).__call__ is _lm.LM.__call__ or id(self) in _ANSWERING.get():
            return await super().arequest(  # type: ignore[misc,no-any-return]
                messages, validate=validate, allow_truncated=allow_truncated, settings=settings, **overrides
            )
        settings = {**self.defaults, **dict(settings or {}), **overrides}
        token = _ANSWERING.set(_ANSWERING.get() | {id(self)})
        try:
            answer: Any = self
            outputs: Any = await asyncio.to_thread(answer, messages=messages, **settings)
        finally:
            _ANSWERING.reset(token)
        completions = []
        for output in outputs if isinstance(outputs, list) else [outputs]:
            if isinstance(output, dict):
                completions.append(Completion(str(output.get("text") or ""), output.get("tool_calls"), None, "stop"))
            else:
                completions.append(Completion(str(output), None, None, "stop"))
        usage = Usage(estimate_message_tokens(messages), sum(estimate_tokens(c.text) for c in completions), 0.0, 1)
        response = LMResponse(completions, usage, self.model)
        self._record(messages, settings, response)
        if validate is not None:
            validate(response)
        return response

    def _record(self, messages: Any, settings: dict[str, Any], response: LMResponse) -> None:
        super()._record(messages, settings, response)  # type: ignore[misc]
        GLOBAL_HISTORY.append(
            {
                "prompt": None,
                "messages": messages,
                "kwargs": dict(settings),
                "response": response,
                "outputs": [c.text for c in response.completions],
                "usage": response.usage.as_dict(),
                "cost": response.usage.cost,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "uuid": str(id(response)),
                "model": self.model,
                "response_model": response.model,
                "model_type": self.model_type,
            }
        )
        if len(GLOBAL_HISTORY) > MAX_HISTORY_SIZE:
            del GLOBAL_HISTORY[: len(GLOBAL_HISTORY) - MAX_HISTORY_SIZE]

    def dump_state(self) -> dict[str, Any]:
        """DSPy's LM state: class path (``lm_class``), model, model type, cache, retries and default settings.

        Never a key, a base URL or headers (those are not request settings here). ElixirML's
        loaders do not build an LM from it (see docs/dspy.md); ``dspy.load_settings`` builds
        ``dspy.LM(model, **settings)`` again.
        """
        defaults = {k: v for k, v in self.defaults.items() if k not in ("api_key", LM_CLASS_STATE_KEY)}
        extra = defaults.pop("extra", None) or {}
        cache = getattr(self, "cache", True)
        return {
            LM_CLASS_STATE_KEY: f"{type(self).__module__}.{type(self).__qualname__}",
            "model": self.model,
            "model_type": self.model_type,
            "cache": cache if cache is None or isinstance(cache, (bool, str)) else True,
            "num_retries": self.retry.retries if hasattr(self, "retry") else 0,
            **defaults,
            **{k: v for k, v in extra.items() if k not in ("api_key", LM_CLASS_STATE_KEY)},
            **self._dspy_state_extras(),
        }

    def _dspy_state_extras(self) -> dict[str, Any]:
        """More of DSPy's state keys of this LM class (``dspy.LM``: its fine-tuning keywords)."""
        return {}

    def copy(self, **changes: Any) -> Any:
        """A copy with some default request settings changed (DSPy's ``lm.copy(temperature=...)``)."""
        import copy as _copy

        new = _copy.copy(self)
        new.defaults = {**self.defaults, **changes}
        return new


class BaseLM(DSPyLMMixin, _lm.LM):
    """DSPy's base class for custom LMs: implement ``forward`` (and optionally ``aforward``).

    Args:
        model: the model's name.
        model_type: ``"chat"`` (the default), ``"text"`` or ``"responses"``; recorded, the request
            is the same chat request.
        temperature: default sampling temperature.
        max_tokens: default cap on generated tokens.
        cache: as for :class:`elixirml.LM` (DSPy's default, ``True``, uses the cache).
        **kwargs: more default request settings.
    """

    provider = "custom"
    supported_settings = PROVIDER_SETTINGS
    supported_extras = None
    supports_images = True

    def __init__(
        self,
        model: str,
        model_type: str = "chat",
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache: Any = True,
        **kwargs: Any,
    ) -> None:
        kwargs.pop(LM_CLASS_STATE_KEY, None)  # a saved state's class marker is never a setting
        settings = {k: v for k, v in kwargs.items() if k in PROVIDER_SETTINGS}
        options = {k: kwargs.pop(k) for k in ("num_retries", "timeout", "history_size") if k in kwargs}
        self.extra_kwargs = {k: v for k, v in kwargs.items() if k not in settings}
        options.setdefault("num_retries", 0)
        _lm.LM.__init__(
            self,
            model,
            temperature=temperature,
            max_tokens=max_tokens,
            cache=cache,
            circuit_breaker=False,
            **options,
            **settings,
        )
        self.model_type = model_type

    def forward(self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
        """The request: return an OpenAI-shaped response. Subclasses implement it."""
        raise ConfigurationError(f"{type(self).__name__} must implement forward(prompt, messages, **kwargs)")

    async def aforward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Any:
        """The async request; by default :meth:`forward` in a worker thread."""
        return await asyncio.to_thread(self.forward, prompt=prompt, messages=messages, **kwargs)

    async def _send(self, messages: list[Any], settings: dict[str, Any]) -> LMResponse:
        kwargs = dict(settings)
        kwargs.update(kwargs.pop("extra", None) or {})
        if type(self).aforward is not BaseLM.aforward:
            response = await self.aforward(prompt=None, messages=messages, **kwargs)
        else:
            response = await asyncio.to_thread(self.forward, prompt=None, messages=messages, **kwargs)
        result = parse_chat_response(response_as_dict(response), self.model, messages)
        model = getattr(response, "model", None) if not isinstance(response, dict) else response.get("model")
        if isinstance(model, str):
            result.model = model
        return result
