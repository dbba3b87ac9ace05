"""Bad input fails where it is given, with a typed error naming it (reliability issue item 12)."""

import pytest
from typer.testing import CliRunner

import elixirml as em
from elixirml.errors import ConfigurationError, LoadError, SignatureError


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("a: 5 -> b", r"Field 'a'.*5 is not a type"),
        ("a: list[5] -> b", r"Field 'a'.*5 is not a type"),
        ("_a -> b", r"'_a'.*may not start with '_'"),
        ("q -> model_config", r"'model_config'.*Pydantic reserves"),
        ("a: tuple[()] -> b", r"Field 'a'.*Empty type arguments"),
        ("a: " + " | ".join(["int", "str"] * 2500) + " -> b", r"Field 'a'.*(nested|characters long)"),
        ("a: " + "list[" * 300 + "int" + "]" * 300 + " -> b", r"Field 'a'.*(nested|characters long)"),
        ("a: Optional -> b", r"Field 'a'.*not a type"),
    ],
)
def test_bad_signature_strings_fail_at_construction(spec, names):
    with pytest.raises(SignatureError, match=names):
        em.Signature(spec)


def test_good_signature_strings_still_work():
    sig = em.Signature("a: int | None, b: Literal['x', 'y'], c: tuple[int, str] -> d: list[str], model_name: str")
    assert list(sig.fields) == ["a", "b", "c", "d", "model_name"]


def test_predict_refuses_a_config_or_demos_of_the_wrong_type():
    with pytest.raises(ConfigurationError, match="config=.*takes a dict"):
        em.Predict("q -> a", config="x")
    with pytest.raises(ConfigurationError, match=r"demos\[0\].*is 1"):
        em.Predict("q -> a", demos=[1])
    assert em.Predict("q -> a", demos=[{"q": "1", "a": "2"}], config={"temperature": 0}).demos


def test_a_malformed_version_id_is_a_load_error(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 's.db'}")
    store.save(em.Predict("q -> a"), "p")
    for version in ("#abc", "#", True, "latest!"):
        with pytest.raises(LoadError, match="Version"):
            store.load("p", version=version)
    store.close()


def test_configure_takes_a_model_name_for_lm(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # a local server: no key needed, none contacted
    settings = em.configure(lm="openai/x")
    assert isinstance(settings.lm, em.LM) and settings.lm.model == "openai/x"
    with pytest.raises(ConfigurationError):
        em.configure(lm="nonsense-provider/x")
    with pytest.raises(ConfigurationError, match="'lm' expects an em.LM"):
        em.configure(lm=42)


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("max_tokens", "lots", "'max_tokens' expects an int >= 1"),
        ("max_tokens", 0, "'max_tokens' expects an int >= 1"),
        ("max_tokens", True, "'max_tokens' expects an int >= 1"),
        ("history_size", -1, "'history_size' expects an int >= 0"),
        ("trace", "yes", "'trace' expects True or False"),
        ("store", "notaurl", "'store' expects a database URL"),
        ("cache", 3.5, "'cache' expects True, False, a path"),
    ],
)
def test_configure_refuses_a_value_of_the_wrong_type_when_set(setting, value, expected):
    with pytest.raises(ConfigurationError, match=expected):
        em.configure(**{setting: value})
    with pytest.raises(ConfigurationError, match=expected), em.context(**{setting: value}):
        pass
    em.configure(max_tokens=64, trace=False, store="sqlite:///x.db", cache=False, history_size=0)


def test_cli_refuses_a_store_that_is_not_a_url():
    from elixirml.cli import app

    result = CliRunner().invoke(app, ["--store", "notaurl", "programs", "list"])
    assert result.exit_code == 2
    assert "database URL" in result.output
