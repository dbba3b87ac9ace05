"""DSPy side of bench/optimize_sst2.py; runs in bench/.venv-dspy against llama.cpp's server.

Usage: python bench/_dspy_sst2.py GGUF_PATH SPLIT_JSON [STAGES]  (prints JSON)

STAGES: a comma-separated subset of zero-shot,bootstrap,mipro,simba,gepa (default: the first
three). SPLIT_JSON holds ``train``, ``val`` and ``test`` lists of ``{"sentence", "label"}`` rows;
``python bench/optimize_sst2.py split-json PATH`` writes the benchmark's split.
DSPY_MAX_TOKENS (environment, default 256): the answer length limit. A well-formed answer needs
about 20 tokens; the model often writes on until the limit, so a lower one makes a call faster.
DSPY_REFLECTION_MAX_TOKENS (default 256): the limit for GEPA's reflection LM (a new instruction).
DSPY_GEPA_METRIC_CALLS (default 600, the budget of our reduced GEPA run): GEPA's max_metric_calls.
DSPY_GEPA_VAL_ROWS, DSPY_SIMBA_TRAIN_ROWS (default: all): use only the first N validation rows
for GEPA's Pareto tracking / the first N training rows for SIMBA (SIMBA scores every kept
program on its whole trainset at the end), where time is short.
DSPY_SIMBA_STEPS (default 3): SIMBA's max_steps.
DSPY_GEPA_SECONDS (default: no limit): GEPA stops starting iterations after this long and
returns its best program so far.
DSPY_PORT (default 8766): the llama.cpp server's port, so that two stages can run side by side.
Every optimized program is evaluated on the test rows, even one identical to the starting program.
The settings of SIMBA are the reduced ones of ``optimize_sst2.py reflective``: bsize=8,
num_candidates=3, max_steps=3 (DSPY_SIMBA_STEPS), max_demos=2. GEPA and SIMBA get the metric with the same feedback
text as ours. LM calls are counted by a callback on every LM (SIMBA's sampling copies and
GEPA's reflection LM included).
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Literal

import dspy
from dspy.utils.callback import BaseCallback

gguf, split_file = sys.argv[1], sys.argv[2]
port = os.environ.get("DSPY_PORT", "8766")
api_base = f"http://127.0.0.1:{port}/v1"
stages = set((sys.argv[3] if len(sys.argv) > 3 else "zero-shot,bootstrap,mipro").split(","))
with open(split_file) as handle:
    split = json.load(handle)
server = subprocess.Popen(
    [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        gguf,
        "--port",
        port,
        "--n_ctx",
        "2048",
        "--verbose",
        "False",
    ],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
try:
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{api_base}/models", timeout=1)
            break
        except OSError:
            time.sleep(0.5)

    class CallCounter(BaseCallback):
        """Counts every LM call, whichever LM object (or copy of one) makes it."""

        def __init__(self):
            self.calls = 0

        def on_lm_start(self, call_id, instance, inputs):
            self.calls += 1

    counter = CallCounter()
    lm = dspy.LM(
        "openai/smollm2",
        api_base=api_base,
        api_key="none",
        cache=False,
        max_tokens=int(os.environ.get("DSPY_MAX_TOKENS", "256")),
        temperature=0.0,
        num_retries=0,
    )
    dspy.configure(lm=lm, callbacks=[counter])

    class Sentiment(dspy.Signature):
        """Classify the sentiment of the sentence."""

        sentence: str = dspy.InputField()
        sentiment: Literal["positive", "negative"] = dspy.OutputField()

    def examples(rows):
        return [dspy.Example(sentence=r["sentence"], label=r["label"]).with_inputs("sentence") for r in rows]

    train, val, test = examples(split["train"]), examples(split["val"]), examples(split["test"])

    def metric(example, pred, trace=None):
        return getattr(pred, "sentiment", None) == example.label

    def feedback_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        """The metric with feedback, the same text as ``optimize_sst2.py reflective`` gives ours."""
        answer = getattr(pred, "sentiment", None)
        if answer == gold.label:
            return dspy.Prediction(score=1.0, feedback="Correct.")
        return dspy.Prediction(
            score=0.0, feedback=f"Wrong: the sentiment of this sentence is {gold.label}, not {answer}."
        )

    def wilson(accuracy, n, z=1.96):
        """The 95% Wilson interval of an accuracy (in %) measured on ``n`` examples."""
        p = accuracy / 100
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
        return [round(100 * (centre - half), 1), round(100 * (centre + half), 1)]

    def held_out(program):
        evaluate = dspy.Evaluate(
            devset=test, metric=metric, num_threads=1, display_progress=False, max_errors=len(test) + 1
        )
        return float(evaluate(program).score)

    def test_entry(program):
        """Accuracy with its interval, and how many answers did not parse (no ``sentiment``), on the test rows."""
        start, before = time.perf_counter(), calls()
        evaluate = dspy.Evaluate(
            devset=test, metric=metric, num_threads=1, display_progress=False, max_errors=len(test) + 1
        )
        result = evaluate(program)
        accuracy = float(result.score)
        unparsed = sum(1 for _, prediction, _ in result.results if getattr(prediction, "sentiment", None) is None)
        return {
            "test_accuracy": accuracy,
            "test_ci95": wilson(accuracy, len(test)),
            "test_unparsed": unparsed,
            "test_lm_calls": calls() - before,
            "test_seconds": round(time.perf_counter() - start, 1),
        }

    def program_state(program):
        predictor = program.predictors()[0]
        return {"instructions": predictor.signature.instructions, "demos": len(predictor.demos)}

    def calls():
        return counter.calls

    def tested(program):
        state = program_state(program)
        unchanged = state == {"instructions": Sentiment.instructions, "demos": 0}
        return {**state, "unchanged": unchanged, **test_entry(program)}

    def first(rows, variable):
        limit = os.environ.get(variable)
        return rows[: int(limit)] if limit else rows

    results = {}

    def report(name, entry):
        results[name] = entry
        print(json.dumps({"stage": name, **entry}), flush=True)  # a cut-off run keeps what it measured

    def failed(name, exc, start, before):
        """Report a stage that raised: the error and what it had spent until then."""
        report(
            name,
            {
                "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                "optimize_seconds": round(time.perf_counter() - start, 1),
                "optimize_lm_calls": calls() - before,
            },
        )

    base = dspy.Predict(Sentiment)
    if "zero-shot" in stages:
        report("zero-shot", test_entry(base))
    if "bootstrap" in stages:
        start, before = time.perf_counter(), calls()
        bootstrap = dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=4, max_labeled_demos=4, max_errors=1000)
        compiled = bootstrap.compile(base, trainset=train)
        report(
            "BootstrapFewShot",
            {
                "optimize_seconds": round(time.perf_counter() - start, 1),
                "optimize_lm_calls": calls() - before,
                "test_accuracy": held_out(compiled),
            },
        )
    if "mipro" in stages:
        start, before = time.perf_counter(), calls()
        try:
            mipro = dspy.MIPROv2(metric=metric, auto="light", num_threads=1, max_errors=1000)
            optimized = mipro.compile(base, trainset=train, valset=val)
            report(
                "MIPROv2 light",
                {
                    "optimize_seconds": round(time.perf_counter() - start, 1),
                    "optimize_lm_calls": calls() - before,
                    "test_accuracy": held_out(optimized),
                },
            )
        except Exception as exc:
            failed("MIPROv2 light", exc, start, before)
    if "simba" in stages:
        start, before = time.perf_counter(), calls()
        try:
            steps = int(os.environ.get("DSPY_SIMBA_STEPS", "3"))
            simba = dspy.SIMBA(
                metric=feedback_metric, bsize=8, num_candidates=3, max_steps=steps, max_demos=2, num_threads=1
            )
            simba_train = first(train, "DSPY_SIMBA_TRAIN_ROWS")
            optimized = simba.compile(base.deepcopy(), trainset=simba_train, seed=0)
            seconds, optimize_calls = time.perf_counter() - start, calls() - before
            report(
                "SIMBA (reduced)",
                {
                    "optimize_seconds": round(seconds, 1),
                    "optimize_lm_calls": optimize_calls,
                    "train_rows": len(simba_train),
                    "max_steps": steps,
                    "train_score": max((c["score"] for c in optimized.candidate_programs), default=None),
                    "candidates": len(optimized.candidate_programs),
                    **tested(optimized),
                },
            )
        except Exception as exc:
            failed("SIMBA (reduced)", exc, start, before)
    if "gepa" in stages:
        budget = int(os.environ.get("DSPY_GEPA_METRIC_CALLS", "600"))
        name = f"GEPA ({budget} metric calls)"
        reflection_lm = dspy.LM(
            "openai/smollm2",
            api_base=api_base,
            api_key="none",
            cache=False,
            max_tokens=int(os.environ.get("DSPY_REFLECTION_MAX_TOKENS", "256")),
            temperature=0.0,
            num_retries=0,
        )
        gepa_val = first(val, "DSPY_GEPA_VAL_ROWS")
        limit = os.environ.get("DSPY_GEPA_SECONDS")
        start, before = time.perf_counter(), calls()
        try:
            from gepa.utils.stop_condition import TimeoutStopCondition

            gepa = dspy.GEPA(
                metric=feedback_metric,
                max_metric_calls=budget,
                reflection_lm=reflection_lm,
                num_threads=1,
                track_stats=True,
                seed=0,
                gepa_kwargs={"stop_callbacks": [TimeoutStopCondition(float(limit))]} if limit else None,
            )
            optimized = gepa.compile(base.deepcopy(), trainset=train, valset=gepa_val)
            seconds, optimize_calls = time.perf_counter() - start, calls() - before
            detail = optimized.detailed_results
            report(
                name,
                {
                    "optimize_seconds": round(seconds, 1),
                    "optimize_lm_calls": optimize_calls,
                    "val_rows": len(gepa_val),
                    "time_limit_s": float(limit) if limit else None,
                    "metric_calls": detail.total_metric_calls,
                    "full_val_evals": detail.num_full_val_evals,
                    "candidates": len(detail.candidates),
                    "val_accuracy": round(100 * detail.val_aggregate_scores[detail.best_idx], 1),
                    **tested(optimized),
                },
            )
        except Exception as exc:
            failed(name, exc, start, before)
    print(json.dumps({"version": dspy.__version__, "results": results}))
finally:
    server.terminate()
    server.wait(timeout=30)
