"""Evaluation checkpoints know what produced them (reliability issue item 9)."""

import json

import pytest

import elixirml as em
from elixirml.errors import ConfigurationError


def data(n=6):
    return [em.Example(question=f"item {i}", answer="0").with_inputs("question") for i in range(n)]


def program(instructions=None):
    lm = em.DummyLM({"item": {"answer": "0"}}, default={"answer": "0"})
    return em.Predict("question -> answer", lm=lm, instructions=instructions)


def run(prog, checkpoint, metric=em.metrics.exact_match, **kwargs):
    return em.evaluate(prog, data(), metric, checkpoint=checkpoint, display_progress=False, **kwargs)


def test_a_checkpoint_of_another_program_is_refused_naming_what_differs(tmp_path):
    path = tmp_path / "ckpt.jsonl"
    run(program(), path)
    other = program("Answer in French.")
    with pytest.raises(ConfigurationError, match=r"another program.*program \('Predict:"):
        run(other, path)
    assert other.lm.requests == []
    forced = run(other, path, resume="force")
    assert sum(r.resumed for r in forced.results) == 6 and other.lm.requests == []
    fresh = run(other, path, resume=False)
    assert not any(r.resumed for r in fresh.results) and len(other.lm.requests) == 6


def test_a_checkpoint_of_another_metric_or_signature_is_refused(tmp_path):
    path = tmp_path / "ckpt.jsonl"
    run(program(), path)
    with pytest.raises(ConfigurationError, match=r"metric \('exact_match' there, 'f1' now\)"):
        run(program(), path, metric=em.metrics.f1)
    lm = em.DummyLM({"item": {"answer": "0"}}, default={"answer": "0"})
    with pytest.raises(ConfigurationError, match="signature"):
        run(em.Predict("question -> answer, note", lm=lm), path)
    same = run(program(), path)
    assert sum(r.resumed for r in same.results) == 6


def test_store_checkpoints_carry_the_fingerprint_too(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 'ckpt.db'}")
    run(program(), (store, "shared"))
    with pytest.raises(ConfigurationError, match="another program"):
        run(program("Be brief."), (store, "shared"))
    store.close()


def test_a_half_written_last_line_costs_only_that_line(tmp_path):
    path = tmp_path / "ckpt.jsonl"
    run(program(), path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:5]) + "\n" + lines[5][:20])  # the crash cut the last record short
    prog = program()
    again = run(prog, path)
    assert sum(r.resumed for r in again.results) == 5 and len(prog.lm.requests) == 1
    records = [json.loads(line) for line in path.read_text().splitlines()]  # every line parses again
    assert len(records) == 6


@pytest.mark.parametrize("bad", ["[1, 2]", '"text"', "null", '{"key": 3}', '{"key": "k", "score": "high"}'])
def test_a_malformed_line_is_reported_and_its_example_runs_again(tmp_path, bad):
    path = tmp_path / "ckpt.jsonl"
    run(program(), path)
    lines = path.read_text().splitlines()
    lines[2] = bad
    path.write_text("\n".join(lines) + "\n")
    prog = program()
    with pytest.warns(RuntimeWarning, match=r"ignored 1 malformed record\(s\) \(line 3\)"):
        again = run(prog, path)
    assert sum(r.resumed for r in again.results) == 5 and len(prog.lm.requests) == 1
