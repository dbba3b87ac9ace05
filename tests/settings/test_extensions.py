"""The extensions registry: built-ins, in-process registration, broken extensions, a real installed package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import elixirml as em
from elixirml.adapters import adapter_for
from elixirml.cli import app
from elixirml.errors import ConfigurationError
from elixirml.extensions import Extension, Registry
from elixirml.lm import Completion

SRC = Path(em.__file__).resolve().parents[1]


def test_builtin_providers_resolve_through_the_registry():
    names = em.extensions.names("lms")
    assert {"local", "openai", "anthropic", "litellm"} <= set(names)
    info = {i.name: i for i in em.extensions.list("lms")}
    assert info["openai"].origin == "built-in" and info["openai"].version == em.__version__
    assert "tools" in info["openai"].capabilities
    lm = em.LM("openai/some-model", base_url="http://127.0.0.1:9/v1", api_key="k")
    assert type(lm) is em.extensions.get("lms", "openai")


def test_lm_base_no_longer_imports_providers_by_hand():
    source = (SRC / "elixirml" / "lm" / "_base.py").read_text()
    assert "from ._openai import" not in source and "from ._local import" not in source


def test_unknown_provider_names_the_installed_ones():
    with pytest.raises(ConfigurationError, match=r"Unknown LM provider 'acme'.*openai"):
        em.LM("acme/model")


def _echo_lm_class():
    class EchoLM(em.LM):
        async def _send(self, messages, settings):
            return em.LMResponse([Completion("[[ ## answer ## ]]\necho")])

    return EchoLM


def test_register_in_process_provider_and_metric():
    echo = _echo_lm_class()
    em.extensions.register("lms", Extension("echo", "2.0", provides=echo, capabilities=["chat"]))
    em.extensions.register("metrics", Extension("always", "1.0", provides=lambda ex, pred, trace=None: 1.0))
    try:
        lm = em.LM("echo/x", cache=False)
        assert isinstance(lm, echo) and lm.model == "echo/x"
        info = {(i.kind, i.name): i for i in em.extensions.list()}
        assert info[("lms", "echo")].origin == "register()" and info[("lms", "echo")].capabilities == ("chat",)
        assert em.extensions.get("metrics", "always")(None, None) == 1.0
        with pytest.raises(ConfigurationError, match="already provided"):
            em.extensions.register("lms", Extension("echo", "2.1", provides=echo))
    finally:
        em.extensions.unregister("lms", "echo")
        em.extensions.unregister("metrics", "always")
    assert "echo" not in em.extensions.names("lms")


def test_register_refuses_bad_metadata_and_incompatible_versions():
    with pytest.raises(ConfigurationError, match="version"):
        em.extensions.register("metrics", Extension("m1", "", provides=len))
    with pytest.raises(ConfigurationError, match=r"requires elixirml>=99"):
        em.extensions.register("metrics", Extension("m2", "1.0", provides=len, requires=">=99"))
    with pytest.raises(ConfigurationError, match="kind"):
        em.extensions.register("widgets", Extension("m3", "1.0", provides=len))
    assert "m1" not in em.extensions.names("metrics") and "m2" not in em.extensions.names("metrics")


def test_a_provider_that_is_not_an_lm_class_is_refused():
    em.extensions.register("lms", Extension("notlm", "1.0", provides=dict))
    try:
        with pytest.raises(ConfigurationError, match="not an em.LM subclass"):
            em.LM("notlm/x")
    finally:
        em.extensions.unregister("lms", "notlm")


def test_broken_entry_points_are_reported_and_skipped(tmp_path, monkeypatch):
    module = tmp_path / "brokenext.py"
    module.write_text(
        textwrap.dedent(
            """
            from elixirml.extensions import Extension
            good = Extension("good", "1.0", provides=len, capabilities=["x"])
            misnamed = Extension("other", "1.0", provides=len)
            raise_in_init = Extension("boom", "1.0", provides=len, initialize=lambda config: 1 / 0)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(
        [
            ("good", "brokenext:good", "elixirml.metrics"),
            ("misnamed", "brokenext:misnamed", "elixirml.metrics"),
            ("missing", "no_such_module_xyz:thing", "elixirml.metrics"),
            ("boom", "brokenext:raise_in_init", "elixirml.metrics"),
            ("good", "brokenext:good", "elixirml.metrics"),
        ],
        discover=False,
    )
    infos = {(i.name, i.error is None) for i in registry.list()}
    assert ("good", True) in infos
    errors = {i.name: i.error for i in registry.list() if i.error}
    assert "bad metadata" in errors["misnamed"]
    assert "No module named 'no_such_module_xyz'" in errors["missing"]
    assert "ZeroDivisionError" in errors["boom"]
    assert "already taken" in errors["good"]
    assert registry.get("metrics", "good") is len
    with pytest.raises(ConfigurationError, match="unusable.*no_such_module_xyz"):
        registry.get("metrics", "missing")


def test_initialize_receives_its_table_from_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "elixirml.toml").write_text('[extensions.withcfg]\nendpoint = "http://x"\n')
    monkeypatch.chdir(tmp_path)
    em.reload_config()
    seen = []
    em.extensions.register("tools", Extension("withcfg", "1.0", provides=len, initialize=seen.append))
    em.extensions.unregister("tools", "withcfg")
    assert seen == [{"endpoint": "http://x"}]


