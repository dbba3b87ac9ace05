"""Client for OpenAI's chat-completions API and every server that speaks it.

Transport is aiohttp (one pooled session per event loop): measured on loopback it sustains
far more concurrent requests than httpx's async pool.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

from .._secrets import redact_url
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
from ._types import Completion, LMResponse, Message, Usage, estimate_message_tokens, estimate_tokens

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524})
OPENAI_BASE_URL = "https://api.openai.com/v1"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _parse_tool_calls(message: dict[str, Any]) -> list[dict[str, Any]] | None:
    calls = message.get("tool_calls")
    if not calls:
        return None
    parsed = []
    for call in calls:
        fn = call.get("function") or {}
        raw = fn.get("arguments") or "{}"
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            arguments = {"__raw__": raw}
        parsed.append({"id": call.get("id"), "name": fn.get("name"), "arguments": arguments})
    return parsed


def parse_chat_response(data: Any, model: str, messages: list[Message]) -> LMResponse:
    """Turn an OpenAI chat-completions JSON body into an :class:`LMResponse`."""
    if not isinstance(data, dict):
        raise ProviderResponseError(f"{model}: response body is not a JSON object")
    choices = data.get("choices")
    if not choices:
        raise ProviderResponseError(f"{model}: response has no choices")
    completions = []
    for choice in choices:
        message = choice.get("message") or {}
        logprobs = (choice.get("logprobs") or {}).get("content")
        completions.append(
            Completion(
                text=message.get("content") or "",
                tool_calls=_parse_tool_calls(message),
                logprobs=logprobs,
                finish_reason=choice.get("finish_reason"),
            )
        )
    raw_usage = data.get("usage") or {}
    usage = Usage(
        prompt_tokens=int(raw_usage.get("prompt_tokens") or estimate_message_tokens(messages)),
        completion_tokens=int(raw_usage.get("completion_tokens") or sum(estimate_tokens(c.text) for c in completions)),
        calls=1,
    )
    return LMResponse(completions=completions, usage=usage, model=str(data.get("model") or model))


class OpenAILM(LM):
    """An OpenAI-compatible chat-completions client (OpenAI, vLLM, llama.cpp server, Ollama, ...).

    Args:
        model: ``"openai/<model>"``.
        base_url: the API root (``.../v1``); default ``$OPENAI_BASE_URL`` or OpenAI's.
        api_key: the key; default ``$OPENAI_API_KEY``. Never logged, cached or saved.
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
    supports_tools = True
    supports_logprobs = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        supports_json_schema: bool | None = None,
        supports_scoring: bool = False,
        score_top_logprobs: int = 20,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", 120.0)
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).rstrip("/")
        parsed = urlparse(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigurationError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        self._is_openai = parsed.hostname == "api.openai.com"
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if self._is_openai and not self._api_key:
            raise ConfigurationError("OpenAI needs an API key: pass api_key=... or set OPENAI_API_KEY")
        self._headers = dict(headers or {})
        super().__init__(model, **kwargs)
        self.model_name = model.split("/", 1)[1]
        self.supports_json_schema = self._is_openai if supports_json_schema is None else supports_json_schema
        self.supports_scoring = supports_scoring
        if score_top_logprobs < 1:
            raise ConfigurationError(f"score_top_logprobs must be at least 1, got {score_top_logprobs}")
        self.score_top_logprobs = score_top_logprobs
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    @property
    def endpoint_label(self) -> str:
        parsed = urlparse(getattr(self, "base_url", ""))
        return f"{self.model} at {parsed.scheme}://{parsed.hostname}:{parsed.port or ''}".rstrip(":")

    def __repr__(self) -> str:
        return f"OpenAILM(model={self.model!r}, base_url={redact_url(self.base_url)!r})"

    async def _session(self) -> Any:
        try:
            import aiohttp
        except ImportError:  # pragma: no cover - aiohttp is a core dependency
            raise MissingDependencyError("aiohttp", "all", "The OpenAI-compatible client") from None
        loop = asyncio.get_running_loop()
        entry = self._sessions.get(loop)
        if entry is None or entry[0].closed:
            connector = aiohttp.TCPConnector(limit=self.limiter.limit or 0, ttl_dns_cache=300)
            headers = {"Content-Type": "application/json", **self._headers}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            session = aiohttp.ClientSession(connector=connector, headers=headers)
            entry = (session, await close_with_loop(session.close))  # closed when the loop shuts down
            self._sessions[loop] = entry
        return entry[0]

    async def aclose(self) -> None:
        """Close the HTTP session of the running event loop (it is also closed when the loop ends)."""
        loop = asyncio.get_running_loop()
        entry = self._sessions.pop(loop, None)
        if entry is not None:
            await entry[0].close()

    def _body(self, messages: list[Message], settings: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model_name, "messages": messages}
        for key, value in settings.items():
            if key == "max_tokens" and self._is_openai:
                body["max_completion_tokens"] = value  # OpenAI's own API; other servers want max_tokens
            elif key == "logprobs" and isinstance(value, int) and not isinstance(value, bool):
                body["logprobs"] = True
                body["top_logprobs"] = value
            else:
                body[key] = value
        return body

    async def _post(self, body: dict[str, Any]) -> Any:
        import aiohttp

        session = await self._session()
        try:
            response = await session.post(f"{self.base_url}/chat/completions", json=body)
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
        message = f"{self.endpoint_label}: HTTP {status}: {detail}"
        if status == 429:
            raise RateLimitError(message, status=status, retry_after=parse_retry_after(retry_after))
        raise ProviderError(
            message, status=status, retryable=status in _RETRYABLE_STATUS, retry_after=parse_retry_after(retry_after)
        )

    async def _send(self, messages: list[Message], settings: dict[str, Any]) -> LMResponse:
        import aiohttp

        response = await self._post(self._body(messages, settings))
        try:
            raw = await response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise ProviderError(f"{self.endpoint_label}: connection lost ({type(exc).__name__})") from None
        finally:
            response.release()
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ProviderResponseError(f"{self.endpoint_label}: response is not valid JSON") from None
        return parse_chat_response(data, self.model, messages)

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

    async def astream(self, messages: list[Message], **overrides: Any) -> AsyncIterator[str]:
        """Yield text chunks as the server streams them (server-sent events)."""
        import aiohttp

        settings = self.stream_settings(overrides)
        body = {**self._body(messages, settings), "stream": True}
        if self.breaker is not None:
            self.breaker.before_request()
        sem = self.limiter.semaphore()
        if sem is not None:
            await sem.acquire()
        start = time.perf_counter()
        chunks: list[str] = []
        try:
            response = await self._post(body)
            try:
                async for line in response.content:
                    text = line.decode("utf-8", "replace").strip()
                    if not text.startswith("data:"):
                        continue
                    payload = text[5:].strip()
                    if payload == "[DONE]":
                        break
                    try:
                        event = json.loads(payload)
                    except ValueError:
                        raise ProviderResponseError(f"{self.endpoint_label}: malformed stream event") from None
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            chunks.append(piece)
                            yield piece
            except (aiohttp.ClientError, OSError) as exc:
                raise ProviderError(f"{self.endpoint_label}: stream broken ({type(exc).__name__})") from None
            finally:
                response.release()
        finally:
            if sem is not None:
                sem.release()
        if self.breaker is not None:
            self.breaker.record_success()
        text = "".join(chunks)
        usage = Usage(estimate_message_tokens(messages), estimate_tokens(text), calls=1)
        result = LMResponse([Completion(text=text, finish_reason="stop")], usage, self.model)
        result.latency = time.perf_counter() - start
        self._price(result)
        self._record(messages, settings, result)
