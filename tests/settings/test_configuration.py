"""Layered configuration: defaults < file (profile) < ELIXIRML_* env < configure() < context()."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import elixirml as em
from elixirml.cli import app
from elixirml.errors import ConfigurationError
from elixirml.settings import current, describe

PYPROJECT = """
[project]
name = "demo"

[tool.elixirml]
max_tokens = 100
history_size = 5

[tool.elixirml.profiles.prod]
inherits = "default"
max_tokens = 300
trace = false

[tool.elixirml.profiles.prod-eu]
inherits = "prod"
store = "postgresql://app:hunter2@db/prod"

[tool.elixirml.extensions.acme]
api_key = "sk-secret"
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    nested = tmp_path / "pkg" / "sub"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)  # the nearest pyproject.toml is found from a subdirectory
    for name in ("ELIXIRML_PROFILE", "ELIXIRML_MAX_TOKENS", "ELIXIRML_LM", "ELIXIRML_STORE", "ELIXIRML_TRACE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def layers():
    return {name: layer for name, _, layer in describe()}


def test_layers_apply_in_the_documented_order(project, monkeypatch):
    em.reload_config()
    assert current().max_tokens == 100 and current().history_size == 5
    assert "[tool.elixirml]" in current().layer_of("max_tokens")
    assert current().layer_of("trace") == "default"

    monkeypatch.setenv("ELIXIRML_MAX_TOKENS", "256")
    em.reload_config()
    assert current().max_tokens == 256 and current().layer_of("max_tokens") == "env ELIXIRML_MAX_TOKENS"
    assert current().history_size == 5  # the file still supplies what the environment does not

    em.configure(max_tokens=64)
    assert current().max_tokens == 64 and current().layer_of("max_tokens") == "configure()"
    with em.context(max_tokens=8):
        assert current().max_tokens == 8 and current().layer_of("max_tokens") == "context()"
    assert current().max_tokens == 64

    em.reload_config()  # re-reads file and env; configure() stays on top
    assert current().max_tokens == 64


def test_elixirml_toml_and_its_profiles(tmp_path, monkeypatch):
    (tmp_path / "elixirml.toml").write_text('max_tokens = 7\n[profiles.fast]\ninherits = "default"\ntrace = false\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ELIXIRML_PROFILE", "fast")
    em.reload_config()
    assert current().max_tokens == 7 and current().trace is False
    assert current().layer_of("trace").endswith("[profiles.fast]")


def test_profiles_inherit_from_parents(project, monkeypatch):
    monkeypatch.setenv("ELIXIRML_PROFILE", "prod-eu")
    em.reload_config()
    s = current()
    assert (s.max_tokens, s.trace, s.history_size) == (300, False, 5)
    assert s.store == "postgresql://app:hunter2@db/prod"
    assert "profiles.prod]" in s.layer_of("max_tokens") and "profiles.prod-eu]" in s.layer_of("store")
    assert "[tool.elixirml]" in s.layer_of("history_size")
    em.reload_config(profile="default")
    assert current().max_tokens == 100 and current().trace is True


def test_profile_without_inherits_starts_from_the_defaults(tmp_path, monkeypatch):
    (tmp_path / "elixirml.toml").write_text("max_tokens = 7\n[profiles.bare]\ntrace = false\n")
    monkeypatch.chdir(tmp_path)
    em.reload_config(profile="bare")
    assert current().max_tokens == 512 and current().trace is False


def test_unknown_and_cyclic_profiles_are_errors(tmp_path, monkeypatch):
    (tmp_path / "elixirml.toml").write_text('[profiles.a]\ninherits = "b"\n[profiles.b]\ninherits = "a"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="cycle"):
        em.reload_config(profile="a")
    with pytest.raises(ConfigurationError, match=r"No profile 'nope'.*\['default', 'a', 'b'\]"):
        em.reload_config(profile="nope")


def test_bad_values_name_the_key_the_layer_and_the_expected_type(project, monkeypatch):
    with pytest.raises(ConfigurationError, match=r"'max_tokens' expects an int >= 1, got 'lots'"):
        em.configure(max_tokens="lots")
    with pytest.raises(ConfigurationError, match="'lm' expects an em.LM"):
        em.configure(lm=42)
    with pytest.raises(ConfigurationError, match="unknown adapter name 'fancy'"):
        em.configure(adapter="fancy")
    with pytest.raises(ConfigurationError, match="'trace' expects True or False"):
        em.configure(trace="yes")

    monkeypatch.setenv("ELIXIRML_MAX_TOKENS", "lots")
    with pytest.raises(ConfigurationError, match=r"'max_tokens' \(from env ELIXIRML_MAX_TOKENS\) expects an int"):
        em.reload_config()
    monkeypatch.delenv("ELIXIRML_MAX_TOKENS")
    (project / "pyproject.toml").write_text("[tool.elixirml]\nmax_tokenz = 3\n")
    with pytest.raises(ConfigurationError, match=r"Unknown setting 'max_tokenz' in .*pyproject.toml"):
        em.reload_config()
    (project / "pyproject.toml").write_text("[tool.elixirml]\nhistory_size = -1\n")
    with pytest.raises(ConfigurationError, match=r"'history_size' \(from .*pyproject.toml.*\) expects an int >= 0"):
        em.reload_config()


def test_a_model_name_is_built_into_an_lm_from_every_layer(project, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # the provider reads its own variables
    em.configure(lm="openai/x-model")
    assert isinstance(current().lm, em.LM) and current().lm.model == "openai/x-model"

    monkeypatch.setenv("ELIXIRML_LM", "openai/gpt-4o-mini")
    em.configure(lm=None)
    em.reload_config()
    assert current().lm is None  # configure(lm=None) is the higher layer and stays
    em.settings._DEFAULT.value = em.Settings()
    em.reload_config()
    assert current().lm.model == "openai/gpt-4o-mini" and current().layer_of("lm") == "env ELIXIRML_LM"


def test_env_words_for_booleans_and_cache(project, monkeypatch):
    monkeypatch.setenv("ELIXIRML_TRACE", "false")
    monkeypatch.setenv("ELIXIRML_CACHE", "off")
    em.reload_config()
    assert current().trace is False and current().cache is False
    monkeypatch.setenv("ELIXIRML_CACHE", "/tmp/some-cache")
    em.reload_config()
    assert current().cache == "/tmp/some-cache"


def test_a_failed_reload_keeps_the_settings(project, monkeypatch):
    em.reload_config()
    before = current()
    monkeypatch.setenv("ELIXIRML_HISTORY_SIZE", "many")
    with pytest.raises(ConfigurationError):
        em.reload_config()
    assert current() is before


def test_config_show_prints_values_layers_and_masks_secrets(project, monkeypatch):
    monkeypatch.setenv("ELIXIRML_PROFILE", "prod-eu")
    monkeypatch.setenv("ELIXIRML_MAX_TOKENS", "42")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "profile: prod-eu" in out and "pyproject.toml" in out
    assert "max_tokens = 42    [env ELIXIRML_MAX_TOKENS]" in out
    assert "trace = False" in out and "profiles.prod]" in out
    assert "hunter2" not in out and "postgresql://app:***@db/prod" in out
    assert "sk-secret" not in out and "api_key=***" in out
    assert "lm = None    [default]" in out
    assert layers()["max_tokens"] == "env ELIXIRML_MAX_TOKENS"


def test_import_reads_no_files_and_settings_load_lazily():
    import subprocess
    import sys

    code = (
        "import sys, elixirml, elixirml.settings as s; "
        "print(s._DEFAULT._value is None, 'pydantic_settings' in sys.modules, "
        "'importlib.metadata' in sys.modules and elixirml.extensions.registry._ready)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["True", "False", "False"]
