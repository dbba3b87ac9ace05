"""``dspy.clients.lm``: DSPy's ``LM``, a model reached through LiteLLM, with DSPy's keywords.

``dspy.LM("openai/gpt-4o-mini")`` is ElixirML's LiteLLM client for the same model string
(LiteLLM resolves the provider and its key, as in DSPy), under ElixirML's cache, limits,
retries, history and usage accounting.
"""

from __future__ import annotations

from typing import Any

from ...lm import PROVIDER_SETTINGS, LiteLLMLM
from .base_lm import LM_CLASS_STATE_KEY, DSPyLMMixin

__all__ = ["LM"]

# DSPy LM keywords that concern fine-tuning and serving, kept on the object and not sent.
_KEPT = ("finetuning_model", "launch_kwargs", "train_kwargs", "provider", "use_developer_role", "callbacks")


class LM(DSPyLMMixin, LiteLLMLM):
    """DSPy's ``dspy.LM(model, model_type="chat", temperature=None, max_tokens=None, cache=True, ...)``.

    Args:
        model: a LiteLLM model string (``"openai/gpt-4o-mini"``, ``"anthropic/claude-..."``).
        model_type: ``"chat"``, ``"text"`` or ``"responses"`` (recorded; requests are chat requests).
        temperature: default sampling temperature.
        max_tokens: default cap on generated tokens.
        cache: ``True`` (DSPy's default) caches answers; ``False`` does not.
        num_retries: most retries of a failed request (DSPy's default 3).
        rollout_id: a default rollout id (part of the cache key, not sent, as in DSPy).
        **kwargs: more default request settings (``top_p``, ``stop``, ``n``, ...), or DSPy's
            fine-tuning keywords (``finetuning_model``, ``launch_kwargs``, ``train_kwargs``,
            ``provider``, ``use_developer_role``, ``callbacks``), kept as attributes.
    """

    def __init__(
        self,
        model: str,
        model_type: str = "chat",
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache: Any = True,
        num_retries: int = 3,
        **kwargs: Any,
    ) -> None:
        kwargs.pop(LM_CLASS_STATE_KEY, None)  # a saved state's class marker is never a setting
        kept = {name: kwargs.pop(name, None) for name in _KEPT}
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in PROVIDER_SETTINGS and k not in _LM_OPTIONS}
        if extra:
            kwargs["extra"] = {**kwargs.get("extra", {}), **extra}
        LiteLLMLM.__init__(
            self,
            "litellm/" + model,
            temperature=temperature,
            max_tokens=max_tokens,
            cache=cache,
            num_retries=num_retries,
            **kwargs,
        )
        self.model = model
        self.model_type = model_type
        for name, value in kept.items():
            setattr(self, name, value)
        self.callbacks = list(kept["callbacks"] or [])

    def __repr__(self) -> str:
        return f"LM(model={self.model!r})"

    def _dspy_state_extras(self) -> dict[str, Any]:
        return {
            "finetuning_model": getattr(self, "finetuning_model", None),
            "launch_kwargs": dict(getattr(self, "launch_kwargs", None) or {}),
            "train_kwargs": dict(getattr(self, "train_kwargs", None) or {}),
        }


_LM_OPTIONS = frozenset(
    {
        "api_key",
        "api_base",
        "base_url",
        "max_concurrency",
        "rpm",
        "tpm",
        "retry",
        "timeout",
        "fallbacks",
        "price",
        "circuit_breaker",
        "history_size",
        "history_bytes",
    }
)
