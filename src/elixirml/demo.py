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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from . import metrics, optimizers
from ._secrets import redact_url
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


#: MIPRO's time limit in seconds (quick, full): the whole demo stays under 10 minutes on 2 cores.
MIPRO_TIMEOUT = {True: 300, False: 420}


def mipro_settings(quick: bool) -> dict[str, int]:
    """The demo's MIPRO settings: 12 trials (8 quick) on 20-sentence minibatches, one promotion at the end.

    MIPRO scores prompt format x decoding on 50 validation rows before its search and promotes the
    best configurations to the whole validation set at the end (up to 4 by default, 80 calls each
    here); the demo searches 12 trials, not 16, and promotes one, so that it stays near the ~500 LM
    calls (about 5 minutes on 2 cores) it took before those steps existed (docs/benchmarks.md).
    """
    return {"num_trials": 8 if quick else 12, "minibatch_size": 20, "max_promotions": 1}


FORMATS = {"json": "JSON", "plain": "plain `field: value` lines", "chat": "chat markers"}
STRATEGIES = {"direct": "answer directly (Predict)", "cot": "reason step by step first (ChainOfThought)"}


def _part(key: str) -> str:
    """The variable a configuration key names, without its predictor (``classify.adapter`` -> ``adapter``)."""
    return key.rsplit(".", 1)[-1]


def _words(part: str, value: Any) -> str:
    if part == "adapter":
        return FORMATS.get(str(value), repr(value))
    if part == "strategy":
        return STRATEGIES.get(str(value), repr(value))
    if part == "demos":
        count = len(value) if isinstance(value, list) else 0
        return "no demos (zero-shot)" if count == 0 else f"{count} demo{'s' if count != 1 else ''}"
    if part == "decoding":
        return f"{value} decoding"
    return repr(value)


def describe_changes(before: Mapping[str, Any], after: Mapping[str, Any], result: Any | None = None) -> list[str]:
    """What an optimizer changed, one plain sentence per variable (format, decoding, strategy, demos, instruction).

    Args:
        before: the configuration of the program given to the optimizer (``program.configuration()``).
        after: the configuration of the program it returned.
        result: its ``last_result`` (an :class:`~elixirml.optimizers.OptimizationResult`); the
            instruction proposals it records (``details["proposals"]``) and the variables it left
            out of the search (``inert_variables``) are summarised as well.

    Returns:
        One line per variable, in the order format, decoding, strategy, demos, instruction, others.
    """
    labels = {"adapter": "format", "decoding": "decoding", "strategy": "strategy", "demos": "demos"}
    order = ["adapter", "decoding", "strategy", "demos", "instructions"]
    keys = sorted(set(before) | set(after), key=lambda k: (order.index(_part(k)) if _part(k) in order else 99, k))
    inert = set(result.inert_variables) if result is not None else set()
    details = result.details if result is not None else {}
    lines: list[str] = []
    for key in keys:
        part = _part(key)
        label = labels.get(part, key)
        old, new = before.get(key), after.get(key, before.get(key))
        if part == "instructions":
            lines.append(
                _describe_instruction(
                    str(old), str(new), details.get("proposals", []), details.get("instruction_choice")
                )
            )
        elif key in inert:
            lines.append(
                f"{label}: left out of the search (no value of it changed a request to this model); "
                f"stays {_words(part, old)}"
            )
        elif old == new:
            lines.append(f"{label}: kept {_words(part, old)}")
        else:
            lines.append(f"{label}: {_words(part, old)} -> {_words(part, new)}")
    return lines


def _describe_instruction(
    old: str, new: str, proposals: Sequence[Mapping[str, Any]], choice: Mapping[str, Any] | None = None
) -> str:
    kept = [p for p in proposals if p.get("kept")]
    dropped = [p for p in proposals if not p.get("kept")]
    if proposals:
        tally = f"proposals: {len(proposals)}, {len(kept)} kept as candidates, {len(dropped)} dropped"
        reasons = sorted({str(p.get("reason")) for p in dropped})
        if reasons:
            tally += " (" + "; ".join(reasons) + ")"
    else:
        tally = "no proposals"
    if choice is not None and "changed" in choice:  # the final paired comparison on the validation rows
        tally += f"; the best proposal was {'kept' if choice['kept'] == 'proposed' else 'not kept'}: {choice['reason']}"
    if new == old:
        return f'instruction: kept the original "{old}"; {tally}'
    return f'instruction: "{old}" -> "{new}"; {tally}'


def verdict(step: str, before: float, after: float, reason: str = "") -> str:
    """One sentence saying whether an optimization step helped on the held-out rows, and why not where it did not.

    Args:
        step: the step's name (``"BootstrapFewShot"``).
        before: the held-out accuracy (percent) of the program it started from.
        after: its program's held-out accuracy (percent).
        reason: why it did not help, where known (appended after "because" when it did not).
    """
    change = after - before
    if change > 0:
        return f"{step} helped: held-out accuracy rose from {before:.1f}% to {after:.1f}% (+{change:.1f} points)."
    moved = "stayed at" if change == 0 else "fell from"
    figures = f"{before:.1f}%" if change == 0 else f"{before:.1f}% to {after:.1f}% ({change:.1f} points)"
    sentence = f"{step} did not help: held-out accuracy {moved} {figures}."
    return f"{sentence} {reason}" if reason else sentence


