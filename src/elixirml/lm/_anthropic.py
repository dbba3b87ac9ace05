"""Anthropic's Messages API through the official SDK (extra ``anthropic``)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ..errors import MissingDependencyError, ProviderError, ProviderTimeoutError, RateLimitError
from ._base import LM
from ._openai import parse_retry_after
from ._types import Completion, LMResponse, Message, Usage

_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def split_system(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """Anthropic takes the system prompt apart from the turns."""
    system = [m["content"] for m in messages if m.get("role") == "system" and isinstance(m.get("content"), str)]
    turns = [{"role": m["role"], "content": m["content"]} for m in messages if m.get("role") in ("user", "assistant")]
    return ("\n\n".join(system) or None), turns


def convert_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-style function tools -> Anthropic tools."""
    converted = []
    for tool in tools:
        fn = tool.get("function", tool)
        converted.append(
            {
                "name": fn["name"],
                "description": fn.get("description", ""),
                "input_schema": fn.get("parameters", {"type": "object", "properties": {}}),
            }
        )
    return converted


class AnthropicLM(LM):
    """Claude models through the official ``anthropic`` SDK.

    Args:
        model: ``"anthropic/<model>"``.
        api_key: the key; default ``$ANTHROPIC_API_KEY``. Never logged, cached or saved.
        base_url: an alternative API root (a proxy or a test server).
        **kwargs: as for :class:`~elixirml.lm.LM`.
    """

    provider = "anthropic"
    supports_tools = True

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("timeout", 120.0)
        super().__init__(model, **kwargs)
        self.model_name = model.split("/", 1)[1]
        self._api_key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
        self.base_url = base_url
        self._clients: dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"AnthropicLM(model={self.model!r})"

    def _client(self) -> Any:
        try:
            import anthropic
        except ImportError:
            raise MissingDependencyError("anthropic", "anthropic", "Anthropic models") from None
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client = anthropic.AsyncAnthropic(api_key=self._api_key, base_url=self.base_url, max_retries=0)
            self._clients[loop_id] = client
        return client

    async def _send(self, messages: list[Message], settings: dict[str, Any]) -> LMResponse:
        client = self._client()  # raises MissingDependencyError without the extra
        import anthropic

        system, turns = split_system(messages)
        request: dict[str, Any] = {"model": self.model_name, "messages": turns, "max_tokens": settings["max_tokens"]}
        if system:
            request["system"] = system
        for key in ("temperature", "top_p", "top_k"):
            if key in settings:
                request[key] = settings[key]
        if "stop" in settings:
            stop = settings["stop"]
            request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if settings.get("tools"):
            request["tools"] = convert_tools(settings["tools"])
        n = int(settings.get("n", 1))
        try:
            replies = await asyncio.gather(*(client.messages.create(**request) for _ in range(n)))
        except anthropic.RateLimitError as exc:
            raise RateLimitError(
                f"{self.model}: rate limited",
                status=429,
                retry_after=parse_retry_after(exc.response.headers.get("retry-after")),
            ) from None
        except anthropic.APITimeoutError:
            raise ProviderTimeoutError(f"{self.model}: request timed out") from None
        except anthropic.APIStatusError as exc:
            raise ProviderError(
                f"{self.model}: HTTP {exc.status_code}: {exc.message}",
                status=exc.status_code,
                retryable=exc.status_code in _RETRYABLE_STATUS,
            ) from None
        except anthropic.APIConnectionError:
            raise ProviderError(f"{self.model}: connection failed") from None
        completions = []
        usage = Usage(calls=1)
        for reply in replies:
            texts = [b.text for b in reply.content if b.type == "text"]
            calls = [{"id": b.id, "name": b.name, "arguments": b.input} for b in reply.content if b.type == "tool_use"]
            completions.append(
                Completion(text="".join(texts), tool_calls=calls or None, finish_reason=reply.stop_reason)
            )
            usage.prompt_tokens += reply.usage.input_tokens
            usage.completion_tokens += reply.usage.output_tokens
        return LMResponse(completions=completions, usage=usage, model=self.model)
