"""Optimizing an SST-2 sentiment program on the embedded SmolLM2-135M model.

Fixed split of ``shared/data/sst2/dev.tsv`` (bundled as ``em.data.sst2()``): the 872 rows
shuffled with ``random.Random(0).shuffle``; train = rows 0-99, validation = rows 100-299,
test = rows 400-499. Runs zero-shot, BootstrapFewShot and MIPRO light, and reports held-out
accuracy, LM calls and wall time. DSPy's numbers come from ``bench/_dspy_sst2.py`` (run
against llama.cpp's OpenAI-compatible server with the same GGUF file).

Two programs:

- ``declared``: ``Predict(Sentiment, adapter=Variable.choice(["json", "plain"]))``, the prompt
  format declared as a variable (zero-shot, BootstrapFewShot and MIPRO light);
- ``natural``: the program as the README teaches it (the issue "MIPRO improves the program
  users actually write"): a Program with a temperature variable passed by hand and nothing
  else declared (zero-shot and MIPRO light).

- ``reflective``: the ``declared`` program under GEPA, SIMBA and COPRO, with reduced budgets
  to fit a shared 2-core machine (GEPA ``max_metric_calls=600`` instead of light's ~1,470;
  SIMBA ``bsize=8, num_candidates=3, max_steps=3``; COPRO ``breadth=2, depth=1``). The
  reflection / proposal LM is the same embedded 135M model.
- ``reflective-full``: the same program under SIMBA with its defaults (``bsize=32,
  num_candidates=6, max_steps=8, max_demos=4``) and COPRO with its defaults (``breadth=10,
  depth=3``); ``gepa-light``: GEPA with ``auto="light"``. Recorded beside the reduced runs.

``split-json PATH`` writes the split (``train``, ``val``, ``test`` lists of ``{"sentence",
"label"}`` rows) for the DSPy side.

Usage: python bench/optimize_sst2.py [declared|natural|both|reflective|reflective-full|gepa-light|split-json PATH]
(writes bench/results/optimize_sst2.json)
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import elixirml as em

OUT = Path(__file__).resolve().parent / "results" / "optimize_sst2.json"
MODES = ("declared", "natural", "both", "reflective", "reflective-full", "gepa-light", "split-json")


class Sentiment(em.Signature):
    """Classify the sentiment of the sentence."""

    sentence: str = em.InputField()
    sentiment: Literal["positive", "negative"] = em.OutputField()


class NaturalSentiment(em.Signature):
    """Classify the sentiment of a movie review sentence."""

    sentence: str = em.InputField()
    sentiment: Literal["positive", "negative"] = em.OutputField()


class Classifier(em.Program):
    """The issue's program, as written: nothing declared beyond the temperature."""

    temperature = em.Variable.float(default=0.7, low=0.0, high=1.0)

    def __init__(self) -> None:
        super().__init__()
        self.classify = em.Predict(NaturalSentiment)

    def forward(self, sentence: str) -> em.Prediction:
        return self.classify(sentence=sentence, config={"temperature": self.temperature})


def split() -> tuple[list[em.Example], list[em.Example], list[em.Example]]:
    rows = em.data.sst2().to_list()
    random.Random(0).shuffle(rows)
    return rows[0:100], rows[100:300], rows[400:500]


