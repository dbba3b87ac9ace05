"""LM layer: clients, embedders (local llama.cpp, OpenAI-compatible, Anthropic, LiteLLM), test doubles, cache, usage."""

from .. import settings as _process_settings  # not _settings: that name is this package's submodule
from ._base import LM
from ._cache import Cache
from ._embed import Embedder, FunctionEmbedder, LocalEmbedder, OpenAIEmbedder
from ._settings import SETTING_NAMES, RequestSettings, check_settings, merge_settings
from ._testing import DummyLM, FunctionLM
from ._types import Completion, LMResponse, Usage
from ._usage import PRICES, track_usage

_process_settings.register_lm_factory(LM)

__all__ = [
    "LM",
    "PRICES",
    "SETTING_NAMES",
    "Cache",
    "Completion",
    "DummyLM",
    "Embedder",
    "FunctionEmbedder",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "FunctionLM",
    "LMResponse",
    "RequestSettings",
    "Usage",
    "check_settings",
    "merge_settings",
    "track_usage",
]
