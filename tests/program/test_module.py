import asyncio
import inspect
import json
import time

import pytest

import elixirml as em
from elixirml.errors import LoadError


class Inner(em.Module):
    def __init__(self):
        self.step = em.Predict("q -> a")


class Middle(em.Module):
    def __init__(self):
        self.inner = Inner()
        self.extra = [em.ChainOfThought("a -> b"), {"k": em.Predict("b -> c")}]


class Outer(em.Module):
    def __init__(self):
        self.middle = Middle()
        self.final = em.Predict("c -> d", temperature=0.3)

    def forward(self, q):
        a = self.middle.inner.step(q=q).a
        return self.final(c=a)


def test_discovery_finds_nested_predictors():
    names = [n for n, _ in Outer().named_predictors()]
    assert names == ["middle.inner.step", "middle.extra.0", "middle.extra.1.k", "final"]
    modules = [n for n, _ in Outer().named_modules()]
    assert "middle" in modules and "middle.inner" in modules


def test_sync_forward_gets_async_path():
    lm = em.DummyLM({"[[ ## q ## ]]": {"a": "A"}, "[[ ## c ## ]]": {"d": "D"}})
    em.configure(lm=lm)
    import asyncio

    assert asyncio.run(Outer().acall("x")).d == "D"


def test_async_only_module_gets_sync_path():
    class A(em.Module):
        def __init__(self):
            self.p = em.Predict("q -> a")

        async def aforward(self, q):
            return await self.p.acall(q=q)

    em.configure(lm=em.DummyLM([{"a": "1"}]))
    assert A()("x").a == "1"


def test_module_without_body_raises():
    class Empty(em.Module):
        pass

    with pytest.raises(NotImplementedError):
        Empty()()


def test_deepcopy_shares_lm_and_reset_copy_clears_demos():
    lm = em.DummyLM([])
    prog = Outer()
    prog.set_lm(lm)
    prog.final.demos = [em.Example(c="1", d="2")]
    copy = prog.deepcopy()
    assert copy.final is not prog.final and copy.final.lm is lm
    assert copy.final.demos == prog.final.demos
    assert prog.reset_copy().final.demos == []
    assert prog.get_lm() is lm


def test_save_and_load_round_trip(tmp_path):
    prog = Outer()
    prog.final.demos = [em.Example(c="1", d="2").with_inputs("c")]
    prog.middle.inner.step.instructions = "Be precise."
    path = prog.save(tmp_path / "prog.json")
    document = json.loads(path.read_text())  # plain JSON
    assert document["format"] == "elixirml.program"
    other = Outer().load(path)
    assert other.dump_state() == prog.dump_state()
    assert other.middle.inner.step.instructions == "Be precise."
    assert other.final.demos[0].inputs().to_dict() == {"c": "1"}
    again = em.load(path)  # class is imported here, so it is found without importing anything
    assert isinstance(again, Outer) and again.dump_state() == prog.dump_state()


def test_em_load_rebuilds_builtin_predictors(tmp_path):
    cot = em.ChainOfThought("question: str -> answer: int", instructions="Count.")
    cot.demos = [em.Example(question="q", reasoning="r", answer=3)]
    cot.save(tmp_path / "cot.json")
    loaded = em.load(tmp_path / "cot.json")
    assert isinstance(loaded, em.ChainOfThought)
    assert loaded.signature.equals(cot.signature)
    assert loaded.dump_state() == cot.dump_state()


def test_tampered_files_never_execute_code(tmp_path):
    marker = tmp_path / "pwned"
    path = em.Predict("q -> a").save(tmp_path / "p.json")
    document = json.loads(path.read_text())
    document["state"]["signature"]["fields"][0]["type"] = f"__import__('os').system('touch {marker}')"
    path.write_text(json.dumps(document))
    with pytest.raises(LoadError):
        em.load(path)
    document["class"] = "os:system"
    path.write_text(json.dumps(document))
    with pytest.raises(LoadError, match="never imports"):
        em.load(path)
    path.write_bytes(b"\x80\x04\x95pickle")
    with pytest.raises(LoadError):
        em.load(path)
    assert not marker.exists()


def test_load_state_mismatch_is_clear():
    with pytest.raises(LoadError, match="do not match"):
        Outer().load_state({"predictors": {"x": {}}})


def test_module_inputs_may_use_any_keyword_name():
    class Echo(em.Module):
        def forward(self, call, args=None):  # names the call machinery uses internally
            return em.Prediction(call=call, args=args)

    assert Echo()(call="c", args="a").call == "c"
    assert asyncio.run(Echo().acall(call="c")).call == "c"


def test_parallel_and_batch_keep_order():
    def slow(messages, settings):
        n = int(messages[-1]["content"].split("item ")[1].split()[0])
        time.sleep(0.02 * (5 - n))
        return {"answer": str(n)}

    em.configure(lm=em.FunctionLM(slow))
    predict = em.Predict("question -> answer")
    results = predict.batch([em.Example(question=f"item {i}").with_inputs("question") for i in range(5)], concurrency=5)
    assert [r.answer for r in results] == ["0", "1", "2", "3", "4"]
    parallel = em.Parallel(num_threads=3)
    out = parallel([(predict, {"question": f"item {i}"}) for i in range(4)])
    assert [r.answer for r in out] == ["0", "1", "2", "3"]


