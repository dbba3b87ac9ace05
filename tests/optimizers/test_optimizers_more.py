"""SIMBA, COPRO, KNNFewShot and Ensemble with scripted LMs where only each one's own mechanism finds the answer."""

import json
import re

import numpy as np
import pytest

import elixirml as em
from elixirml.errors import ConfigurationError
from elixirml.optimizers import COPRO, SIMBA, Ensemble, KNNFewShot, majority


def data(n, offset=0):
    return [
        em.Example(question=f"echo w{i}", answer=f"W{i}").with_inputs("question") for i in range(offset, offset + n)
    ]


def exact(example, prediction, trace=None):
    return float(prediction.answer == example.answer)


# ---------------------------------------------------------------------------------------------- SIMBA
def test_simba_learns_a_rule_from_the_examples_whose_runs_vary():
    rule_requests = []

    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "Write one short rule" in system:
            rule_requests.append(user)
            better = json.loads(re.search(r"\[\[ ## better_run ## \]\]\n(.*?)\n\n", user, re.S).group(1))
            worse = json.loads(re.search(r"\[\[ ## worse_run ## \]\]\n(.*?)\n\n", user, re.S).group(1))
            if better["outputs"]["answer"].isupper() and not worse["outputs"]["answer"].isupper():
                return {"rule": "Write the answer in uppercase letters."}
            return {"rule": "Be careful."}
        word = re.search(r"echo (w\d+)", user).group(1)
        cold = settings.get("temperature", 1.0) < 0.5
        # only an instruction with the rule, or a cold run, answers in uppercase
        return {"answer": word.upper() if "uppercase" in system or cold else word}

    lm = em.FunctionLM(answer)
    em.configure(lm=lm)
    program = em.Predict("question -> answer")
    assert em.evaluate(program, data(6, offset=40), exact, display_progress=False).score == 0.0
    simba = SIMBA(exact, bsize=4, num_candidates=3, max_steps=2, max_demos=0, seed=0)
    # 6 rows: better on all of them, the rule wins the final paired comparison (4 rows never could: p >= 1/16)
    compiled = simba.compile(program, trainset=data(8), valset=data(6, offset=20))
    assert "uppercase" in compiled.signature.instructions
    assert simba.last_result.best_score == 100.0, simba.last_result.summary()
    assert "Write the answer in uppercase letters." in simba.last_result.details["rules"]
    # the rule came from comparing a cold (uppercase) run with a warm one on the same example
    assert any('"answer": "W' in r and '"answer": "w' in r for r in rule_requests)
    assert em.evaluate(compiled, data(6, offset=40), exact, display_progress=False).score == 100.0


def test_simba_turns_the_better_run_into_demos():
    def answer(messages, settings):
        user = messages[-1]["content"]
        word = re.search(r"echo (w\d+)", user).group(1)
        has_demo = any(m["role"] == "assistant" for m in messages)
        cold = settings.get("temperature", 1.0) < 0.5
        return {"answer": word.upper() if has_demo or cold else word}

    em.configure(lm=em.FunctionLM(answer))
    simba = SIMBA(exact, bsize=4, num_candidates=3, max_steps=3, max_demos=2, seed=1)
    compiled = simba.compile(em.Predict("question -> answer"), trainset=data(8), valset=data(4, offset=20))
    assert compiled.demos and all(d.answer.isupper() for d in compiled.demos)
    assert simba.last_result.best_score == 100.0


def test_simba_holds_the_lm_call_budget():
    calls = []

    def answer(messages, settings):
        calls.append(1)
        return {"answer": "x", "rule": "Be careful and precise."}

    em.configure(lm=em.FunctionLM(answer))
    simba = SIMBA(exact, bsize=4, num_candidates=3, max_steps=5, max_lm_calls=10)
    simba.compile(em.Predict("question -> answer"), trainset=data(8))
    assert len(calls) <= 10 and simba.last_result.stopped == "max_lm_calls"


