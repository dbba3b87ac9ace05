"""Public test doubles: :class:`DummyLM` (scripted answers) and :class:`FunctionLM` (a function answers)."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError
from ..schema import field_marker, format_value
from ._base import LM, completion_response
from ._settings import PROVIDER_SETTINGS
from ._types import LMResponse, Message

_MARKER_RE = re.compile(r"\[\[\s*##\s*(\w+)\s*##\s*\]\]")
_COMPLETED = field_marker("completed")


def _has_markers(messages: list[Message]) -> bool:
    """Whether any message has a ``[[ ## field ## ]]`` marker (the chat and JSON adapters' prompts do)."""
    for message in messages:
        content = message.get("content")
        text = content if isinstance(content, str) else str(content or "")
        if "[[ ## " in text or ("[[" in text and _MARKER_RE.search(text)):
            return True
    return False


def render_answer(answer: Any, settings: dict[str, Any], messages: list[Message] | None = None) -> str:
    """Render a scripted answer as completion text.

    A string is returned as it is. A dict of output values becomes a JSON object when the
    request asked for JSON (``response_format``), ``field: value`` lines when no message of the
    prompt has ``[[ ## field ## ]]`` markers (the plain adapter's format), else text with markers.
    """
    if isinstance(answer, str):
        return answer
    if not isinstance(answer, (dict, Mapping)):  # dict first: the ABC check is slow
        raise ConfigurationError(f"A scripted answer must be a str or a dict of output values, got {answer!r}")
    if settings.get("response_format"):
        return json.dumps(dict(answer), default=str)
    if messages and not _has_markers(messages):
        return "\n".join(f"{key}: {format_value(value)}" for key, value in answer.items())
    parts = [f"{field_marker(key)}\n{format_value(value)}" for key, value in answer.items()]
    parts.append(_COMPLETED)
    return "\n\n".join(parts)


def _last_user_text(messages: list[Message]) -> str | None:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return None


_PLAIN_LINE_RE = re.compile(r"^(\w+): ?(.*)$", re.MULTILINE)


def input_field_values(messages: list[Message]) -> dict[str, str]:
    """The input fields of the last user message (``[[ ## field ## ]]`` sections or ``field: value`` lines)."""
    content = _last_user_text(messages)
    if content is not None:
        found = list(_MARKER_RE.finditer(content))
        if not found:
            return {m.group(1): m.group(2).strip() for m in _PLAIN_LINE_RE.finditer(content)}
        values: dict[str, str] = {}
        for i, match in enumerate(found):
            end = found[i + 1].start() if i + 1 < len(found) else len(content)
            values[match.group(1)] = content[match.end() : end].strip()
        return values
    return {}


class DummyLM(LM):
    """An LM that answers from a script, for tests.

    Args:
        answers: a list of answers used in order, or a mapping from an input value to its
            answer. Each answer is a dict of output values (rendered to suit the adapter) or a
            raw completion string.
        field: with a mapping, the input field whose value selects the answer; without it,
            the first key found in the last user message is used.
        default: the answer when a mapping has no match or a list is used up (else an error
            is raised).
        advance_per_completion: with ``n > 1`` completions asked, a list script gives its
            next ``n`` answers (as DSPy's ``DummyLM`` does) instead of one answer ``n`` times.
        supports_json_schema: whether adapters may ask for JSON-schema output.
        model: the model name reported in history.
        stream_chunk: characters per piece when streamed (``astream``).
        **kwargs: passed to :class:`~elixirml.lm.LM` (for example ``max_concurrency``).

    Attributes:
        requests: every request received, as ``{"messages": ..., "settings": ...}``.
    """

    provider = "dummy"
    supported_settings = PROVIDER_SETTINGS  # a test double takes every setting
    supported_extras = None
    default_cache = False
    supports_images = True  # a test double takes any content

    def __init__(
        self,
        answers: Sequence[Any] | Mapping[str, Any],
        *,
        field: str | None = None,
        default: Any = None,
        supports_json_schema: bool = True,
        model: str = "dummy",
        stream_chunk: int = 4,
        advance_per_completion: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("circuit_breaker", False)
        kwargs.setdefault("num_retries", 0)
        super().__init__(model, **kwargs)
        self.stream_chunk = stream_chunk
        if isinstance(answers, Mapping):
            self._mapping: dict[str, Any] | None = dict(answers)
            self._answers: list[Any] = []
        else:
            self._mapping = None
            self._answers = list(answers)
        self.field = field
        self.default_answer = default
        self.advance_per_completion = advance_per_completion
        self.supports_json_schema = supports_json_schema
        self.requests: list[dict[str, Any]] = []
        self._index = 0

    def describe(self) -> dict[str, Any]:
        """Refused: a script's position and its record of requests belong to this process."""
        raise ConfigurationError(
            f"DummyLM({self.model!r}) cannot be described as data: its script and the requests it records live in "
            "this process"
        )

    def _pick(self, messages: list[Message]) -> Any:
        if self._mapping is None:
            if self._index >= len(self._answers):
                if self.default_answer is not None:
                    return self.default_answer
                raise ConfigurationError(
                    f"DummyLM ran out of scripted answers after {len(self._answers)} call(s); add more answers."
                )
            answer = self._answers[self._index]
            self._index += 1
            return answer
        if self.field is not None:
            value = input_field_values(messages).get(self.field)
            if value is not None:
                # the last section may be followed by the adapter's closing reminder paragraph
                for key in (value, value.split("\n\n", 1)[0]):
                    if key in self._mapping:
                        return self._mapping[key]
        else:
            text = next(
                (
                    m["content"]
                    for m in reversed(messages)
                    if m.get("role") == "user" and isinstance(m.get("content"), str)
                ),
                "",
            )
            for key in sorted(self._mapping, key=len, reverse=True):
                if key in text:
                    return self._mapping[key]
        if self.default_answer is not None:
            return self.default_answer
        raise ConfigurationError("DummyLM has no scripted answer matching this request (pass default=...)")

    async def _stream(
        self, messages: list[Message], settings: dict[str, Any]
    ) -> AsyncGenerator[str | LMResponse, None]:
        """Stream the scripted answer in pieces of ``stream_chunk`` characters, then the whole response."""
        response = await self._send(messages, settings)
        text = response.text
        for i in range(0, len(text), self.stream_chunk):
            await asyncio.sleep(0)
            yield text[i : i + self.stream_chunk]
        yield response

    async def _send(self, messages: list[Message], settings: dict[str, Any]) -> LMResponse:
        self.requests.append({"messages": messages, "settings": settings})  # a copy made for this request
        answer = self._pick(messages)
        n = int(settings.get("n", 1) or 1)
        if isinstance(answer, list):
            answers = list(answer)
        elif n > 1 and self.advance_per_completion and self._mapping is None:
            answers = [answer] + [self._pick(messages) for _ in range(n - 1)]
        else:
            answers = [answer] * n
        return completion_response([render_answer(a, settings, messages) for a in answers], messages, self.model)


class FunctionLM(LM):
    """An LM whose answers come from a Python function, for tests and custom backends.

    ``fn(messages, settings)`` receives the chat messages and the dict of effective request
    settings (``temperature``, ``max_tokens``, ...) and returns the completion text (or a
    list of texts for ``n > 1``, or a dict of output values, rendered as :class:`DummyLM`
    does). A sync function runs in a worker thread, off the event loop; an async one is
    awaited.

    Args:
        fn: the answering function.
        supports_json_schema: whether adapters may ask for JSON-schema output.
        model: the model name reported in history.
        **kwargs: passed to :class:`~elixirml.lm.LM`.
    """

    provider = "function"
    supported_settings = PROVIDER_SETTINGS  # a test double takes every setting (fn sees them all)
    supported_extras = None
    default_cache = False
    supports_images = True  # a test double takes any content

    def __init__(
        self,
        fn: Callable[[list[Message], dict[str, Any]], Any],
        *,
        supports_json_schema: bool = False,
        model: str = "function",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("circuit_breaker", False)
        kwargs.setdefault("num_retries", 0)
        super().__init__(model, **kwargs)
        if not callable(fn):
            raise ConfigurationError("FunctionLM needs a callable fn(messages, settings)")
        self.fn = fn
        self.supports_json_schema = supports_json_schema
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)

    def describe(self) -> dict[str, Any]:
        """Refused: the answers come from a Python function, which is code, not data."""
        raise ConfigurationError(
            f"FunctionLM({self.model!r}) cannot be described as data: its answers come from the Python function "
            f"{getattr(self.fn, '__qualname__', type(self.fn).__name__)}"
        )

    async def _send(self, messages: list[Message], settings: dict[str, Any]) -> LMResponse:
        if self._is_async:
            result = await self.fn(messages, dict(settings))
        else:
            result = await asyncio.to_thread(self.fn, messages, dict(settings))
        if isinstance(result, LMResponse):
            return result
        results = result if isinstance(result, list) else [result]
        return completion_response([render_answer(r, settings, messages) for r in results], messages, self.model)
