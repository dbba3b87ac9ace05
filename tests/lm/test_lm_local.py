"""Request settings on the real embedded model (SmolLM2-135M-Instruct on llama.cpp)."""

import json

import pytest

import elixirml as em

pytestmark = pytest.mark.local_model


def test_llama_cpp_honours_penalties_extras_and_logprobs(tmp_path):
    pytest.importorskip("llama_cpp")
    lm = em.LM("local", cache=tmp_path / "cache.sqlite", temperature=0.0)
    messages = [{"role": "user", "content": "Say hi"}]
    response = lm.request(
        messages, max_tokens=64, logprobs=2, presence_penalty=0.5, frequency_penalty=0.1, extra={"min_p": 0.05}
    )
    tokens = response.completions[0].logprobs
    assert tokens and all(isinstance(t["logprob"], float) for t in tokens)
    assert len(tokens[0]["top_logprobs"]) == 2
    json.dumps(tokens)  # plain floats: the cache can store them
    again = lm.request(
        messages, max_tokens=64, logprobs=2, presence_penalty=0.5, frequency_penalty=0.1, extra={"min_p": 0.05}
    )
    assert again.cached and again.completions[0].logprobs == tokens