# ---------------------------------------------------------------------------------------------- COPRO
def test_copro_climbs_from_the_scores_of_its_attempts():
    shown = []

    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "I will give you instructions I tried" in system:
            shown.append(user)
            scores = [float(s) for s in re.findall(r"Score: ([\d.]+)", user)]
            # the proposer can only reach the right instruction by building on the best attempt so far
            best = re.findall(r"Instruction #\d+: (.*)\nScore", user)[scores.index(max(scores))]
            return {"proposed_instruction": best + " Use capitals."}
        if "Write a better instruction" in system:
            return {"proposed_instruction": f"Echo the word, variant {settings.get('rollout_id')}."}
        word = re.search(r"echo (w\d+)", user).group(1)
        return {"answer": word.upper() if "capitals" in system else word}

    em.configure(lm=em.FunctionLM(answer))
    copro = COPRO(exact, breadth=2, depth=1)
    compiled = copro.compile(em.Predict("question -> answer"), trainset=data(6))
    assert "capitals" in compiled.signature.instructions
    assert copro.last_result.best_score == 100.0 and shown
    assert copro.last_result.trials[0].score == 0.0  # the program as given is scored first


def test_copro_keeps_the_original_when_nothing_beats_it():
    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "instruction optimizer" in system:
            return {"proposed_instruction": f"Something else {settings.get('rollout_id')}."}
        word = re.search(r"echo (w\d+)", user).group(1)
        return {"answer": word.upper() if "produce the fields" in system else word}

    em.configure(lm=em.FunctionLM(answer))
    program = em.Predict("question -> answer")
    compiled = COPRO(exact, breadth=3, depth=1).compile(program, trainset=data(3))
    assert compiled.signature.instructions == program.signature.instructions
    with pytest.raises(ConfigurationError, match="breadth"):
        COPRO(exact, breadth=1)


# ---------------------------------------------------------------------------------------------- KNNFewShot
def test_knn_few_shot_gives_each_input_its_nearest_examples_as_demos():
    seen = []

    def answer(messages, settings):
        seen.append([m["content"] for m in messages if m["role"] == "user"][:-1])
        return {"answer": "ok"}

    train = [
        em.Example(question="capital of France", answer="Paris").with_inputs("question"),
        em.Example(question="capital of Italy", answer="Rome").with_inputs("question"),
        em.Example(question="boiling point of water", answer="100 C").with_inputs("question"),
        em.Example(question="freezing point of water", answer="0 C").with_inputs("question"),
    ]
    em.configure(lm=em.FunctionLM(answer))
    compiled = KNNFewShot(k=2, trainset=train).compile(em.Predict("question -> answer"))
    compiled(question="what is the capital of Spain")
    geography = {d.answer for d in compiled.last_demos}
    compiled(question="melting point of ice and water")
    physics = {d.answer for d in compiled.last_demos}
    assert geography == {"Paris", "Rome"} and physics == {"100 C", "0 C"}
    assert "capital of" in " ".join(seen[0]) and "point of water" in " ".join(seen[1])
    assert compiled.program.demos == []  # demos are set per call, on a copy


def test_knn_few_shot_takes_any_embedder_callable():
    def embedder(texts):
        return np.array([[1.0, 0.0] if "cat" in t or "kitten" in t else [0.0, 1.0] for t in texts])

    train = [
        em.Example(question="a cat", answer="feline").with_inputs("question"),
        em.Example(question="a truck", answer="vehicle").with_inputs("question"),
    ]
    em.configure(lm=em.FunctionLM(lambda messages, settings: {"answer": "ok"}))
    compiled = KNNFewShot(1, train, embedder=embedder).compile(em.Predict("question -> answer"))
    compiled(question="kitten")
    assert [d.answer for d in compiled.last_demos] == ["feline"]
    compiled(question="lorry")
    assert [d.answer for d in compiled.last_demos] == ["vehicle"]
    with pytest.raises(ConfigurationError, match="shape"):
        KNNFewShot(1, train, embedder=lambda texts: np.zeros(3)).compile(em.Predict("question -> answer"))


# ---------------------------------------------------------------------------------------------- Ensemble
def test_ensemble_reduces_by_majority_first_or_a_function():
    def program_saying(word):
        lm = em.FunctionLM(lambda messages, settings: {"answer": word})
        return em.Predict("question -> answer", lm=lm)

    programs = [program_saying("yes"), program_saying("no"), program_saying("No.")]
    assert Ensemble(reduce_fn="majority").compile(programs)(question="?").answer == "no"
    assert Ensemble(reduce_fn="first").compile(programs)(question="?").answer == "yes"
    longest = Ensemble(reduce_fn=lambda ps: max(ps, key=lambda p: len(p.answer)))
    assert longest.compile([*programs, program_saying("maybe")])(question="?").answer == "maybe"
    assert len(Ensemble(reduce_fn=None).compile(programs)(question="?")) == 3
    assert len(Ensemble(reduce_fn=None, size=2).compile(programs)(question="?")) == 2
    assert majority([em.Prediction(answer="a"), em.Prediction(answer="b")]).answer == "a"
    with pytest.raises(ConfigurationError):
        Ensemble(reduce_fn="median")
    with pytest.raises(ConfigurationError):
        Ensemble(size=5).compile(programs)


