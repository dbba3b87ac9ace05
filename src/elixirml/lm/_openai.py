"""Client for OpenAI's chat-completions API and every server that speaks it.

Transport is aiohttp (one pooled session per event loop): measured on loopback it sustains
far more concurrent requests than httpx's async pool.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import os
import time
import weakref
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlparse

from .._secrets import redact_text, redact_url
from ..errors import (
    ConfigurationError,
    MissingDependencyError,
    ProviderError,
    ProviderResponseError,
    RateLimitError,
)
from ..runtime import close_with_loop
from ._base import LM
from ._logprobs import score_continuations
from ._settings import PROVIDER_SETTINGS
from ._types import Completion, LMResponse, Message, Usage, estimate_message_tokens, estimate_tokens

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524})
OPENAI_BASE_URL = "https://api.openai.com/v1"


#: The longest wait a ``Retry-After`` header can ask for (seconds); longer values are capped.
MAX_RETRY_AFTER = 3600.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    None (the retry policy's own backoff) for a missing, unparseable, negative or NaN value and
    for a date in the past; a longer wait than :data:`MAX_RETRY_AFTER` (``inf`` included) is capped.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        try:
            seconds = when.timestamp() - time.time()
        except (OverflowError, OSError, ValueError):
            return None
    if seconds != seconds or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def key_advice(status: int, holder: str) -> str:
    """What to do about a refused key (HTTP 401 or 403); ``holder`` names where the key came from."""
    if status == 401:
        return f"The server refused the API key from {holder}; check it, or set a valid one."
    return f"The API key from {holder} is not allowed to do this (HTTP 403): check its permissions."


def body_excerpt(raw: bytes | str, limit: int = 200) -> str:
    """The start of a response body, for error messages (never more than ``limit`` characters)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


class _BadShape(Exception):
    """A part of a response body has the wrong shape (turned into ProviderResponseError)."""


