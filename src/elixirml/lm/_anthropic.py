"""Anthropic's Messages API through the official SDK (extra ``anthropic``, SDK 2.x).

SDK 2.x sends API version 2026-10-21, which takes no sampling parameters: its
``messages.create`` has no ``temperature``, ``top_p`` or ``top_k``, and the API answers 400 to
them even through ``extra_body``. A request with one of them raises ConfigurationError here.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import Any

from .._secrets import redact_text, redact_url
from ..errors import ConfigurationError, MissingDependencyError, ProviderError, ProviderTimeoutError, RateLimitError
from ..runtime import close_with_loop
from ._base import LM
from ._openai import _one_base_url, key_advice, parse_retry_after
from ._types import Completion, LMResponse, Message, Usage

_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def split_system(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """Anthropic takes the system prompt apart from the turns."""
    system = [m["content"] for m in messages if m.get("role") == "system" and isinstance(m.get("content"), str)]
    turns = [
        {"role": m["role"], "content": anthropic_content(m["content"])}
        for m in messages
        if m.get("role") in ("user", "assistant")
    ]
    return ("\n\n".join(system) or None), turns


def anthropic_content(content: Any) -> Any:
    """A message's content in the Messages API's form: OpenAI ``image_url`` parts become ``image`` blocks."""
    if not isinstance(content, list):
        return content
    blocks = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            if url.startswith("data:"):
                head, _, data = url.partition(",")
                media_type = head[len("data:") :].split(";", 1)[0]
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            blocks.append(part)
    return blocks


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


def convert_tool_choice(choice: str | dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-style ``tool_choice`` -> Anthropic's."""
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
        return dict(choice)  # already Anthropic's form
    named = {"auto": "auto", "required": "any", "any": "any", "none": "none"}
    if choice not in named:
        raise ConfigurationError(
            f"AnthropicLM: tool_choice {choice!r} is not one of 'auto', 'required', 'none' or a dict naming a function"
        )
    return {"type": named[choice]}


class AnthropicLM(LM):
    """Claude models through the official ``anthropic`` SDK.

    Args:
        model: ``"anthropic/<model>"``.
        api_key: the key; default ``$ANTHROPIC_API_KEY``. Never logged, cached or saved.
        base_url: an alternative API root (a proxy or a test server).
        api_base: DSPy's name for ``base_url`` (pass one of the two).
        **kwargs: as for :class:`~elixirml.lm.LM`.
    """

    provider = "anthropic"
    # What anthropic 2.x's messages.create takes: stop -> stop_sequences, n -> that many requests.
    supported_settings = frozenset({"max_tokens", "stop", "n", "tools", "tool_choice"})
    supported_extras = frozenset({"metadata", "service_tier", "thinking", "output_config", "inference_geo", "speed"})
    _setting_notes = dict.fromkeys(
        ("temperature", "top_p", "top_k"),
        "the anthropic SDK 2.x sends API version 2026-10-21, which rejects sampling parameters",
    )
    supports_tools = True
    supports_images = True

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        api_base: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", 120.0)
        super().__init__(model, **kwargs)
        self.model_name = model.split("/", 1)[1]
        self._api_key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
        self._key_holder = "the api_key passed to em.LM" if api_key is not None else "ANTHROPIC_API_KEY"
        self.base_url = _one_base_url(base_url, api_base, model)
        # One client per event loop, closed (and dropped) when its loop shuts down.
        self._clients: dict[asyncio.AbstractEventLoop, tuple[Any, Any]] = {}

    def __repr__(self) -> str:
        return f"AnthropicLM(model={self.model!r})"

    def _provider_options(self) -> dict[str, Any]:
        url = self.base_url
        return {"base_url": url} if url is None or redact_url(url) == url else {}

    def _provider_secrets(self) -> dict[str, Any]:
        secrets: dict[str, Any] = {}
        if self._key_holder != "ANTHROPIC_API_KEY" and self._api_key is not None:  # passed, not from the env
            secrets["api_key"] = self._api_key
        if self.base_url is not None and redact_url(self.base_url) != self.base_url:
            secrets["base_url"] = self.base_url
        return secrets

    async def _client(self) -> Any:
        try:
            import anthropic
        except ImportError:
            raise MissingDependencyError("anthropic", "anthropic", "Anthropic models") from None
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            client = anthropic.AsyncAnthropic(api_key=self._api_key, base_url=self.base_url, max_retries=0)
            owner = weakref.ref(self)  # not self: an LM dropped by its user must not be kept by its client's guard

            async def close() -> None:
                lm = owner()
                if lm is not None and lm._clients.get(loop, (None,))[0] is client:
                    del lm._clients[loop]
                await client.close()

            entry = (client, await close_with_loop(close))
            self._clients[loop] = entry
        return entry[0]

    def request_body(self, messages: list[Message], settings: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` for these messages and settings (one completion)."""
        system, turns = split_system(messages)
        request: dict[str, Any] = {"model": self.model_name, "messages": turns, "max_tokens": settings["max_tokens"]}
        if system:
            request["system"] = system
        if "stop" in settings:
            stop = settings["stop"]
            request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if settings.get("tools"):
            request["tools"] = convert_tools(settings["tools"])
        if "tool_choice" in settings:
            request["tool_choice"] = convert_tool_choice(settings["tool_choice"])
        request.update(settings.get("extra") or {})
        return request

    async def _send(self, messages: list[Message], settings: dict[str, Any]) -> LMResponse:
        client = await self._client()  # raises MissingDependencyError without the extra
        import anthropic

        request = self.request_body(messages, settings)
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
            message = f"{self.model}: HTTP {exc.status_code}: {redact_text(str(exc.message)[:300], (self._api_key,))}"
            if exc.status_code in (401, 403):
                message += ". " + key_advice(exc.status_code, self._key_holder)
            raise ProviderError(
                message,
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