def test_metric_call_budget_holds_for_every_optimizer():
    proposals = []

    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "instruction optimizer" in system:
            proposals.append(1)
            return {"proposed_instruction": f"Echo it, try number {len(proposals)}."}
        if "Write one short rule" in system:
            return {"rule": "Be careful and precise."}
        word = re.search(r"echo (w\d+)", user).group(1)
        return {"answer": word.upper() if settings.get("temperature", 1.0) < 0.5 else word}

    em.configure(lm=em.FunctionLM(answer))
    for optimizer in (COPRO(exact, breadth=4, depth=2), SIMBA(exact, bsize=4, num_candidates=3, max_steps=4)):
        optimizer.compile(em.Predict("question -> answer"), trainset=data(6), max_metric_calls=14)
        result = optimizer.last_result
        assert result.details["metric_calls"] <= 14 and result.stopped == "max_metric_calls", result.summary()


def test_gepa_without_the_package_names_the_extra(monkeypatch):
    import sys

    from elixirml.errors import MissingDependencyError
    from elixirml.optimizers import GEPA

    monkeypatch.setitem(sys.modules, "gepa", None)
    em.configure(lm=em.FunctionLM(lambda messages, settings: {"answer": "x"}))
    with pytest.raises(MissingDependencyError, match=r"elixirml\[gepa\]"):
        GEPA(exact, auto="light").compile(em.Predict("question -> answer"), trainset=data(3))


def test_knn_few_shot_uses_an_em_embedder():
    CAT_CALLS.clear()
    train = [
        em.Example(question="a cat", answer="feline").with_inputs("question"),
        em.Example(question="a truck", answer="vehicle").with_inputs("question"),
    ]
    em.configure(lm=em.FunctionLM(lambda messages, settings: {"answer": "ok"}))
    compiled = KNNFewShot(1, train, embedder=em.Embedder(cat_vectors)).compile(em.Predict("question -> answer"))
    compiled(question="kitten")
    assert [d.answer for d in compiled.last_demos] == ["feline"]
    compiled(question="lorry")
    assert [d.answer for d in compiled.last_demos] == ["vehicle"]
    assert any("kitten" in " ".join(batch) for batch in CAT_CALLS)  # the query went through the Embedder


# ---------------------------------------------------------------------------------------------- KNNFewShot saving
CAT_CALLS: list[list[str]] = []


def cat_vectors(texts):
    """A module-level embedding function (so a saved KNNProgram can find it again)."""
    CAT_CALLS.append(list(texts))
    return np.array([[1.0, 0.0] if "cat" in t or "kitten" in t else [0.0, 1.0] for t in texts])


KNN_TRAIN = [
    em.Example(question="capital of France", answer="Paris").with_inputs("question"),
    em.Example(question="capital of Italy", answer="Rome").with_inputs("question"),
    em.Example(question="boiling point of water", answer="100 C").with_inputs("question"),
    em.Example(question="freezing point of water", answer="0 C").with_inputs("question"),
    em.Example(question="a small cat", answer="feline").with_inputs("question"),
]
KNN_QUERIES = ["what is the capital of Spain", "melting point of ice and water", "kitten", "lorry"]


def test_a_knn_program_in_the_store_keeps_a_trainset_field_named_like_a_credential(tmp_path):
    train = [
        em.Example(question="reset my password", password="use the reset link").with_inputs("question"),
        em.Example(question="open the door", password="say friend").with_inputs("question"),
    ]
    em.configure(lm=em.FunctionLM(lambda messages, settings: {"password": "ok"}))
    compiled = KNNFewShot(1, train).compile(em.Predict("question -> password"))
    store = em.Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.save(compiled, "doors")  # user data, not a secret
    loaded = store.load("doors")
    store.close()
    loaded(question="the door is locked")
    assert [d.password for d in loaded.last_demos] == ["say friend"]


def demos_of(program, question):
    program(question=question)
    return [(d.toDict(), sorted(d.input_keys)) for d in program.last_demos]