def wilson(accuracy: float, n: int, z: float = 1.96) -> list[float]:
    """The 95% Wilson interval of an accuracy (in %) measured on ``n`` examples."""
    p = accuracy / 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return [round(100 * (centre - half), 1), round(100 * (centre + half), 1)]


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "both"
    if which not in MODES:
        raise SystemExit(f"usage: python bench/optimize_sst2.py [{'|'.join(MODES)} PATH]")
    train, val, test = split()
    if which == "split-json":
        if len(sys.argv) < 3:
            raise SystemExit("usage: python bench/optimize_sst2.py split-json PATH")
        rows = {"train": train, "val": val, "test": test}
        Path(sys.argv[2]).write_text(
            json.dumps({k: [{"sentence": r.sentence, "label": r.label} for r in v] for k, v in rows.items()})
        )
        return
    metric = em.metrics.ExactMatch(field="label", pred_field="sentiment")
    cache_dir = Path(tempfile.mkdtemp(prefix="sst2-bench-"))  # a fresh cache: every call is really made
    em.configure(
        lm=em.LM("local", temperature=0.0, cache=cache_dir / "cache.sqlite"),
        store=f"sqlite:///{cache_dir / 'store.db'}",
    )
    results = {}

    def held_out(name: str, program: em.Module, optimize_seconds: float, optimize_calls: int, extra: dict) -> None:
        with em.track_usage() as usage:
            start = time.perf_counter()
            result = em.evaluate(program, test, metric, concurrency=1, display_progress=False)
        results[name] = {
            "test_accuracy": result.score,
            "test_ci95": wilson(result.score, len(test)),
            "test_errors": result.errors,
            "optimize_seconds": round(optimize_seconds, 1),
            "optimize_lm_calls": optimize_calls,
            "test_lm_calls": usage.calls,
            "test_seconds": round(time.perf_counter() - start, 1),
            **extra,
        }
        print(
            f"{name:<22} test {result.score:5.1f}%  optimize {optimize_seconds:6.1f}s / {optimize_calls} calls",
            flush=True,
        )

    def mipro_light(name: str, program: em.Module) -> None:
        mipro = em.optimizers.MIPRO(metric, auto="light", seed=0, concurrency=1)
        start = time.perf_counter()
        best = mipro.compile(program, trainset=train, valset=val)
        seconds = time.perf_counter() - start
        result = mipro.last_result
        chosen = {
            k: (v if not k.endswith("demos") else f"{len(v)} demos") for k, v in result.best_configuration.items()
        }
        held_out(
            name,
            best,
            seconds,
            result.lm_calls,
            {
                "val_accuracy": round(result.best_score, 1),
                "chosen": chosen,
                "trials": len(result.trials),
                "details": result.details,
                "inert_variables": result.inert_variables,
            },
        )

    if which in ("reflective", "reflective-full", "gepa-light"):
        reflective(which, train, val, metric, held_out, results)
        return
    if which in ("natural", "both"):
        held_out("natural: zero-shot", Classifier(), 0.0, 0, {})
        mipro_light("natural: MIPRO light", Classifier())
    if which == "natural":
        save(results)
        return

    # The prompt format is a variable too: the local model's preferred JSON (schema-constrained
    # when generating) or plain ``field: value`` lines.
    base = em.Predict(Sentiment, adapter=em.Variable.choice(["json", "plain"]))
    held_out("zero-shot", base, 0.0, 0, {})

    bootstrap = em.optimizers.BootstrapFewShot(metric, max_bootstrapped_demos=4, max_labeled_demos=4)
    start = time.perf_counter()
    compiled = bootstrap.compile(base, trainset=train)
    held_out(
        "BootstrapFewShot",
        compiled,
        time.perf_counter() - start,
        bootstrap.last_result.lm_calls,
        {"demos": len(compiled.demos)},
    )

    mipro_light("MIPRO light", base)
    save(results)


def reflective(which: str, train: list, val: list, metric: em.metrics.Metric, held_out: Any, results: dict) -> None:
    """GEPA, SIMBA and COPRO on the declared program; each result is saved as soon as it is measured."""
    base = em.Predict(Sentiment, adapter=em.Variable.choice(["json", "plain"]))

    def feedback_metric(example: em.Example, prediction: em.Prediction, trace: Any = None) -> em.Feedback:
        score = metric(example, prediction)
        if score:
            return em.Feedback(1.0, "Correct.")
        return em.Feedback(
            0.0, f"Wrong: the sentiment of this sentence is {example.label}, not {prediction.sentiment}."
        )

    runs: dict[str, em.optimizers.Optimizer]
    if which == "reflective":
        runs = {
            "GEPA (600 metric calls)": em.optimizers.GEPA(
                feedback_metric, max_metric_calls=600, seed=0, concurrency=1, variable_trials=2
            ),
            "SIMBA (reduced)": em.optimizers.SIMBA(
                feedback_metric, bsize=8, num_candidates=3, max_steps=3, max_demos=2, seed=0, concurrency=1
            ),
            "COPRO (breadth 2, depth 1)": em.optimizers.COPRO(metric, breadth=2, depth=1, seed=0, concurrency=1),
        }
    elif which == "reflective-full":
        runs = {
            "SIMBA (defaults)": em.optimizers.SIMBA(feedback_metric, seed=0, concurrency=1),
            "COPRO (breadth 10, depth 3)": em.optimizers.COPRO(metric, breadth=10, depth=3, seed=0, concurrency=1),
        }
    else:
        runs = {"GEPA light": em.optimizers.GEPA(feedback_metric, auto="light", seed=0, concurrency=1)}
    for name, optimizer in runs.items():
        start = time.perf_counter()
        best = optimizer.compile(base, trainset=train, valset=val)
        seconds = time.perf_counter() - start
        result = optimizer.last_result
        chosen = {
            k: (v if not k.endswith("demos") else f"{len(v)} demos") for k, v in result.best_configuration.items()
        }
        details = {k: v for k, v in result.details.items() if k != "candidates"}
        if "candidates" in result.details:
            details["candidates"] = len(result.details["candidates"])
        held_out(
            name,
            best,
            seconds,
            result.lm_calls,
            {
                "val_accuracy": round(result.best_score, 1),
                "chosen": chosen,
                "trials": len(result.trials),
                "stopped": result.stopped,
                "details": details,
            },
        )
        save({name: results[name]})


def save(results: dict) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(OUT.read_text()) if OUT.exists() else {}
    existing.setdefault("elixirml", {}).update(results)
    OUT.write_text(json.dumps(existing, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
