"""DSPy side of bench/optimize_sst2.py; runs in bench/.venv-dspy against llama.cpp's server.

Usage: python bench/_dspy_sst2.py GGUF_PATH SPLIT_JSON [STAGES]  (prints JSON)

STAGES: a comma-separated subset of zero-shot,bootstrap,mipro (default: all three).
DSPY_MAX_TOKENS (environment, default 256): the answer length limit. A well-formed answer needs
about 20 tokens; the model often writes on until the limit, so a lower one makes a call faster.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Literal

import dspy

gguf, split_file = sys.argv[1], sys.argv[2]
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
        "8766",
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
            urllib.request.urlopen("http://127.0.0.1:8766/v1/models", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    lm = dspy.LM(
        "openai/smollm2",
        api_base="http://127.0.0.1:8766/v1",
        api_key="none",
        cache=False,
        max_tokens=int(os.environ.get("DSPY_MAX_TOKENS", "256")),
        temperature=0.0,
        num_retries=0,
    )
    dspy.configure(lm=lm)

    class Sentiment(dspy.Signature):
        """Classify the sentiment of the sentence."""

        sentence: str = dspy.InputField()
        sentiment: Literal["positive", "negative"] = dspy.OutputField()

    def examples(rows):
        return [dspy.Example(sentence=r["sentence"], label=r["label"]).with_inputs("sentence") for r in rows]

    train, val, test = examples(split["train"]), examples(split["val"]), examples(split["test"])

    def metric(example, pred, trace=None):
        return getattr(pred, "sentiment", None) == example.label

    def held_out(program):
        evaluate = dspy.Evaluate(
            devset=test, metric=metric, num_threads=1, display_progress=False, max_errors=len(test) + 1
        )
        return float(evaluate(program).score)

    def calls():
        return len(lm.history)

    results = {}

    def report(name, entry):
        results[name] = entry
        print(json.dumps({"stage": name, **entry}), flush=True)  # a cut-off run keeps what it measured

    base = dspy.Predict(Sentiment)
    if "zero-shot" in stages:
        report("zero-shot", {"test_accuracy": held_out(base)})
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
            report(
                "MIPROv2 light",
                {
                    "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                    "optimize_seconds": round(time.perf_counter() - start, 1),
                    "optimize_lm_calls": calls() - before,
                },
            )
    print(json.dumps({"version": dspy.__version__, "results": results}))
finally:
    server.terminate()
    server.wait(timeout=30)