def test_a_saved_lexical_knn_program_loads_with_the_same_demos(tmp_path):
    em.configure(lm=em.FunctionLM(lambda messages, settings: {"reasoning": "near", "answer": "ok"}))
    compiled = KNNFewShot(k=2, trainset=KNN_TRAIN).compile(em.ChainOfThought("question -> answer"))
    path = compiled.save(tmp_path / "knn.json")
    loaded = em.load(path)
    assert type(loaded).__name__ == "KNNProgram" and isinstance(loaded.program, em.ChainOfThought)
    for question in KNN_QUERIES:
        assert demos_of(loaded, question) == demos_of(compiled, question)
    # into an existing KNNProgram too (another trainset and k before)
    other = KNNFewShot(k=1, trainset=KNN_TRAIN[:2]).compile(em.ChainOfThought("question -> answer"))
    other.load(path)
    assert [demos_of(other, q) for q in KNN_QUERIES] == [demos_of(compiled, q) for q in KNN_QUERIES]
    # and through the store
    store = em.Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.save(compiled, "knn")
    stored = store.load("knn")
    store.close()
    assert [demos_of(stored, q) for q in KNN_QUERIES] == [demos_of(compiled, q) for q in KNN_QUERIES]


def test_a_saved_knn_program_with_an_em_embedder_finds_its_function_again(tmp_path):
    em.configure(lm=em.FunctionLM(lambda messages, settings: {"answer": "ok"}))
    compiled = KNNFewShot(1, KNN_TRAIN, embedder=em.Embedder(cat_vectors, batch_size=8)).compile(
        em.Predict("question -> answer")
    )
    path = compiled.save(tmp_path / "knn.json")
    saved = json.loads(path.read_text())["state"]["knn"]["similarity"]
    assert saved["embedder"]["kind"] == "function" and saved["embedder"]["qualname"] == "cat_vectors"
    CAT_CALLS.clear()
    loaded = em.load(path)
    assert demos_of(loaded, "kitten") == demos_of(compiled, "kitten") == [(KNN_TRAIN[4].toDict(), ["question"])]
    assert demos_of(loaded, "lorry") == demos_of(compiled, "lorry")
    assert any("kitten" in " ".join(batch) for batch in CAT_CALLS)  # the loaded program embeds with the function


def test_a_knn_program_that_cannot_be_saved_says_what_to_pass_instead(tmp_path):
    em.configure(lm=em.FunctionLM(lambda messages, settings: {"answer": "ok"}))
    plain = KNNFewShot(1, KNN_TRAIN, embedder=cat_vectors).compile(em.Predict("question -> answer"))
    with pytest.raises(ConfigurationError, match=r"plain callable.*em\.Embedder\(f\)"):
        plain.save(tmp_path / "plain.json")
    nested = KNNFewShot(1, KNN_TRAIN, embedder=em.Embedder(lambda texts: cat_vectors(texts))).compile(
        em.Predict("question -> answer")
    )
    with pytest.raises(ConfigurationError, match="lambda or nested function"):
        nested.save(tmp_path / "nested.json")
    assert not (tmp_path / "plain.json").exists()


def test_a_loaded_knn_program_waits_for_an_embedder_that_sends_requests(tmp_path):
    remote = em.Embedder("openai/text-embedding-3-small", base_url="http://127.0.0.1:9/v1", api_key="sk-test-123456")
    described = json.dumps(remote.dump_state())
    assert "sk-test" not in described and "127.0.0.1" not in described and "text-embedding-3-small" in described
    em.configure(lm=em.FunctionLM(lambda messages, settings: {"answer": "ok"}))
    compiled = KNNFewShot(1, KNN_TRAIN, embedder=em.Embedder(cat_vectors)).compile(em.Predict("question -> answer"))
    path = compiled.save(tmp_path / "knn.json")
    document = json.loads(path.read_text())
    document["state"]["knn"]["similarity"]["embedder"] = remote.dump_state()  # as if saved with the remote one
    path.write_text(json.dumps(document))
    loaded = em.load(path)
    with pytest.raises(ConfigurationError, match="set_embedder"):
        loaded(question="kitten")
    with pytest.raises(ConfigurationError, match="saved with the embedder 'openai/text-embedding-3-small'"):
        loaded.set_embedder(em.Embedder(cat_vectors))
    assert em.load(loaded.save(tmp_path / "again.json"))._awaited["model"] == "openai/text-embedding-3-small"
