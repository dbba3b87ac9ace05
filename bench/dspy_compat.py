"""DSPy drop-in check (issue 23): one snippet per item, run on ElixirML and on DSPy 3.4.1.

Each snippet is written once against a module ``m`` that is ``elixirml`` or ``dspy`` (the
import is the only change, as the issue promises) and returns what it observed: values, or
``"raises ValueError"`` and the like. The two sides run in their own interpreters; the report
prints each item, both observations and whether they are the same, then the count.

    PYTHONPATH=src python bench/dspy_compat.py [--dspy-python bench/.venv-dspy/bin/python] [--json out.json]

A difference is not always a bug: where ElixirML differs on purpose (docs/dspy.md) the row
says so in its note.
"""

from __future__ import annotations

import argparse
import copy
import enum
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_DSPY_PY = HERE / ".venv-dspy" / "bin" / "python"

#: (issue item, snippet name, note on an intended difference, function)
SNIPPETS: list[tuple[str, str, str, Callable[[Any, Any], Any]]] = []


def snippet(item: str, note: str = "") -> Callable[[Callable[[Any, Any], Any]], Callable[[Any, Any], Any]]:
    def register(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        SNIPPETS.append((item, fn.__name__, note, fn))
        return fn

    return register


def raises(fn: Callable[[], Any], *kinds: type[BaseException]) -> str:
    """``"ok"``, ``"raises <kind>"`` for the first of ``kinds`` that matches, else the class name."""
    try:
        fn()
    except BaseException as exc:
        for kind in kinds:
            if isinstance(exc, kind):
                return f"raises {kind.__name__}"
        return f"raises {type(exc).__name__}"
    return "ok"


class Side:
    """What differs between the two test doubles, kept out of the snippets."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "dspy":
            import dspy
            from dspy.utils.dummies import DummyLM

            self.m, self._dummy = dspy, DummyLM
        else:
            import elixirml

            self.m, self._dummy = elixirml, elixirml.DummyLM

    def lm(self, answers: list[dict[str, Any]]) -> Any:
        """A scripted LM answering ``answers`` in order."""
        return self._dummy(answers)


# ---------------------------------------------------------------------- missing names and keywords
def _qa(m: Any) -> Any:
    class QA(m.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.qa = m.Predict("question -> answer")
            self.stages = [m.Predict("question -> answer")]

        def forward(self, question: str) -> Any:
            return self.qa(question=question)

    return QA()


@snippet("Module.named_sub_modules()")
def named_sub_modules(m: Any, side: Side) -> Any:
    return [name for name, _ in _qa(m).named_sub_modules()]


@snippet("Module.named_parameters()")
def named_parameters(m: Any, side: Side) -> Any:
    return [name for name, _ in _qa(m).named_parameters()]


@snippet("Signature.append_instructions / prepend / insert / with_updated_fields")
def signature_editing(m: Any, side: Side) -> Any:
    sig = m.Signature("question -> answer", "Answer.")
    sig = sig.append_instructions("Be brief.").prepend("context", m.InputField(), str)
    sig = sig.insert(-1, "score", m.OutputField(), float).with_updated_fields("answer", desc="the answer")
    return [sig.instructions, list(sig.input_fields), list(sig.output_fields)]


@snippet("Example.without(...)")
def example_without(m: Any, side: Side) -> Any:
    ex = m.Example(question="q", answer="a", extra=1).with_inputs("question")
    return sorted(ex.without("answer", "extra").keys())


@snippet("Example.toDict()")
def example_to_dict(m: Any, side: Side) -> Any:
    return m.Example(question="q", answer="a").toDict()


@snippet("adapter(lm, lm_kwargs, signature, demos, inputs)")
def adapter_callable(m: Any, side: Side) -> Any:
    lm = side.lm([{"answer": "4"}])
    out = m.ChatAdapter()(lm, {}, m.Signature("question -> answer"), [], {"question": "2+2?"})
    return [dict(o) for o in out]


@snippet("XMLAdapter")
def xml_adapter(m: Any, side: Side) -> Any:
    parsed = m.XMLAdapter().parse(m.Signature("question -> answer"), "<answer>\n4\n</answer>")
    return dict(parsed)


@snippet("TwoStepAdapter")
def two_step_adapter(m: Any, side: Side) -> Any:
    return hasattr(m, "TwoStepAdapter") and callable(m.TwoStepAdapter)


@snippet(
    "ChatAdapter(use_native_function_calling=...)",
    "True: a list[Tool] input and a ToolCalls output become the LM's native tool calls, as in DSPy",
)
def chat_adapter_native_flag(m: Any, side: Side) -> Any:
    return raises(lambda: m.ChatAdapter(use_native_function_calling=True))


def _devset(m: Any) -> list[Any]:
    return [m.Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(3)]


def _exact(example: Any, pred: Any, trace: Any = None) -> bool:
    return bool(example.answer == pred.answer)


@snippet("Evaluate(...).num_threads")
def evaluate_num_threads(m: Any, side: Side) -> Any:
    evaluator = m.Evaluate(devset=_devset(m), metric=_exact, num_threads=3)
    return evaluator.num_threads


@snippet("Evaluate(max_errors=, display_progress=, display_table=, return_all_scores=) result shape")
def evaluate_result_shape(m: Any, side: Side) -> Any:
    m.configure(lm=side.lm([{"answer": "a"}] * 3))
    evaluator = m.Evaluate(
        devset=_devset(m), metric=_exact, max_errors=5, display_progress=False, display_table=False, num_threads=1
    )
    result = evaluator(m.Predict("question -> answer"))
    return [float(result.score), [float(score) for _, _, score in result.results]]


@snippet("Evaluate(return_outputs=...)", "both refuse; ElixirML raises ConfigurationError, DSPy ValueError")
def evaluate_return_outputs(m: Any, side: Side) -> Any:
    return raises(lambda: m.Evaluate(devset=_devset(m), metric=_exact, return_outputs=True), TypeError, ValueError)


@snippet("configure(track_usage=True) and prediction.get_lm_usage()")
def track_usage_setting(m: Any, side: Side) -> Any:
    m.configure(lm=side.lm([{"answer": "a"}]), track_usage=True)
    try:
        usage = m.Predict("question -> answer")(question="q").get_lm_usage()
    finally:
        m.configure(track_usage=False)
    return type(usage).__name__


@snippet("dspy.track_usage()")
def track_usage_context(m: Any, side: Side) -> Any:
    m.configure(lm=side.lm([{"answer": "a"}]))
    with m.track_usage() as tracker:
        m.Predict("question -> answer")(question="q")
    return type(tracker.get_total_tokens()).__name__


@snippet("configure(callbacks=...) with BaseCallback method names")
def callbacks(m: Any, side: Side) -> Any:
    base = m.utils.callback.BaseCallback if side.name == "dspy" else m.callbacks.Callback
    seen: list[str] = []

    class Recorder(base):  # type: ignore[misc,valid-type]
        def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
            seen.append("module_start")

        def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
            seen.append("lm_end")

    m.configure(lm=side.lm([{"answer": "a"}]), callbacks=[Recorder()])
    try:
        m.Predict("question -> answer")(question="q")
    finally:
        m.configure(callbacks=[])
    return sorted(set(seen))


@snippet("configure(max_trace_size=, warn_on_type_mismatch=)")
def trace_settings(m: Any, side: Side) -> Any:
    return raises(lambda: m.configure(max_trace_size=5, warn_on_type_mismatch=False))


@snippet("module.batch(..., return_failed_examples=True)")
def batch_failed(m: Any, side: Side) -> Any:
    m.configure(lm=side.lm([{"answer": "a"}] * 3))
    examples = [m.Example(question=f"q{i}").with_inputs("question") for i in range(2)]
    results, failed, errors = m.Predict("question -> answer").batch(
        examples, num_threads=1, return_failed_examples=True, max_errors=5
    )
    return [len(results), len(failed), len(errors)]


@snippet("load_state(..., allow_unsafe_lm_state=)", "refused on purpose: a file must not choose the LM")
def load_state_unsafe(m: Any, side: Side) -> Any:
    predict = m.Predict("question -> answer")
    return raises(lambda: predict.load_state(predict.dump_state(), allow_unsafe_lm_state=True))


@snippet("load(path) of a file dspy.Module.save(path) wrote")
def load_dspy_file(m: Any, side: Side) -> Any:
    path = Path(os.environ["DSPY_COMPAT_DIR"]) / "dspy_saved.json"
    predict = m.Predict("question -> answer")
    if side.name == "dspy":
        predict.demos = [m.Example(question="x", answer="y")]
        predict.save(str(path))
    loaded = m.Predict("question -> answer")
    outcome = raises(lambda: loaded.load(str(path)))
    return [outcome, len(loaded.demos)]


# ---------------------------------------------------------------------- same name, different behaviour
@snippet("LM('openai/gpt-4o') without an API key")
def lm_without_key(m: Any, side: Side) -> Any:
    saved = os.environ.pop("OPENAI_API_KEY", None)
    try:
        return raises(lambda: m.LM("openai/gpt-4o"))
    finally:
        if saved is not None:
            os.environ["OPENAI_API_KEY"] = saved


@snippet("inputs of the wrong type (name=123 for a str field)")
def wrong_type_input(m: Any, side: Side) -> Any:
    m.configure(lm=side.lm([{"greeting": "hi"}]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return m.Predict("name: str -> greeting")(name=123).greeting


@snippet("metric(example, pred, **kwargs)")
def metric_kwargs(m: Any, side: Side) -> Any:
    m.configure(lm=side.lm([{"answer": "a"}] * 3))

    def metric(example: Any, pred: Any, **kwargs: Any) -> bool:
        return bool(example.answer == pred.answer)

    evaluator = m.Evaluate(devset=_devset(m), metric=metric, num_threads=1, display_progress=False)
    return float(evaluator(m.Predict("question -> answer")).score)


def _react_lm(side: Side) -> Any:
    return side.lm(
        [
            {"next_thought": "add", "next_tool_name": "add", "next_tool_args": {"a": 1, "b": 2}},
            {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}},
            {"reasoning": "r", "answer": "3"},
        ]
    )


@snippet("ReAct trajectory as a dict")
def react_trajectory(m: Any, side: Side) -> Any:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    m.configure(lm=_react_lm(side))
    pred = m.ReAct("question -> answer", tools=[add])(question="1 + 2?")
    return [type(pred.trajectory).__name__, list(pred.trajectory), pred.trajectory["tool_args_0"]]


@snippet("ReAct(sig, tools=[])")
def react_no_tools(m: Any, side: Side) -> Any:
    return raises(lambda: m.ReAct("question -> answer", tools=[]))


@snippet("untyped tool arguments")
def react_untyped_args(m: Any, side: Side) -> Any:
    got: list[str] = []

    def add(a, b):  # type: ignore[no-untyped-def]
        """Add two numbers."""
        got.append(type(a).__name__)
        return a + b

    m.configure(lm=_react_lm(side))
    m.ReAct("question -> answer", tools=[add])(question="1 + 2?")
    return got


@snippet("Signature('') raises ValueError")
def empty_signature(m: Any, side: Side) -> Any:
    return raises(lambda: m.Signature(""), ValueError)


@snippet("string signature types from the caller's scope")
def signature_caller_scope(m: Any, side: Side) -> Any:
    from decimal import Decimal

    sig = m.Signature("path: Path, amount: Decimal -> ok: bool")
    return [sig.input_fields["path"].annotation is Path, sig.input_fields["amount"].annotation is Decimal]


@snippet("Example.keys() / len() leave out dspy_ keys")
def example_keys(m: Any, side: Side) -> Any:
    ex = m.Example(question="q", answer="a", dspy_uuid="u")
    return [list(ex.keys()), len(ex)]


class _Plain:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


@snippet("answer_exact_match on plain objects")
def answer_exact_match(m: Any, side: Side) -> Any:
    metric = m.evaluate.answer_exact_match
    return [
        metric(_Plain(answer="Paris"), _Plain(answer="paris.")),
        metric(_Plain(answer=["a b c"]), _Plain(answer="a b"), frac=0.5),
    ]


@snippet("answer_passage_match on plain objects")
def answer_passage_match(m: Any, side: Side) -> Any:
    metric = m.evaluate.answer_passage_match
    return [
        metric(_Plain(answer="Eiffel Tower"), _Plain(context=["The Eiffel Tower is in Paris."])),
        metric(_Plain(answer="cat"), _Plain(context=["concatenate"])),
    ]


@snippet("n > 1 completions")
def n_completions(m: Any, side: Side) -> Any:
    answers = [{"answer": "a"}, {"answer": "b"}]
    if side.name == "dspy":
        lm = side.lm(answers)
    else:  # ElixirML's DummyLM repeats one scripted answer for every completion of a call
        lm = m.FunctionLM(lambda messages, settings: answers[: settings.get("n", 1)])
    with m.context(lm=lm):
        pred = m.Predict("question -> answer", n=2)(question="q")
    c = pred.completions
    return [pred.answer, len(c), c.answer, c["answer"], c[1].answer]


@snippet("positional inputs (a ValueError, as DSPy's)")
def positional_inputs(m: Any, side: Side) -> Any:
    m.configure(lm=side.lm([{"answer": "a"}]))
    return raises(lambda: m.Predict("question -> answer")("hi"), ValueError, TypeError)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@snippet("enum values (input written as its value, output read by value or name)")
def enum_values(m: Any, side: Side) -> Any:
    class Pick(m.Signature):  # type: ignore[misc,name-defined]
        """Pick a color."""

        color: Color = m.InputField()
        shade: Color = m.OutputField()

    lm = side.lm([{"shade": "RED"}, {"shade": "green"}])
    with m.context(lm=lm):
        first = m.Predict(Pick)(color=Color.GREEN).shade
        second = m.Predict(Pick)(color=Color.RED).shade
    history = lm.history if side.name == "dspy" else list(lm.history)
    prompt = history[0]["messages"][-1]["content"]
    return [first.name, second.name, "[[ ## color ## ]]\ngreen\n" in prompt]


@snippet("copy.deepcopy of a module", "ElixirML shares the LM in the copy; DSPy copies it")
def deepcopy_module(m: Any, side: Side) -> Any:
    lm = side.lm([{"answer": "a"}])
    program = _qa(m)
    program.qa.demos = [m.Example(question="x", answer="y")]
    program.qa.lm = lm
    clone = copy.deepcopy(program)
    clone.qa.demos.append(m.Example(question="z", answer="w"))
    return [len(program.qa.demos), len(clone.qa.demos), clone.qa.lm is lm]


@snippet("Parallel over an Example")
def parallel_example(m: Any, side: Side) -> Any:
    m.configure(lm=side.lm([{"answer": "a"}] * 2))
    example = m.Example(question="hi", answer="gold").with_inputs("question")
    predict = m.Predict("question -> answer")
    return [r.answer for r in m.Parallel(num_threads=1)([(predict, example), (predict, {"question": "yo"})])]


@snippet("dump_state() layout (demos, signature instructions and fields)", "ElixirML's own layout")
def dump_state_layout(m: Any, side: Side) -> Any:
    return sorted(m.Predict("question -> answer").dump_state())


# ---------------------------------------------------------------------- running
def observe(side_name: str) -> dict[str, str]:
    """Run every snippet on one side; each observation as JSON text (errors included)."""
    side = Side(side_name)
    logging_quiet()
    out: dict[str, str] = {}
    for _item, name, _note, fn in SNIPPETS:
        try:
            value = fn(side.m, side)
            out[name] = json.dumps(value, default=repr, sort_keys=True)
        except Exception as exc:
            out[name] = f"error {type(exc).__name__}: {str(exc)[:120]}"
    return out


def logging_quiet() -> None:
    import logging

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")


def run_side(python: str, side: str, workdir: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DSPY_COMPAT_DIR": workdir,
        "DSPY_CACHEDIR": workdir,
        "ELIXIRML_CACHE_DIR": workdir,
        "ELIXIRML_STORE": f"sqlite:///{workdir}/store.sqlite",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    done = subprocess.run(
        [python, __file__, "--side", side], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    if done.returncode != 0:
        sys.exit(f"{side} side failed:\n{done.stderr[-3000:]}")
    observed: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return observed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=["dspy", "elixirml"], help="run one side and print its observations")
    parser.add_argument("--dspy-python", default=str(DEFAULT_DSPY_PY), help="python of the DSPy 3.4.1 environment")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.side:
        print(json.dumps(observe(args.side)))
        return
    with tempfile.TemporaryDirectory() as workdir:
        dspy_side = run_side(args.dspy_python, "dspy", workdir)  # first: it writes the file the other loads
        ours = run_side(sys.executable, "elixirml", workdir)
    rows = []
    for item, name, note, _fn in SNIPPETS:
        same = ours[name] == dspy_side[name]
        rows.append({"item": item, "same": same, "elixirml": ours[name], "dspy": dspy_side[name], "note": note})
        print(f"{'SAME' if same else 'DIFF'}  {item}")
        if not same:
            print(f"      elixirml: {ours[name][:160]}\n      dspy:     {dspy_side[name][:160]}")
            if note:
                print(f"      note:     {note}")
    same_count = sum(row["same"] for row in rows)
    print(f"\n{same_count} of {len(rows)} snippets behave the same on ElixirML and DSPy 3.4.1")
    if args.json:
        Path(args.json).write_text(json.dumps({"same": same_count, "total": len(rows), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
