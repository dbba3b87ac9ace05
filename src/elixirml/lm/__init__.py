"""LM layer: clients, embedders (local llama.cpp, OpenAI-compatible, Anthropic, LiteLLM), test doubles, cache, usage."""

from typing import TYPE_CHECKING

from .. import settings as _process_settings  # not _settings: that name is this package's submodule
from .._lazy import lazy_getattr
from ._base import LM, History, is_truncated
from ._settings import PROVIDER_SETTINGS, SETTING_NAMES, MergedSettings, RequestSettings, check_settings, merge_settings
from ._types import Completion, LMResponse, Message, Usage, estimate_message_tokens, estimate_tokens
from ._usage import (
    PRICES,
    CallBudget,
    UsageTracker,
    limit_calls,
    open_budgets,
    price_for,
    record_usage,
    spending_limit,
    track_usage,
)

if TYPE_CHECKING:
    from ._cache import Cache
    from ._embed import (
        Embedder,
        FunctionEmbedder,
        LocalEmbedder,
        OpenAIEmbedder,
        embedder_from_state,
        saveable_function,
    )
    from ._litellm import LiteLLMLM
    from ._openai import parse_chat_response
    from ._testing import DummyLM, FunctionLM

# Loaded on first use, so that `import elixirml` does not pay for the embedders, the HTTP
# clients, the test doubles or the SQLite cache (the LM opens its cache on the first call).
__getattr__ = lazy_getattr(
    __name__,
    {
        "Cache": "._cache",
        **dict.fromkeys(
            (
                "Embedder",
                "FunctionEmbedder",
                "LocalEmbedder",
                "OpenAIEmbedder",
                "embedder_from_state",
                "saveable_function",
            ),
            "._embed",
        ),
        "LiteLLMLM": "._litellm",
        "parse_chat_response": "._openai",
        **dict.fromkeys(("DummyLM", "FunctionLM"), "._testing"),
    },
    globals(),
)

_process_settings.register_lm_factory(LM)

__all__ = [
    "LM",
    "PRICES",
    "PROVIDER_SETTINGS",
    "SETTING_NAMES",
    "Cache",
    "CallBudget",
    "Completion",
    "DummyLM",
    "Embedder",
    "FunctionEmbedder",
    "FunctionLM",
    "History",
    "LMResponse",
    "LiteLLMLM",
    "LocalEmbedder",
    "MergedSettings",
    "Message",
    "OpenAIEmbedder",
    "RequestSettings",
    "Usage",
    "UsageTracker",
    "check_settings",
    "embedder_from_state",
    "estimate_message_tokens",
    "estimate_tokens",
    "is_truncated",
    "limit_calls",
    "merge_settings",
    "open_budgets",
    "parse_chat_response",
    "price_for",
    "record_usage",
    "saveable_function",
    "spending_limit",
    "track_usage",
]