def test_cli_lists_extensions():
    result = CliRunner().invoke(app, ["extensions", "--kind", "lms", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["name"] for r in rows} >= {"local", "openai"} and all(r["kind"] == "lms" for r in rows)


# ---------------------------------------------------------------------- a real third-party package
_BACKEND = '''
"""A minimal in-tree PEP 517 backend (stdlib only), so the test needs neither network nor 'wheel'."""
import base64, hashlib, pathlib, tomllib, zipfile

def _meta():
    return tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = _meta()
    name, version = project["name"].replace("-", "_"), project["version"]
    info = f"{name}-{version}.dist-info"
    files = {}
    for path in pathlib.Path("src").rglob("*.py"):
        files[path.relative_to("src").as_posix()] = path.read_bytes()
    metadata = f"Metadata-Version: 2.1\\nName: {project['name']}\\nVersion: {version}\\n"
    metadata += "".join(f"Requires-Dist: {d}\\n" for d in project.get("dependencies", []))
    files[f"{info}/METADATA"] = metadata.encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    entry = ""
    for group, points in project.get("entry-points", {}).items():
        entry += f"[{group}]\\n" + "".join(f"{k} = {v}\\n" for k, v in points.items())
    files[f"{info}/entry_points.txt"] = entry.encode()
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    wheel = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel
'''

_PACKAGE = '''
import elixirml as em
from elixirml.extensions import Extension
from elixirml.lm import Completion

class AcmeLM(em.LM):
    """Answers every question with the model name (after the provider)."""

    default_cache = False

    async def _send(self, messages, settings):
        return em.LMResponse([Completion("[[ ## answer ## ]]\\n" + self.model.partition("/")[2])], model=self.model)

def shout_match(example, prediction, trace=None):
    return float(str(prediction.answer).upper() == str(example.answer).upper())

acme_lm = Extension("acme", "1.2.0", provides=AcmeLM, capabilities=["chat"], description="test provider")
shout = Extension("shout_match", "1.2.0", provides=shout_match, capabilities=["case_insensitive"])
'''


def _make_package(root: Path, name: str, entry_points: dict[str, dict[str, str]], dependencies: list[str]) -> Path:
    module = name.replace("-", "_")
    (root / "src" / module).mkdir(parents=True)
    (root / "src" / module / "__init__.py").write_text(_PACKAGE)
    (root / "_backend.py").write_text(_BACKEND)
    lines = [
        "[build-system]",
        "requires = []",
        'build-backend = "_backend"',
        'backend-path = ["."]',
        "[project]",
        f'name = "{name}"',
        'version = "1.2.0"',
        f"dependencies = {json.dumps(dependencies)}",
    ]
    for group, points in entry_points.items():
        lines.append(f'[project.entry-points."{group}"]')
        lines += [f'{key} = "{value}"' for key, value in points.items()]
    (root / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return root


def _pip_install(package: Path, target: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-build-isolation",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(package),
        ],
        check=True,
        capture_output=True,
        timeout=240,
    )


def test_real_third_party_package_adds_a_provider_and_a_metric(tmp_path):
    target = tmp_path / "site"
    good = _make_package(
        tmp_path / "acme",
        "acme-elixirml",
        {
            "elixirml.lms": {"acme": "acme_elixirml:acme_lm"},
            "elixirml.metrics": {"shout_match": "acme_elixirml:shout"},
        },
        ["elixirml>=0.1"],
    )
    future = _make_package(
        tmp_path / "future",
        "future-elixirml",
        {"elixirml.metrics": {"future": "future_elixirml:shout"}},
        ["elixirml>=99"],
    )
    broken = _make_package(
        tmp_path / "broken", "broken-elixirml", {"elixirml.tools": {"gone": "broken_elixirml.missing:thing"}}, []
    )
    for package in (good, future, broken):
        _pip_install(package, target)
    assert (target / "acme_elixirml-1.2.0.dist-info" / "entry_points.txt").is_file()

    script = textwrap.dedent(
        """
        import json
        import elixirml as em

        lm = em.LM("acme/paris")
        em.configure(lm=lm)
        pred = em.Predict("question -> answer")(question="Capital of France?")
        metric = em.extensions.get("metrics", "shout_match")
        score = metric(em.Example(question="q", answer="PARIS"), pred)
        infos = [i.__dict__ for i in em.extensions.list()]
        print(json.dumps({"type": type(lm).__name__, "answer": pred.answer, "score": score, "infos": infos}))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(SRC)])}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["type"] == "AcmeLM" and out["answer"] == "paris" and out["score"] == 1.0
    infos = {(i["kind"], i["name"]): i for i in out["infos"]}
    acme = infos[("lms", "acme")]
    assert acme["version"] == "1.2.0" and acme["capabilities"] == ["chat"] and acme["origin"] == "acme-elixirml 1.2.0"
    assert infos[("metrics", "shout_match")]["error"] is None
    assert "requires elixirml>=99" in infos[("metrics", "future")]["error"]
    assert "cannot import" in infos[("tools", "gone")]["error"]

    cli = subprocess.run(
        [sys.executable, "-m", "elixirml", "extensions"], env=env, capture_output=True, text=True, timeout=240
    )
    assert cli.returncode == 0, cli.stderr
    assert "acme" in cli.stdout and "1.2.0" in cli.stdout and "skipped (broken)" in cli.stdout
    assert "future" in cli.stdout.split("skipped (broken)")[1]


def test_an_extension_adapter_is_usable_by_name():
    class LoudChat(em.ChatAdapter):
        pass

    em.extensions.register("adapters", Extension("loud", "1.0", provides=LoudChat, capabilities=["text"]))
    try:
        em.configure(adapter="loud")
        lm = em.DummyLM([{"answer": "ok"}])
        assert em.Predict("question -> answer", lm=lm)(question="q").answer == "ok"
        assert isinstance(adapter_for(lm, "loud"), LoudChat)
        with pytest.raises(ConfigurationError, match="Unknown adapter name 'quiet'"):
            adapter_for(lm, "quiet")
    finally:
        em.extensions.unregister("adapters", "loud")
