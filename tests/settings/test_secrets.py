"""Credentials stay out of reprs and rows; user data is not judged by its field names (reliability issue item 13)."""

import pytest

import elixirml as em
from elixirml._secrets import find_secrets, is_credential_name, redact_url
from elixirml.errors import ConfigurationError


@pytest.mark.parametrize(
    "url",
    [
        "http://user:sk-secret-key@localhost:8000/v1",
        "https://api.example.com/v1?api_key=sk-secret-key",
        "https://api.example.com/v1?x=1&X-Api-Token=sk-secret-key",
        "http://sk-secret-key@localhost:8000/v1",
    ],
)
def test_lm_repr_hides_credentials_in_the_base_url(url):
    lm = em.LM("openai/m", base_url=url)
    shown = repr(lm)
    assert "sk-secret-key" not in shown and "***" in shown
    assert "sk-secret-key" not in lm.endpoint_label


def test_redact_url_keeps_what_is_not_secret():
    assert redact_url("https://user:pw@host:1/v1?api_key=k&x=1") == "https://user:***@host:1/v1?api_key=***&x=1"
    assert redact_url("http://localhost:8000/v1") == "http://localhost:8000/v1"
    assert redact_url("not a url") == "not a url"


@pytest.mark.filterwarnings("ignore:Query string argument")  # SQLite ignores the query; only the repr matters here
def test_store_repr_hides_credentials(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 's.db'}?password=hunter2")
    assert "hunter2" not in repr(store)
    store.close()


@pytest.mark.parametrize(
    "name", ["X-Api-Token", "api_key", "apiKey", "Authorization", "x-api-key", "client_secret", "Cookie", "password"]
)
def test_token_like_names_are_credentials(name):
    assert is_credential_name(name)


@pytest.mark.parametrize("name", ["max_tokens", "key", "total_tokens", "author", "signature", "model"])
def test_ordinary_names_are_not(name):
    assert not is_credential_name(name)


def test_headers_and_urls_with_credentials_are_refused_by_the_store(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 's.db'}")
    state = em.Predict("q -> a").dump_state()
    with pytest.raises(ConfigurationError, match=r"credentials at \['lm.defaults.extra_headers.X-Api-Token'\]"):
        store.add_version("p", {**state, "lm": {"model": "m", "defaults": {"extra_headers": {"X-Api-Token": "t"}}}})
    with pytest.raises(ConfigurationError, match=r"credentials at \['lm.defaults.api_base'\]"):
        store.add_version("p", {**state, "lm": {"model": "m", "defaults": {"api_base": "http://u:pw@host/v1"}}})
    with pytest.raises(ConfigurationError, match="credentials"):
        store.add_execution(program_name="p", inputs={}, outputs={}, trace=[{"settings": {"api_key": "sk-1"}}])
    assert store.programs() == []
    store.close()


def test_user_data_named_like_a_credential_is_stored(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 's.db'}")
    program = em.Predict("password -> strength")
    program.demos = [em.Example(password="hunter2", strength="weak").with_inputs("password")]
    store.save(program, "checker")
    assert store.load("checker").demos[0]["password"] == "hunter2"
    store.add_execution(program_name="checker", inputs={"password": "x"}, outputs={"token": "y"}, trace=[])
    assert find_secrets({"demos": [{"api_key": "not ours to judge"}]}) == []
    store.close()


def test_an_error_message_that_names_a_url_is_stored_and_a_url_with_a_password_in_it_is_not(tmp_path):
    # what a run without OPENAI_API_KEY records as its error: `elixirml run` showed a credentials refusal instead
    message = (
        "ConfigurationError: LM('openai/gpt-4o') has no API key for https://api.openai.com/v1: pass api_key=... "
        "to em.LM or set the OPENAI_API_KEY environment variable before the first request."
    )
    assert find_secrets({"error": message}) == []
    assert find_secrets({"error": "HTTPS://API.EXAMPLE.COM/v1 refused the request"}) == []
    assert find_secrets({"error": "Error: cannot reach http://u:pw@host/v1 (timed out)"}) == ["error"]
    assert find_secrets({"error": "see https://host/v1?api_key=k1234 for details"}) == ["error"]
    store = em.Store(f"sqlite:///{tmp_path / 's.db'}")
    store.add_execution(program_name="p", inputs={}, outputs={}, trace=[{"error": message}])
    assert store.last_execution()["trace"][0]["error"] == message
    store.close()