def bootstrap_reason(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """Why BootstrapFewShot's program can score below the zero-shot one: what it changed (only demos)."""
    added = [k for k in after if _part(k) == "demos" and after[k] != before.get(k)]
    if not added:
        return "It found no demos to add, so the program is the zero-shot one and the difference is noise."
    count = sum(len(after[k]) for k in added)
    return (
        f"It only adds demos ({count} here), picked because the model answered them right on training rows "
        "and never checked on validation rows; with them in the prompt the model did no better on unseen "
        "sentences. MIPRO scores demo sets (zero demos among them) on validation before keeping any."
    )


def mipro_reason(before: Mapping[str, Any], after: Mapping[str, Any], result: Any | None) -> str:
    """Why MIPRO's program did not beat the program it started from on the held-out rows."""
    if result is None:
        return ""
    stopped = f"It stopped early ({result.stopped}) after {_trials(len(result.trials))}. " if result.stopped else ""
    if all(after.get(k) == before.get(k) for k in set(before) | set(after)):
        return stopped + (
            f"No configuration it tried beat the program as given on validation "
            f"(best {result.best_score:.1f}% over {_trials(len(result.trials))}), so it kept the original."
        )
    return stopped + (
        f"Its choice scored best on validation ({result.best_score:.1f}%), and that gain did not carry over "
        "to the held-out rows (the sets are small: a few sentences move the score by several points)."
    )


def _trials(count: int) -> str:
    return f"{count} trial{'s' if count != 1 else ''}"


def running_best(trials: Sequence[Any]) -> list[float]:
    """The best full-validation score so far at each trial (NaN before the first; minibatch scores do not count)."""
    best, out = float("nan"), []
    for trial in trials:
        if trial.full and (best != best or trial.score > best):
            best = trial.score
        out.append(best)
    return out


def plot_trials(trials: list[Any], path: Path) -> Path | None:
    """A PNG of every trial's score (minibatch and full evaluations) and the running best (None: no matplotlib)."""
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
    ax.step(
        numbers,
        running_best(trials),
        where="post",
        color="#55A868",
        linewidth=2,
        label="running best (full validation set)",
        zorder=3,
    )
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

    settings = mipro_settings(quick)
    console.print(
        f"[bold]Optimizing with MIPRO light[/bold] (format x decoding first, then instructions x demos x strategy; "
        f"{settings['num_trials']} trials)",
        soft_wrap=True,
    )
    mipro = optimizers.MIPRO(
        metric,
        auto="light",
        num_trials=settings["num_trials"],
        minibatch_size=settings["minibatch_size"],
        max_promotions=settings["max_promotions"],
        concurrency=1,
    )
    start = time.perf_counter()
    with track_usage() as usage:
        best = mipro.compile(base, trainset=train, valset=val, save_as="sst2-sentiment", timeout=MIPRO_TIMEOUT[quick])
    if mipro.last_result is not None and mipro.last_result.stopped:
        console.print(
            f"MIPRO stopped early ({mipro.last_result.stopped}, after {_trials(len(mipro.last_result.trials))}): "
            "it returns the best program it scored on the whole validation set so far.",
            soft_wrap=True,
        )
    held_out("MIPRO light", best, usage.calls, usage.total_tokens, time.perf_counter() - start)

    table = Table(title="Before / after on held-out SST-2 sentences")
    for column in ("program", "accuracy", "optimize LM calls", "optimize tokens", "optimize time", "eval time"):
        table.add_column(column, justify="right" if column != "program" else "left", no_wrap=column == "program")
    for label, result, calls, tokens, seconds in rows:
        table.add_row(
            label, f"{result.score:.1f}%", str(calls), str(tokens), f"{seconds:.0f}s", f"{result.wall_time:.0f}s"
        )
    console.print(table)

    start_config, boot_config, best_config = (dict(p.configuration()) for p in (base, boot, best))
    zero, boot_score, best_score = (r[1].score for r in rows)
    console.print("[bold]What BootstrapFewShot changed[/bold]")
    for line in describe_changes(start_config, boot_config, bootstrap.last_result):
        console.print(f"  {line}", markup=False, soft_wrap=True)
    console.print(
        verdict("BootstrapFewShot", zero, boot_score, bootstrap_reason(start_config, boot_config)), soft_wrap=True
    )
    console.print(
        "[bold]What MIPRO changed[/bold] (it starts from the zero-shot program, not BootstrapFewShot's)", soft_wrap=True
    )
    for line in describe_changes(start_config, best_config, mipro.last_result):
        console.print(f"  {line}", markup=False, soft_wrap=True)
    console.print(
        verdict("MIPRO", zero, best_score, mipro_reason(start_config, best_config, mipro.last_result)), soft_wrap=True
    )

    store = Store()
    version = store.save(best, "sst2-sentiment", tags=["demo", "mipro"], message="made by elixirml demo")
    store.close()
    console.print(f"Saved as sst2-sentiment v{version['number']} in {redact_url(store.url)}")
    out.mkdir(parents=True, exist_ok=True)
    plot = plot_trials(mipro.last_result.trials if mipro.last_result else [], out / "elixirml-demo-trials.png")
    if plot is not None:
        console.print(f"Score per MIPRO trial, with the running best, plotted to {plot.resolve()}", soft_wrap=True)
    else:
        console.print("No plot: matplotlib is not installed (pip install matplotlib).")
    return {
        "results": {
            label: {"accuracy": r.score, "lm_calls": c, "tokens": t, "optimize_seconds": s}
            for label, r, c, t, s in rows
        },
        "changes": {
            "BootstrapFewShot": describe_changes(start_config, boot_config, bootstrap.last_result),
            "MIPRO": describe_changes(start_config, best_config, mipro.last_result),
        },
        "version": version,
        "plot": str(plot) if plot else None,
    }


if __name__ == "__main__":
    run_demo()