def _text_content(content: Any) -> str:
    """A message's ``content``: a string, null, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in content):
        return "".join(p.get("text", "") for p in content)
    raise _BadShape(f"message content is {type(content).__name__}, not a string")


def _token_count(usage: dict[str, Any], key: str) -> int | None:
    value = usage.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
        raise _BadShape(f"usage.{key} is {value!r}, not a count of tokens")
    return int(value)


def _parse_tool_calls(message: dict[str, Any]) -> list[dict[str, Any]] | None:
    calls = message.get("tool_calls")
    if not calls:
        return None
    if not isinstance(calls, list):
        raise _BadShape(f"tool_calls is {type(calls).__name__}, not a list")
    parsed = []
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            raise _BadShape("a tool call has no function object")
        raw = fn.get("arguments") or "{}"
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except (ValueError, RecursionError):
            arguments = {"__raw__": raw}
        parsed.append({"id": call.get("id"), "name": fn.get("name"), "arguments": arguments})
    return parsed


def _parse_choice(choice: Any) -> Completion:
    if not isinstance(choice, dict):
        raise _BadShape(f"a choice is {type(choice).__name__}, not an object")
    message = choice.get("message") or {}
    if not isinstance(message, dict):
        raise _BadShape(f"a choice's message is {type(message).__name__}, not an object")
    logprobs = choice.get("logprobs") or {}
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content") or [], list):
        raise _BadShape("a choice's logprobs are not an object with a content list")
    finish_reason = choice.get("finish_reason")
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise _BadShape(f"finish_reason is {finish_reason!r}, not a string")
    return Completion(
        text=_text_content(message.get("content")),
        tool_calls=_parse_tool_calls(message),
        logprobs=logprobs.get("content"),
        finish_reason=finish_reason,
    )


def parse_chat_response(data: Any, model: str, messages: list[Message], raw: bytes | str | None = None) -> LMResponse:
    """Turn an OpenAI chat-completions JSON body into an :class:`LMResponse`.

    Args:
        data: the decoded body.
        model: the model's name, for messages.
        messages: the request's messages (for token estimates when the server counts none).
        raw: the body as received, quoted in the error when its shape is wrong.

    Raises:
        ProviderResponseError: the body does not have the chat-completions shape (retryable).
    """
    try:
        if not isinstance(data, dict):
            raise _BadShape("the body is not a JSON object")
        choices = data.get("choices")
        if not choices:
            raise _BadShape("the response has no choices")
        if not isinstance(choices, list):
            raise _BadShape(f"choices is {type(choices).__name__}, not a list")
        completions = [_parse_choice(choice) for choice in choices]
        raw_usage = data.get("usage") or {}
        if not isinstance(raw_usage, dict):
            raise _BadShape(f"usage is {type(raw_usage).__name__}, not an object")
        prompt_tokens = _token_count(raw_usage, "prompt_tokens")
        completion_tokens = _token_count(raw_usage, "completion_tokens")
    except _BadShape as exc:
        if raw is None:
            try:
                raw = json.dumps(data)
            except (TypeError, ValueError, RecursionError):
                raw = f"<{type(data).__name__}>"
        raise ProviderResponseError(
            f"{model}: malformed chat-completions response ({exc}); body starts {body_excerpt(raw)}. "
            "Check that base_url points at an OpenAI-compatible server."
        ) from None
    usage = Usage(
        prompt_tokens=prompt_tokens or estimate_message_tokens(messages),
        completion_tokens=completion_tokens or sum(estimate_tokens(c.text) for c in completions),
        calls=1,
    )
    return LMResponse(completions=completions, usage=usage, model=str(data.get("model") or model))


@functools.cache
def _untimed() -> Any:
    """The aiohttp timeout of a request the LM times itself: none in total, 30 s to connect (as aiohttp's default)."""
    import aiohttp

    return aiohttp.ClientTimeout(total=None, sock_connect=30)


def _one_base_url(base_url: str | None, api_base: str | None, model: str) -> str | None:
    """``base_url``, or DSPy's ``api_base`` for it; both, when they differ, is a mistake."""
    if api_base is None:
        return base_url
    if base_url is not None and base_url.rstrip("/") != api_base.rstrip("/"):
        raise ConfigurationError(
            f"LM({model!r}) got base_url={base_url!r} and api_base={api_base!r}: they name the same "
            "setting (api_base is DSPy's name for base_url). Pass one of them."
        )
    return api_base


class OpenAILM(LM):
    """An OpenAI-compatible chat-completions client (OpenAI, vLLM, llama.cpp server, Ollama, ...).

    Args:
        model: ``"openai/<model>"``.
        base_url: the API root (``.../v1``); default ``$OPENAI_BASE_URL`` or OpenAI's.
        api_base: DSPy's name for ``base_url`` (pass one of the two).
        api_key: the key; default ``$OPENAI_API_KEY``, read when a request is made (an LM for
            OpenAI is built without one and raises ``ConfigurationError`` at the first request).
            Never logged, cached or saved.
        headers: extra HTTP headers.
        supports_json_schema: whether the server honours ``response_format`` JSON schemas
            (default True for OpenAI's API, False elsewhere: set it for vLLM or llama.cpp).
        supports_scoring: let ``Predict(decoding="score" | "calibrated")`` score the allowed
            values of a closed-set output by log-probability (default False: not every server
            returns ``logprobs``). Each scoring call asks for one short greedy answer with
            ``top_logprobs`` and reads the values' scores off it (see ``elixirml.lm._logprobs``).
        score_top_logprobs: alternatives requested per token when scoring (OpenAI allows 20).
        **kwargs: as for :class:`~elixirml.lm.LM`.
    """

    provider = "openai"
    supported_settings = PROVIDER_SETTINGS  # "top_k" goes to the servers that take it (vLLM, llama.cpp)
    supported_extras = None  # any extra goes into the request body
    supports_tools = True
    supports_images = True
    supports_logprobs = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        supports_json_schema: bool | None = None,
        supports_scoring: bool = False,
        score_top_logprobs: int = 20,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", 120.0)
        base_url = _one_base_url(base_url, api_base, model)
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).rstrip("/")
        parsed = urlparse(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigurationError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        self._is_openai = parsed.hostname == "api.openai.com"
        # Without a key, construction succeeds (as in DSPy: programs and Variable.lm choices are
        # built before keys exist); the key is looked up, and its absence raised, per request.
        self._api_key = api_key
        self._headers = dict(headers or {})
        super().__init__(model, **kwargs)
        self.model_name = model.split("/", 1)[1]
        self.supports_json_schema = self._is_openai if supports_json_schema is None else supports_json_schema
        self.supports_scoring = supports_scoring
        if score_top_logprobs < 1:
            raise ConfigurationError(f"score_top_logprobs must be at least 1, got {score_top_logprobs}")
        self.score_top_logprobs = score_top_logprobs
        # One session per event loop; a session leaves this dict when it is closed (by aclose,
        # or when its loop shuts down), so nothing here outlives its loop.
        self._sessions: dict[asyncio.AbstractEventLoop, tuple[Any, Any]] = {}

    @property
    def endpoint_label(self) -> str:
        base_url = getattr(self, "base_url", "")
        label = self.__dict__.get("_label")
        if label is None or label[0] != base_url or label[1] != self.model:  # parsed once per URL and model
            parsed = urlparse(base_url)
            text = f"{self.model} at {parsed.scheme}://{parsed.hostname}:{parsed.port or ''}".rstrip(":")
            label = self._label = (base_url, self.model, text)
        return label[2]

    def __repr__(self) -> str:
        return f"OpenAILM(model={self.model!r}, base_url={redact_url(self.base_url)!r})"

    def _provider_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "supports_json_schema": self.supports_json_schema,
            "supports_scoring": self.supports_scoring,
            "score_top_logprobs": self.score_top_logprobs,
        }
        if redact_url(self.base_url) == self.base_url:  # one with credentials in it is a secret
            options["base_url"] = self.base_url
        return options

    def _provider_secrets(self) -> dict[str, Any]:
        secrets: dict[str, Any] = {}
        if self._api_key is not None:
            secrets["api_key"] = self._api_key
        if self._headers:
            secrets["headers"] = dict(self._headers)
        if redact_url(self.base_url) != self.base_url:
            secrets["base_url"] = self.base_url
        return secrets

    def _request_api_key(self) -> str | None:
        """The key for a request: the one passed, else ``$OPENAI_API_KEY`` as it is now.

        Raises:
            ConfigurationError: OpenAI's own API and no key (other servers may need none).
        """
        key = self._api_key if self._api_key is not None else os.environ.get("OPENAI_API_KEY")
        if self._is_openai and not key:
            raise ConfigurationError(
                f"LM({self.model!r}) has no API key for {self.base_url}: pass api_key=... to em.LM "
                "or set the OPENAI_API_KEY environment variable before the first request."
            )
        return key

    async def _session(self) -> Any:
        if self._is_openai:
            self._request_api_key()  # OpenAI's own API refuses a request without a key: say so first
        loop = asyncio.get_running_loop()
        entry = self._sessions.get(loop)
        if entry is None or entry[0].closed:
            entry = await self._new_session(loop)
        return entry[0]

    async def _new_session(self, loop: asyncio.AbstractEventLoop) -> tuple[Any, Any]:
        """A session for requests on ``loop``, closed when the loop shuts down (or by :meth:`aclose`)."""
        try:
            import aiohttp
        except ImportError:  # pragma: no cover - aiohttp is a core dependency
            raise MissingDependencyError("aiohttp", "all", "The OpenAI-compatible client") from None
        api_key = self._request_api_key()  # the key as it is now, for the session's headers
        connector = aiohttp.TCPConnector(limit=self.limiter.limit or 0, ttl_dns_cache=300)
        headers = {"Content-Type": "application/json", **self._headers}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        session = aiohttp.ClientSession(connector=connector, headers=headers)
        owner = weakref.ref(self)  # not self: an LM dropped by its user must not be kept by its session's guard

        async def close() -> None:
            lm = owner()
            if lm is not None and lm._sessions.get(loop, (None,))[0] is session:
                del lm._sessions[loop]
            await session.close()

        entry = (session, await close_with_loop(close))  # closed when the loop shuts down
        self._sessions[loop] = entry
        return entry

    async def aclose(self) -> None:
        """Close the HTTP session of the running event loop (it is also closed when the loop ends)."""
        loop = asyncio.get_running_loop()
        entry = self._sessions.get(loop)
        if entry is not None:
            await entry[1].aclose()  # runs the guard's close now: the session leaves the dict, closed

    def _body(self, messages: list[Message], settings: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model_name, "messages": messages}
        for key, value in settings.items():
            if key == "max_tokens" and self._is_openai:
                body["max_completion_tokens"] = value  # OpenAI's own API; other servers want max_tokens
            elif key == "logprobs" and isinstance(value, int) and not isinstance(value, bool):
                body["logprobs"] = True
                body["top_logprobs"] = value
            elif key == "extra":
                body.update(value)  # provider-specific fields, as the server names them
            else:
                body[key] = value
        return body

    async def _post(self, body: dict[str, Any], path: str = "/chat/completions") -> Any:
        import aiohttp

        session = await self._session()
        try:
            if self.timeout is None:
                response = await session.post(f"{self.base_url}{path}", json=body)  # aiohttp's own bound
            else:  # the LM's timeout bounds the attempt (and each piece of a stream): no second timer
                response = await session.post(f"{self.base_url}{path}", json=body, timeout=_untimed())
        except (aiohttp.ClientError, OSError) as exc:
            raise ProviderError(f"{self.endpoint_label}: connection failed ({type(exc).__name__})") from None
        if response.status != 200:
            text = await response.text()
            response.release()
            self._raise_for_status(response.status, text, response.headers.get("Retry-After"))
        return response

    def _raise_for_status(self, status: int, text: str, retry_after: str | None) -> None:
        detail = text[:300]
        try:
            detail = json.loads(text).get("error", {}).get("message", detail)
        except (ValueError, AttributeError):
            pass
        detail = redact_text(str(detail)[:300], (self._api_key, os.environ.get("OPENAI_API_KEY")))
        message = f"{self.endpoint_label}: HTTP {status}: {detail}"
        if status in (401, 403):
            message += ". " + key_advice(status, "the api_key passed to em.LM" if self._api_key else "OPENAI_API_KEY")
        if status == 429:
            raise RateLimitError(message, status=status, retry_after=parse_retry_after(retry_after))
        raise ProviderError(
            message, status=status, retryable=status in _RETRYABLE_STATUS, retry_after=parse_retry_after(retry_after)
        )

    async def _read(self, body: dict[str, Any], path: str = "/chat/completions") -> bytes:
        """POST ``body`` to ``path`` and read the whole answer (a dropped connection is a ProviderError)."""
        import aiohttp

        response = await self._post(body, path)
        try:
            raw = await response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise ProviderError(f"{self.endpoint_label}: connection lost ({type(exc).__name__})") from None
        finally:
            response.release()
        return bytes(raw)

    async def _send(self, messages: list[Message], settings: dict[str, Any]) -> LMResponse:
        return self._parse_body(await self._read(self._body(messages, settings)), messages)

    def _parse_body(self, raw: bytes, messages: list[Message]) -> LMResponse:
        """A chat-completions response body as an :class:`LMResponse` (a body that is not one raises)."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else "not valid JSON"
            raise ProviderResponseError(
                f"{self.endpoint_label}: the response body is {why}; it starts {body_excerpt(raw)}"
            ) from None
        return parse_chat_response(data, self.model, messages, raw)

    async def _score_send(self, messages: list[Message], prefix: str, continuations: list[str]) -> list[float]:
        """One greedy answer with token log-probabilities; the continuations' scores are read off it."""
        budget = estimate_tokens(prefix) + max(estimate_tokens(c) for c in continuations) + 16
        settings = {"temperature": 0.0, "max_tokens": min(budget, 256), "logprobs": self.score_top_logprobs}
        response = await self._send_with_policies(messages, settings)
        tokens = response.completions[0].logprobs if response.completions else None
        if not tokens:
            raise ProviderResponseError(
                f"{self.endpoint_label}: the server returned no logprobs; scoring needs a server that returns "
                "them (create the LM without supports_scoring=True, or use decoding='generate')"
            )
        return score_continuations(tokens, prefix, continuations)

    async def _stream(
        self, messages: list[Message], settings: dict[str, Any]
    ) -> AsyncGenerator[str | LMResponse, None]:
        """Yield text pieces as the server streams them (server-sent events), then the whole response.

        A server that answers a stream request with a plain JSON body gets that body read as
        a whole answer. Comment lines (keep-alives) are skipped; the base class bounds the wait
        for each piece by ``timeout``.
        """
        import aiohttp

        response = await self._post({**self._body(messages, settings), "stream": True})
        try:
            if "json" in (response.headers.get("Content-Type") or "").lower():
                raw = await response.read()
                yield self._parse_body(bytes(raw), messages)
                return
            chunks: list[str] = []
            finish: str | None = None
            usage: Usage | None = None
            async for line in response.content:
                text = line.decode("utf-8", "replace").strip()
                if not text.startswith("data:"):
                    continue  # blank lines, comments (": keep-alive"), event names
                payload = text[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    event = json.loads(payload)
                    choices = event.get("choices") or []
                    pieces = [(choice.get("delta") or {}).get("content") for choice in choices]
                    reasons = [choice.get("finish_reason") for choice in choices]
                    counted = event.get("usage")
                except (ValueError, RecursionError, AttributeError, TypeError):
                    raise ProviderResponseError(
                        f"{self.endpoint_label}: malformed stream event {body_excerpt(payload)}"
                    ) from None
                for piece in pieces:
                    if not isinstance(piece, str) and piece is not None:
                        raise ProviderResponseError(
                            f"{self.endpoint_label}: stream event content is not text: {body_excerpt(payload)}"
                        )
                    if piece:
                        chunks.append(piece)
                        yield piece
                finish = next((r for r in reasons if isinstance(r, str)), finish)
                if isinstance(counted, dict):
                    try:
                        prompt = _token_count(counted, "prompt_tokens")
                        completion = _token_count(counted, "completion_tokens")
                    except _BadShape:
                        prompt = completion = None
                    if prompt is not None and completion is not None:
                        usage = Usage(prompt, completion, calls=1)
        except (aiohttp.ClientError, OSError) as exc:
            raise ProviderError(f"{self.endpoint_label}: stream broken ({type(exc).__name__})") from None
        finally:
            response.release()
        text = "".join(chunks)
        if usage is None:
            usage = Usage(estimate_message_tokens(messages), estimate_tokens(text), calls=1)
        yield LMResponse([Completion(text=text, finish_reason=finish or "stop")], usage, self.model)
