"""The main job: optimize an SST-2 sentiment program on the embedded model, end to end.

Loads SST-2 slices from the bundled data, builds a sentiment program with a strategy
variable, evaluates it zero-shot on the embedded SmolLM2 model, optimizes it (BootstrapFewShot,
then MIPRO light within a bounded budget), evaluates the result on held-out examples, prints a
before/after table, saves the version to the store and plots the score of every trial.
No network, no API key.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from . import metrics, optimizers
from .data import sst2
from .evaluation import EvaluationResult, evaluate
from .lm import LM, track_usage
from .program import ChainOfThought, Predict, Program, Store
from .schema import Example, InputField, OutputField, Signature
from .settings import configure, current
from .variables import Variable


class Sentiment(Signature):
    """Classify the sentiment of the sentence."""

    sentence: str = InputField()
    sentiment: Literal["positive", "negative"] = OutputField()


class SentimentProgram(Program):
    """A one-step sentiment classifier whose module and prompt format are variables."""

    strategy = Variable.module({"direct": Predict, "cot": ChainOfThought}, default="direct")

    def __init__(self) -> None:
        super().__init__()
        # The local model's preferred JSON prompt, or plain `field: value` lines (better for small models).
        self.classify = self.strategy(Sentiment, adapter=Variable.choice(["json", "plain"]))

    def forward(self, sentence: str) -> Any:
        """Classify one sentence."""
        return self.classify(sentence=sentence)


def split(quick: bool) -> tuple[list[Example], list[Example], list[Example]]:
    """The fixed split: SST-2 dev shuffled with Random(0); train 0-99, validation 100-..., test 400-499."""
    rows = sst2().to_list()
    random.Random(0).shuffle(rows)
    if quick:
        return rows[0:30], rows[100:120], rows[400:430]
    return rows[0:100], rows[100:180], rows[400:500]


def plot_trials(trials: list[Any], path: Path) -> Path | None:
    """A PNG of the score of every trial (minibatch and full evaluations)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    numbers = [t.number for t in trials]
    ax.plot(numbers, [t.score for t in trials], color="#999999", linewidth=1, zorder=1)
    for full, color, label in ((False, "#4C72B0", "minibatch"), (True, "#C44E52", "full validation set")):
        points = [t for t in trials if t.full == full]
        ax.scatter([t.number for t in points], [t.score for t in points], color=color, label=label, zorder=2)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("trial")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("MIPRO on SST-2 with the embedded SmolLM2-135M")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_demo(out: Path = Path("."), quick: bool = False) -> dict[str, Any]:
    """Run the main job and return its numbers (also printed as a table)."""
    console = Console(stderr=False)
    train, val, test = split(quick)
    if current().lm is None:
        configure(lm=LM("local", temperature=0.0))
    metric = metrics.ExactMatch(field="label", pred_field="sentiment")
    rows: list[tuple[str, EvaluationResult, int, int, float]] = []

    def held_out(label: str, program: Any, calls: int, tokens: int, seconds: float) -> None:
        console.print(f"[bold]Evaluating {label} on {len(test)} held-out sentences[/bold]")
        result = evaluate(program, test, metric, concurrency=1, record=False)
        rows.append((label, result, calls, tokens, seconds))

    console.print(
        f"[bold]SST-2 sentiment on the embedded model[/bold]: train {len(train)}, validation "
        f"{len(val)}, test {len(test)}"
    )
    base = SentimentProgram()
    held_out("zero-shot", base, 0, 0, 0.0)

    console.print("[bold]Optimizing with BootstrapFewShot[/bold]")
    bootstrap = optimizers.BootstrapFewShot(metric, max_bootstrapped_demos=2, max_labeled_demos=2)
    start = time.perf_counter()
    with track_usage() as usage:
        boot = bootstrap.compile(base, trainset=train, save_as="sst2-sentiment")
    held_out("BootstrapFewShot", boot, usage.calls, usage.total_tokens, time.perf_counter() - start)

    console.print("[bold]Optimizing with MIPRO light[/bold] (instructions x demos x strategy x decoding x adapter)")
    mipro = optimizers.MIPRO(metric, auto="light", num_trials=8 if quick else 16, minibatch_size=20, concurrency=1)
    start = time.perf_counter()
    with track_usage() as usage:
        best = mipro.compile(base, trainset=train, valset=val, save_as="sst2-sentiment", timeout=600 if quick else 780)
    held_out("MIPRO light", best, usage.calls, usage.total_tokens, time.perf_counter() - start)

    table = Table(title="Before / after on held-out SST-2 sentences")
    for column in ("program", "accuracy", "optimize LM calls", "optimize tokens", "optimize time", "eval time"):
        table.add_column(column, justify="right" if column != "program" else "left")
    for label, result, calls, tokens, seconds in rows:
        table.add_row(
            label, f"{result.score:.1f}%", str(calls), str(tokens), f"{seconds:.0f}s", f"{result.wall_time:.0f}s"
        )
    console.print(table)

    store = Store()
    version = store.save(best, "sst2-sentiment", tags=["demo", "mipro"], message="made by elixirml demo")
    store.close()
    chosen = mipro.last_result.best_configuration if mipro.last_result else {}
    shown = {k: (f"{len(v)} demos" if k.endswith("demos") else v) for k, v in chosen.items()}
    console.print(f"Chosen configuration: {shown}")
    console.print(f"Saved as sst2-sentiment v{version['number']} in {store.url}")
    out.mkdir(parents=True, exist_ok=True)
    plot = plot_trials(mipro.last_result.trials if mipro.last_result else [], out / "elixirml-demo-trials.png")
    if plot is not None:
        console.print(f"Score per trial plotted to {plot}")
    return {
        "results": {
            label: {"accuracy": r.score, "lm_calls": c, "tokens": t, "optimize_seconds": s}
            for label, r, c, t, s in rows
        },
        "version": version,
        "plot": str(plot) if plot else None,
    }


if __name__ == "__main__":
    run_demo()
