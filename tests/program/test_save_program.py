"""Whole-program saves without pickle: ``save(directory, save_program=True)`` and ``em.load``.

The directory holds the program's class path and its JSON state; loading builds the class again
and imports its module only with consent (``allow_import=True``; ``dspy.load``'s
``allow_pickle=True``). Nothing is ever unpickled.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

import pytest

import elixirml as em
from elixirml.errors import ConfigurationError, LoadError, ProgramImportError, UnsafeLoadError

MODULE_SOURCE = """
import elixirml as em

class Pipeline(em.Module):
    def __init__(self):
        self.first = em.ChainOfThought("q -> draft")
        self.second = em.Predict("draft -> a")

    def forward(self, q):
        return self.second(draft=self.first(q=q).draft)
"""


@pytest.fixture
def saved_module(tmp_path, monkeypatch):
    """A program class in a module of its own on sys.path: ``(module, folder)``."""
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "saved_pipeline_mod.py").write_text(MODULE_SOURCE)
    monkeypatch.syspath_prepend(str(folder))
    import saved_pipeline_mod

    yield saved_pipeline_mod, folder
    sys.modules.pop("saved_pipeline_mod", None)


def test_save_program_writes_the_class_path_and_json_state_never_a_pickle(tmp_path):
    predict = em.Predict("question -> answer", temperature=0.3)
    predict.demos = [em.Example(question="q", answer="a").with_inputs("question")]
    target = tmp_path / "program"
    assert predict.save(target, save_program=True) == target
    assert sorted(p.name for p in target.iterdir()) == ["metadata.json", "program.json"]
    document = json.loads((target / "program.json").read_text())
    assert document["class"] == "elixirml.program._predict:Predict"
    assert document["state"] == predict.dump_state()
    metadata = json.loads((target / "metadata.json").read_text())
    assert set(metadata["dependency_versions"]) == {"python", "elixirml"}
    loaded = em.load(target)
    assert isinstance(loaded, em.Predict)
    assert loaded.signature == predict.signature and loaded.signature is not predict.signature
    assert loaded.demos == predict.demos and loaded.config == predict.config


def test_save_program_keeps_custom_signature_types_and_instructions(tmp_path):
    class Dates(em.Signature):
        """Count the days."""

        start: datetime.date = em.InputField()
        end: datetime.date = em.InputField()
        days: int = em.OutputField(desc="days between start and end")

    predict = em.Predict(Dates)
    predict.signature = predict.signature.with_instructions("You are a helpful assistant.")
    predict.save(tmp_path / "p", save_program=True)
    loaded = em.load(tmp_path / "p")
    assert loaded.signature == predict.signature
    assert loaded.signature.fields["start"].annotation is datetime.date


def test_a_program_class_loads_from_a_directory_and_into_an_instance(tmp_path, saved_module):
    module, _ = saved_module
    program = module.Pipeline()
    program.second.demos = [em.Example(draft="d", a="x").with_inputs("draft")]
    program.save(tmp_path / "saved", save_program=True)
    loaded = em.load(tmp_path / "saved")
    assert type(loaded) is module.Pipeline
    assert [p.signature for p in loaded.predictors()] == [p.signature for p in program.predictors()]
    assert loaded.second.demos == program.second.demos
    other = module.Pipeline().load(tmp_path / "saved")  # Module.load takes the directory too
    assert other.second.demos == program.second.demos


def test_the_named_module_is_imported_only_with_consent(tmp_path, saved_module):
    module, _ = saved_module
    module.Pipeline().save(tmp_path / "saved", save_program=True)
    sys.modules.pop("saved_pipeline_mod")
    with pytest.raises(LoadError, match="allow_import=True"):
        em.load(tmp_path / "saved")
    assert "saved_pipeline_mod" not in sys.modules
    loaded = em.load(tmp_path / "saved", allow_import=True)
    assert "saved_pipeline_mod" in sys.modules
    assert type(loaded).__module__ == "saved_pipeline_mod" and type(loaded) is not module.Pipeline


def test_a_module_that_cannot_be_imported_raises_program_import_error(tmp_path, saved_module, monkeypatch):
    module, folder = saved_module
    module.Pipeline().save(tmp_path / "saved", save_program=True)
    sys.modules.pop("saved_pipeline_mod")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(folder)])
    with pytest.raises(ProgramImportError, match="saved_pipeline_mod") as caught:
        em.load(tmp_path / "saved", allow_import=True)
    assert isinstance(caught.value, ModuleNotFoundError) and isinstance(caught.value, LoadError)


def test_what_would_store_or_run_code_is_refused_with_what_to_do(tmp_path, saved_module):
    module, _ = saved_module
    program = em.Predict("q -> a")
    with pytest.raises(ConfigurationError, match="importable where the program is loaded"):
        program.save(tmp_path / "d", save_program=True, modules_to_serialize=[module])
    with pytest.raises(ConfigurationError, match="without a suffix"):
        program.save(tmp_path / "d.json", save_program=True)
    with pytest.raises(ConfigurationError, match=r"\.json suffix"):
        program.save(tmp_path / "state.pkl")
    (tmp_path / "state.pkl").write_bytes(b"\x80\x04not read")
    with pytest.raises(LoadError, match="never unpickles"):
        program.load(tmp_path / "state.pkl", allow_pickle=True)
    dspy_dir = tmp_path / "dspy_saved"
    dspy_dir.mkdir()
    (dspy_dir / "program.pkl").write_bytes(b"\x80\x04not read")
    (dspy_dir / "metadata.json").write_text("{}")
    with pytest.raises(LoadError, match=r"never unpickles.*program\.save\('program\.json'\)"):
        em.load(dspy_dir)


def test_a_version_that_differs_from_the_saved_one_is_warned_about(tmp_path, caplog):
    em.Predict("q -> a").save(tmp_path / "p", save_program=True)
    metadata = tmp_path / "p" / "metadata.json"
    saved = json.loads(metadata.read_text())
    saved["dependency_versions"]["python"] = "2.7"
    metadata.write_text(json.dumps(saved))
    with caplog.at_level(logging.WARNING, logger="elixirml.program"):
        assert isinstance(em.load(tmp_path / "p"), em.Predict)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "mismatch of python version" in messages[0] and "python==2.7" in messages[0]


def test_dspy_load_needs_allow_pickle_and_then_imports_the_class(tmp_path, saved_module):
    import elixirml.dspy as dspy

    module, _ = saved_module
    module.Pipeline().save(tmp_path / "saved", save_program=True)
    sys.modules.pop("saved_pipeline_mod")
    with pytest.raises(UnsafeLoadError, match="allow_pickle=True") as caught:
        dspy.load(tmp_path / "saved")
    assert isinstance(caught.value, ValueError)
    assert "saved_pipeline_mod" not in sys.modules
    assert type(dspy.load(tmp_path / "saved", allow_pickle=True)).__name__ == "Pipeline"