def test_deepcopy_copies_around_what_cannot_be_copied(caplog):
    import logging
    import threading

    class Inner(em.Module):
        def __init__(self):
            self.lock = threading.Lock()
            self.qa = em.Predict("q -> a")

    class Outer(em.Module):
        def __init__(self):
            self.inner = Inner()
            self.also = self.inner  # the same sub-module twice stays one object in the copy
            self.notes = ["kept"]

    program = Outer()
    program.inner.qa.demos = [em.Example(q="x", a="y")]
    with caplog.at_level(logging.WARNING, logger="elixirml.program"):
        clone = program.deepcopy()
    assert clone.inner is not program.inner and clone.also is clone.inner
    assert clone.inner.lock is program.inner.lock  # a lock cannot be copied: shared, with a warning
    assert any("'lock'" in r.getMessage() for r in caplog.records)
    assert clone.inner.qa is not program.inner.qa and clone.inner.qa.demos == program.inner.qa.demos
    assert clone.notes == ["kept"] and clone.notes is not program.notes
    clone.inner.qa.demos.append(em.Example(q="z", a="w"))
    assert len(program.inner.qa.demos) == 1


def test_a_module_is_not_compiled_until_marked_and_then_hides_its_predictors():
    program = Middle()
    assert em.Module()._compiled is False and program.inner._compiled is False
    assert [n for n, _ in program.named_parameters()] == ["inner.step", "extra[0]", "extra[1]['k']"]
    program.inner._compiled = True
    assert [n for n, _ in program.named_parameters()] == ["extra[0]", "extra[1]['k']"]
    assert "self.inner.step" not in [n for n, _ in program.named_sub_modules(skip_compiled=True)]
    assert "self.inner.step" in [n for n, _ in program.named_sub_modules()]


class Add(em.Module):
    def forward(self, a, b=0):
        if a == 42:
            raise ValueError("no 42")
        return a + b


def test_parallel_takes_dspy_inputs_nested_pairs_and_failure_options(caplog):
    add = Add()
    parallel = em.Parallel(num_threads=2)
    nested = [(add, (1, 2)), (add, {"a": 3}), (parallel, [(add, (4,)), (add, em.Example(a=5).with_inputs("a"))])]
    assert parallel(nested) == [3, 3, [4, 5]]  # a tuple is positional, a dict keywords, a list a nested Parallel
    assert parallel.timeout == 120 and parallel.straggler_limit == 3 and parallel.num_threads == 2
    with pytest.raises(ValueError, match="no 42"):  # by default the first failure is raised
        parallel([(add, (1,)), (add, (42,))])
    tolerant = em.Parallel(return_failed_examples=True, provide_traceback=True)
    with caplog.at_level("ERROR", logger="elixirml"):
        results, failed, errors = tolerant([(add, (1,)), (add, (42,))])
    assert results == [1, None] and failed == [(42,)] and str(errors[0]) == "no 42"
    assert "Parallel: input 1 failed: ValueError: no 42" in caplog.text and "Traceback" in caplog.text
    whole = em.Parallel(access_examples=False)
    with pytest.raises(TypeError):  # the Example itself is the one positional argument: Add gets no 'a' keyword
        whole([(Add(), em.Example(b=1).with_inputs("b"))])
    with pytest.raises(em.errors.ConfigurationError, match="must be an Example, a dict, a tuple"):
        parallel([(add, 7)])


def test_batch_straggler_limit_starts_a_slow_input_again_and_keeps_the_first_to_finish():
    attempts = {}

    class Sometimes(em.Module):
        async def aforward(self, n):
            attempts[n] = attempts.get(n, 0) + 1
            if n == 2 and attempts[n] == 1:
                await asyncio.sleep(30)  # the first attempt hangs: its second attempt answers
            return n * 10

    examples = [em.Example(n=i).with_inputs("n") for i in range(4)]
    assert Sometimes().batch(examples, timeout=0.2, straggler_limit=3) == [0, 10, 20, 30]
    assert attempts == {0: 1, 1: 1, 2: 2, 3: 1}  # only the straggler ran twice; its hanging attempt was cancelled
    attempts.clear()
    results, failed, errors = Sometimes().batch(examples, timeout=0.2, return_failed_examples=True)
    assert results == [0, 10, None, 30] and failed == [examples[2]]
    assert isinstance(errors[0], TimeoutError)  # alone, timeout is a hard limit


def test_parallel_runs_plain_functions_as_dspy_does():
    import threading

    seen = []

    def add(a, b=0):
        seen.append(threading.current_thread())
        return a + b

    async def double(a):
        return 2 * a

    with em.context(max_tokens=77):  # a worker thread sees the caller's settings
        results = em.Parallel(num_threads=2)(
            [(add, (1, 2)), (add, {"a": 3}), (double, {"a": 4}), (lambda: em.settings.current().max_tokens, {})]
        )
    assert results == [3, 3, 8, 77]
    assert threading.main_thread() not in seen  # a sync function runs in a worker thread, not on the loop
    with pytest.raises(em.errors.ConfigurationError, match="must be a module or a function, got int"):
        em.Parallel()([(7, {})])


def test_forward_called_directly_warns_only_outside_a_module_call(caplog):
    class Inner(em.Module):
        def forward(self, x):
            return x + 1

    class Outer(em.Module):
        def __init__(self):
            super().__init__()
            self.inner = Inner()

        def forward(self, x):
            return self.inner.forward(x) * 2  # inside Outer's call: not reported

    outer = Outer()
    with caplog.at_level("WARNING", logger="elixirml.program"):
        assert outer(x=1) == 4
        assert asyncio.run(outer.acall(x=1)) == 4
        assert not [r for r in caplog.records if "directly is discouraged" in r.getMessage()]
        assert outer.inner.forward(1) == 2
    warned = [r.getMessage() for r in caplog.records if "directly is discouraged" in r.getMessage()]
    assert warned == ["Calling module.forward(...) on Inner directly is discouraged. Please use module(...) instead."]
    assert Inner.forward.__name__ == "forward" and "x" in inspect.signature(Inner.forward).parameters
