"""Any provider LiteLLM knows, through ``litellm.acompletion`` (extra ``litellm``)."""

from __future__ import annotations

import os
from typing import Any

from .._secrets import redact_text, redact_url
from ..errors import MissingDependencyError, ProviderError, ProviderTimeoutError, RateLimitError
from ._base import LM
from ._openai import _one_base_url, key_advice, parse_chat_response
from ._settings import PROVIDER_SETTINGS
from ._types import LMResponse, Message

_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class LiteLLMLM(LM):
    """A model reached through LiteLLM: ``em.LM("litellm/<provider>/<model>")``.

    Args:
        model: ``"litellm/<provider>/<model>"`` (the part after ``litellm/`` goes to LiteLLM).
        api_key: passed to LiteLLM; never logged, cached or saved.
        api_base: the provider's API root, when not the default (``base_url`` is the same).
        **kwargs: as for :class:`~elixirml.lm.LM`.
    """

    provider = "litellm"
    # litellm.acompletion's own parameters; top_k (and anything else) goes through extra={...}
    supported_settings = PROVIDER_SETTINGS - {"top_k"}
    supported_extras = None
    supports_tools = True
    supports_images = True

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        api_base: str | None = None,
        base_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", 120.0)
        super().__init__(model, **kwargs)
        self.litellm_model = model.split("/", 1)[1]
        self._api_key = api_key
        self.api_base = _one_base_url(base_url, api_base, model)

    @staticmethod
    def request_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of ``litellm.acompletion`` for these request settings."""
        kwargs = {k: v for k, v in settings.items() if k != "extra"}
        logprobs = kwargs.get("logprobs")
        if isinstance(logprobs, int) and not isinstance(logprobs, bool):
            kwargs["logprobs"] = True  # an int is how many alternatives per token, as OpenAI's top_logprobs
            kwargs["top_logprobs"] = logprobs
        kwargs.update(settings.get("extra") or {})
        return kwargs

    def __repr__(self) -> str:
        return f"LiteLLMLM(model={self.model!r})"

    def _provider_options(self) -> dict[str, Any]:
        url = self.api_base
        return {"api_base": url} if url is None or redact_url(url) == url else {}

    def _provider_secrets(self) -> dict[str, Any]:
        secrets: dict[str, Any] = {}
        if self._api_key is not None:
            secrets["api_key"] = self._api_key
        if self.api_base is not None and redact_url(self.api_base) != self.api_base:
            secrets["api_base"] = self.api_base
        return secrets

    def _redacted(self, exc: BaseException) -> str:
        """The start of a LiteLLM error's text, with the key (and anything key-shaped) redacted."""
        env = f"{self.litellm_model.split('/', 1)[0].upper()}_API_KEY"  # where LiteLLM looks for a provider's key
        return redact_text(str(exc)[:300], (self._api_key, os.environ.get(env)))

    async def _send(self, messages: list[Message], settings: dict[str, Any]) -> LMResponse:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map at import
        try:
            import litellm
        except ImportError:
            raise MissingDependencyError("litellm", "litellm", "LiteLLM models") from None
        extra: dict[str, Any] = {}
        if self._api_key is not None:
            extra["api_key"] = self._api_key
        if self.api_base is not None:
            extra["api_base"] = self.api_base
        try:
            reply = await litellm.acompletion(
                model=self.litellm_model, messages=messages, num_retries=0, **extra, **self.request_kwargs(settings)
            )
        except litellm.RateLimitError:
            raise RateLimitError(f"{self.model}: rate limited", status=429) from None
        except litellm.Timeout:
            raise ProviderTimeoutError(f"{self.model}: request timed out") from None
        except litellm.AuthenticationError as exc:
            provider = self.litellm_model.split("/", 1)[0]
            holder = f"{provider.upper()}_API_KEY ({provider}'s key)"
            if self._api_key:
                holder = "the api_key passed to em.LM"
            raise ProviderError(
                f"{self.model}: {type(exc).__name__}: {self._redacted(exc)}. {key_advice(401, holder)}",
                status=401,
                retryable=False,
            ) from None
        except litellm.APIError as exc:
            status = getattr(exc, "status_code", None)
            raise ProviderError(
                f"{self.model}: {type(exc).__name__}: {self._redacted(exc)}",
                status=status,
                retryable=status is None or status in _RETRYABLE_STATUS,
            ) from None
        except (litellm.BadRequestError, litellm.NotFoundError) as exc:
            raise ProviderError(f"{self.model}: {type(exc).__name__}: {self._redacted(exc)}", retryable=False) from None
        data = reply.model_dump() if hasattr(reply, "model_dump") else dict(reply)
        return parse_chat_response(data, self.model, messages)
