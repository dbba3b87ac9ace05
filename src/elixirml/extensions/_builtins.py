"""The built-in extensions, declared as entry points exactly like a third party's.

Each object here names what it provides as ``"module:attribute"``, so nothing above this layer
is imported until that extension is first used.
"""

from __future__ import annotations

from .._version import __version__
from ._registry import GROUP_PREFIX, Extension

# LM providers: em.LM("<name>/<model>").
local = Extension(
    "local",
    __version__,
    provides="elixirml.lm._local:LocalLM",
    capabilities=["chat", "json_schema", "scoring", "embedded"],
    description="SmolLM2-135M-Instruct in-process through llama.cpp (extra: local)",
)
openai = Extension(
    "openai",
    __version__,
    provides="elixirml.lm._openai:OpenAILM",
    capabilities=["chat", "json_schema", "tools", "logprobs", "streaming"],
    description="any OpenAI-compatible HTTP server",
)
anthropic = Extension(
    "anthropic",
    __version__,
    provides="elixirml.lm._anthropic:AnthropicLM",
    capabilities=["chat", "tools"],
    description="Anthropic's Messages API (extra: anthropic)",
)
litellm = Extension(
    "litellm",
    __version__,
    provides="elixirml.lm._litellm:LiteLLMLM",
    capabilities=["chat", "tools"],
    description="any provider LiteLLM supports (extra: litellm)",
)

# Adapters: Predict(adapter="<name>"), em.configure(adapter="<name>").
chat_adapter = Extension("chat", __version__, provides="elixirml.adapters:ChatAdapter", capabilities=["text"])
json_adapter = Extension("json", __version__, provides="elixirml.adapters:JSONAdapter", capabilities=["json_schema"])
plain_adapter = Extension("plain", __version__, provides="elixirml.adapters:PlainAdapter", capabilities=["text"])
xml_adapter = Extension("xml", __version__, provides="elixirml.adapters:XMLAdapter", capabilities=["text"])

# Metrics: elixirml eval --metric <name>.
exact_match = Extension("exact_match", __version__, provides="elixirml.metrics:ExactMatch", capabilities=["field"])
f1 = Extension("f1", __version__, provides="elixirml.metrics:F1", capabilities=["field"])
contains = Extension("contains", __version__, provides="elixirml.metrics:Contains", capabilities=["field"])
numeric_match = Extension(
    "numeric_match", __version__, provides="elixirml.metrics:NumericMatch", capabilities=["field"]
)

# Optimizers: elixirml optimize --optimizer <name>.
labeled = Extension("labeled", __version__, provides="elixirml.optimizers:LabeledFewShot", capabilities=["demos"])
bootstrap = Extension("bootstrap", __version__, provides="elixirml.optimizers:BootstrapFewShot", capabilities=["demos"])
random = Extension(
    "random", __version__, provides="elixirml.optimizers:RandomSearch", capabilities=["demos", "variables"]
)
mipro = Extension(
    "mipro", __version__, provides="elixirml.optimizers:MIPRO", capabilities=["instructions", "demos", "variables"]
)
variable = Extension(
    "variable",
    __version__,
    provides="elixirml.optimizers:VariableSearch",
    capabilities=["variables", "multi_objective"],
)

# Retrievers: em.retrievers.<Name>(...), found by name through the registry.
bm25 = Extension(
    "bm25",
    __version__,
    provides="elixirml.retrievers:BM25",
    capabilities=["lexical", "embedded"],
    description="BM25 on bm25s, no model needed (extra: retrieval)",
)
embeddings = Extension(
    "embeddings",
    __version__,
    provides="elixirml.retrievers:Embeddings",
    capabilities=["dense", "save"],
    description="exact cosine search over an em.Embedder's vectors; FAISS when installed (extra: retrieval)",
)
pgvector = Extension(
    "pgvector",
    __version__,
    provides="elixirml.retrievers:PGVector",
    capabilities=["dense", "shared"],
    description="PostgreSQL with the pgvector extension (extra: pgvector)",
)

_DECLARED = {
    "lms": ["local", "openai", "anthropic", "litellm"],
    "adapters": ["chat_adapter", "json_adapter", "plain_adapter", "xml_adapter"],
    "metrics": ["exact_match", "f1", "contains", "numeric_match"],
    "optimizers": ["labeled", "bootstrap", "random", "mipro", "variable"],
    "retrievers": ["bm25", "embeddings", "pgvector"],
}

#: The built-ins as entry points: ``(name, "elixirml.extensions._builtins:<attribute>", group)``.
ENTRY_POINTS = [
    (globals()[attribute].name, f"{__name__}:{attribute}", GROUP_PREFIX + kind)
    for kind, attributes in _DECLARED.items()
    for attribute in attributes
]
