"""The final choice of proposed texts: a proposal replaces the original only when it wins on the same rows.

An LM-proposed instruction (MIPRO, COPRO, SIMBA, GEPA; VariableSearch returns a Pareto point instead)
that ties with the original on a small validation set can still come out on top by accident. At
the end of a run, the best configuration is compared with the same configuration with the original
texts put back, row by row on the validation set: the proposal stays only when it is better on
enough more rows than it is worse that chance is unlikely (a one-sided exact sign test, p below
:data:`SIGNIFICANCE`). Ties and losses keep the original.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..program import Module, configuration_from_json, configuration_to_json

if TYPE_CHECKING:
    from ._base import OptimizationState, Optimizer, Trial

SIGNIFICANCE = 0.05


def implicit_key(predictor_name: str, what: str) -> str:
    """The variable name of a predictor's implicit variable (``answer.demos``; ``demos`` for a root)."""
    return what if predictor_name == "self" else f"{predictor_name}.{what}"


def instruction_originals(program: Module) -> dict[str, str]:
    """Each predictor's instruction variable name -> its instruction as the program has it."""
    return {implicit_key(name, "instructions"): p.signature.instructions for name, p in program.named_predictors()}


def sign_test(wins: int, losses: int) -> float:
    """The one-sided exact sign test: the chance of at least ``wins`` of ``wins + losses`` coin flips.

    Rows where both sides score the same carry no information and are left out (``1.0`` when
    every row is a tie).
    """
    n = wins + losses
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n)


def _full_json(current: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    return {**current, **configuration_to_json(config)}


def _comparable(state: OptimizationState, trial: Trial) -> bool:
    """A complete full trial whose per-row scores this run kept."""
    return trial.full and trial.status == "complete" and trial.number in state.row_scores


def _scored_trial(state: OptimizationState, config: Mapping[str, Any], current: Mapping[str, Any]) -> Trial | None:
    """The best full trial of exactly ``config`` whose per-row scores this run kept."""
    wanted = _full_json(current, config)
    matches = [t for t in state.trials if _comparable(state, t) and {**current, **t.configuration} == wanted]
    return max(matches, key=lambda t: t.score, default=None)


def _original_trial(state: OptimizationState, originals: Mapping[str, str], current: Mapping[str, Any]) -> Trial | None:
    """The best full trial (with per-row scores) that keeps every original text (the baseline, at least)."""
    matches = [
        t
        for t in state.trials
        if _comparable(state, t) and all({**current, **t.configuration}.get(k) == v for k, v in originals.items())
    ]
    return max(matches, key=lambda t: t.score, default=None)


def choose_texts(optimizer: Optimizer, state: OptimizationState) -> dict[str, Any] | None:
    """Keep the best configuration's proposed texts only when they beat the originals on the same rows.

    Returns what ``last_result.details["instruction_choice"]`` reports (None when the run
    proposes no text). When the originals are kept, ``state``'s best configuration, program and
    score become those of the configuration with the original texts.
    """
    originals = optimizer.text_originals(state)
    if not originals:
        return None
    best = dict(state.best_configuration)
    changed = sorted(k for k, v in originals.items() if k in best and best[k] != v)
    if not changed:
        record: dict[str, Any] = {"kept": "original", "reason": "the best configuration keeps the original texts"}
        _annotate(state, originals, best, best, record)
        return record
    current = configuration_to_json(state.program.variable_space().current())
    reverted = {**best, **{k: originals[k] for k in changed}}
    proposed_trial = _scored_trial(state, best, current) or optimizer.score_on_valset(state, best)
    original_trial = _scored_trial(state, reverted, current) or optimizer.score_on_valset(state, reverted)
    original_config = reverted
    record = {"changed": changed, "compared_with": "the same configuration with the original texts"}
    if original_trial is None:  # a budget is spent: the best configuration that keeps the originals stands in
        original_trial = _original_trial(state, originals, current)
        if original_trial is not None:
            original_config = configuration_from_json(original_trial.configuration)
            record["compared_with"] = "the best configuration scored with the original texts"
    if proposed_trial is None or original_trial is None:
        record["kept"] = "original"
        record["reason"] = "not compared on the validation set (a budget ran out first), so the original texts are kept"
        _choose(state, original_config, original_trial)
        _annotate(state, originals, best, original_config, record)
        return record
    proposed_rows = state.row_scores[proposed_trial.number]
    original_rows = state.row_scores[original_trial.number]
    wins = sum(p > o for p, o in zip(proposed_rows, original_rows))
    losses = sum(p < o for p, o in zip(proposed_rows, original_rows))
    ties = len(proposed_rows) - wins - losses
    p_value = sign_test(wins, losses)
    record.update(
        rows=len(proposed_rows),
        wins=wins,
        losses=losses,
        ties=ties,
        p_value=round(p_value, 4),
        proposed_trial=proposed_trial.number,
        original_trial=original_trial.number,
    )
    if wins > losses and p_value < SIGNIFICANCE:
        record["kept"] = "proposed"
        record["reason"] = f"better than the original on {wins} validation rows, worse on {losses} (p={p_value:.3f})"
        _choose(state, best, proposed_trial)
        _annotate(state, originals, best, best, record)
        return record
    record["kept"] = "original"
    record["reason"] = (
        f"not better than the original by more than noise: better on {wins} validation rows, worse on {losses}, "
        f"equal on {ties} (p={p_value:.3f}; a proposal needs p < {SIGNIFICANCE})"
    )
    _choose(state, original_config, original_trial)
    _annotate(state, originals, best, original_config, record)
    return record


def _choose(state: OptimizationState, config: dict[str, Any], trial: Trial | None) -> None:
    """Make ``config`` the run's result (with ``trial``'s score; none when it was never scored)."""
    changed = config != state.best_configuration
    if changed or state.best_program is None:
        state.best_program = state.program.with_configuration(config)
    state.best_configuration = dict(config)
    if trial is not None:
        state.best_score = trial.score
    elif changed:  # the best score was the proposal's: the returned program has none
        state.best_score = -math.inf


def _lines(text: Any) -> list[str]:
    return [str(text), *str(text).splitlines()]


def _annotate(
    state: OptimizationState,
    originals: Mapping[str, str],
    proposed: Mapping[str, Any],
    final: Mapping[str, Any],
    record: Mapping[str, Any],
) -> None:
    """Give each logged proposal ``chosen`` (it is in the returned program) and ``outcome`` (why, or why not)."""
    for entry in state.proposal_log:
        key = entry.get("key") or implicit_key(entry["predictor"], "instructions")
        text = entry["instruction"]
        kept = entry.get("kept", True)
        in_proposed = kept and text != originals.get(key) and text in _lines(proposed.get(key, ""))
        entry["chosen"] = bool(in_proposed and text in _lines(final.get(key, "")))
        if not kept:
            entry["outcome"] = f"dropped before any trial: {entry.get('reason')}"
        elif entry["chosen"]:
            entry["outcome"] = f"chosen: {record['reason']}"
        elif in_proposed:
            entry["outcome"] = f"in the best configuration, but the original is kept: {record['reason']}"
        else:
            entry["outcome"] = "tried; not in the best configuration"
