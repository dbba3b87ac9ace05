"""SVG plots drawn by the server: trial scores with the running best, a Pareto front, score intervals.

Every label is escaped; the markup returned is safe to insert into a template.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 30, 44
PAD = 0.04  # of the axis range, on each side, so no point sits on an axis


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (a single value gets a range around it)."""
    if high <= low:
        pad = max(abs(low) * 0.1, 1.0)
        low, high = low - pad, high + pad
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    ticks = [math.floor(low / step) * step]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(ticks[-1] + step)
    return [round(t, 10) for t in ticks]


def _fmt(value: float) -> str:
    if abs(value) >= 1000 or (value and abs(value) < 0.01):
        return f"{value:.3g}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


class _Frame:
    """Maps data coordinates onto the plot area and draws the axes."""

    def __init__(self, xs: Sequence[float], ys: Sequence[float], x_label: str, y_label: str) -> None:
        self.xticks = _ticks(min(xs), max(xs))
        self.yticks = _ticks(min(ys), max(ys))
        xpad = (self.xticks[-1] - self.xticks[0]) * PAD
        ypad = (self.yticks[-1] - self.yticks[0]) * PAD
        self.x0, self.x1 = self.xticks[0] - xpad, self.xticks[-1] + xpad
        self.y0, self.y1 = self.yticks[0] - ypad, self.yticks[-1] + ypad
        self.x_label, self.y_label = x_label, y_label

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return LEFT + (value - self.x0) / span * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return HEIGHT - BOTTOM - (value - self.y0) / span * (HEIGHT - TOP - BOTTOM)

    def axes(self) -> list[str]:
        parts = []
        for t in self.yticks:
            y = self.y(t)
            parts.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>')
            parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
        for t in self.xticks:
            x = self.x(t)
            parts.append(f'<line class="grid" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}"/>')
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{_fmt(t)}</text>'
            )
        parts.append(
            f'<line class="axis" x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}"/>'
        )
        parts.append(f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}"/>')
        parts.append(
            f'<text class="label" x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{HEIGHT - 8}" '
            f'text-anchor="middle">{escape(self.x_label)}</text>'
        )
        parts.append(
            f'<text class="label" transform="translate(14 {(TOP + HEIGHT - BOTTOM) / 2:.0f}) rotate(-90)" '
            f'text-anchor="middle">{escape(self.y_label)}</text>'
        )
        return parts


def _svg(parts: list[str], title: str) -> Markup:
    body = "\n".join(parts)
    return Markup(
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def trials_plot(trials: Sequence[Mapping[str, Any]]) -> Markup:
    """Each trial's score by trial number (filled: full evaluation, hollow: minibatch) and the running best.

    Each point links to ``#trial-<n>``, the trial's row with its configuration.
    """
    numbers = [float(t["number"]) for t in trials]
    scores = [float(t["score"]) for t in trials]
    frame = _Frame(numbers, [*scores, 0.0, 100.0] if max(scores) <= 100 else [*scores, 0.0], "trial", "score")
    parts = frame.axes()
    best: float | None = None
    steps: list[str] = []
    for t in trials:
        if t.get("full", True) and t.get("status", "complete") == "complete":
            if best is None or t["score"] > best:
                if best is not None:
                    steps.append(f"{frame.x(t['number']):.1f},{frame.y(best):.1f}")
                best = float(t["score"])
            steps.append(f"{frame.x(t['number']):.1f},{frame.y(best):.1f}")
    if steps:
        parts.append(f'<polyline class="best" points="{" ".join(steps)}"/>')
    for t in trials:
        full = t.get("full", True)
        css = "point" if full else "point mini"
        if t.get("status", "complete") != "complete":
            css += " failed"
        label = f"trial {t['number']}: score {_fmt(float(t['score']))}" + ("" if full else " (minibatch)")
        parts.append(
            f'<a href="#trial-{int(t["number"])}" class="trial-link" data-trial="{int(t["number"])}">'
            f'<circle class="{css}" cx="{frame.x(t["number"]):.1f}" cy="{frame.y(t["score"]):.1f}" r="5">'
            f"<title>{escape(label)}</title></circle></a>"
        )
    parts.append(
        f'<g class="legend" transform="translate({WIDTH - RIGHT - 210} 6)">'
        '<circle class="point" cx="6" cy="6" r="5"/><text x="16" y="10">trial</text>'
        '<circle class="point mini" cx="66" cy="6" r="5"/><text x="76" y="10">minibatch</text>'
        '<line class="best" x1="146" y1="6" x2="166" y2="6"/><text x="170" y="10">best</text></g>'
    )
    return _svg(parts, "Trial scores with the running best")


def pareto_front(
    trials: Sequence[Mapping[str, Any]], objectives: Sequence[str], directions: Mapping[str, str]
) -> list[int]:
    """Numbers of the complete trials no other complete trial dominates on ``objectives``."""
    complete = [t for t in trials if t.get("status", "complete") == "complete"]
    signs = {n: 1 if directions[n] == "maximize" else -1 for n in objectives}

    def dominates(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        ge = all(signs[n] * a["scores"][n] >= signs[n] * b["scores"][n] for n in objectives)
        gt = any(signs[n] * a["scores"][n] > signs[n] * b["scores"][n] for n in objectives)
        return ge and gt

    return [int(t["number"]) for t in complete if not any(dominates(o, t) for o in complete if o is not t)]


def pareto_plot(
    trials: Sequence[Mapping[str, Any]], x_name: str, y_name: str, front: Sequence[int], directions: Mapping[str, str]
) -> Markup:
    """Trials placed by two objectives (``y_name`` up, ``x_name`` across); the Pareto front joined and marked."""
    usable = [t for t in trials if x_name in t["scores"] and y_name in t["scores"]]
    xs = [float(t["scores"][x_name]) for t in usable]
    ys = [float(t["scores"][y_name]) for t in usable]
    x_label = f"{x_name} ({'lower' if directions[x_name] == 'minimize' else 'higher'} is better)"
    y_label = f"{y_name} ({'lower' if directions[y_name] == 'minimize' else 'higher'} is better)"
    frame = _Frame(xs, ys, x_label, y_label)
    parts = frame.axes()
    on_front = sorted((t for t in usable if int(t["number"]) in front), key=lambda t: float(t["scores"][x_name]))
    if len(on_front) > 1:
        points = " ".join(f"{frame.x(t['scores'][x_name]):.1f},{frame.y(t['scores'][y_name]):.1f}" for t in on_front)
        parts.append(f'<polyline class="front" points="{points}"/>')
    for t in usable:
        number = int(t["number"])
        css = "point front-point" if number in front else "point dominated"
        y_value, x_value = _fmt(float(t["scores"][y_name])), _fmt(float(t["scores"][x_name]))
        label = f"trial {number}: {y_name} {y_value}, {x_name} {x_value}"
        if number in front:
            label += " (on the Pareto front)"
        parts.append(
            f'<a href="#trial-{number}" class="trial-link" data-trial="{number}">'
            f'<circle class="{css}" cx="{frame.x(t["scores"][x_name]):.1f}" cy="{frame.y(t["scores"][y_name]):.1f}" '
            f'r="6"><title>{escape(label)}</title></circle></a>'
        )
    parts.append(
        f'<g class="legend" transform="translate({WIDTH - RIGHT - 190} 6)">'
        '<circle class="point front-point" cx="6" cy="6" r="5"/><text x="16" y="10">Pareto front</text>'
        '<circle class="point dominated" cx="112" cy="6" r="5"/><text x="122" y="10">dominated</text></g>'
    )
    return _svg(parts, f"Pareto front: {y_name} against {x_name}")


def interval_plot(rows: Sequence[tuple[str, float, float | None]]) -> Markup:
    """Horizontal bars of scores (0-100) with their 95% confidence intervals: ``(label, score, half_width)``."""
    height = 34 * len(rows) + 30
    left, right = 150, 30
    span = WIDTH - left - right

    def x(value: float) -> float:
        return left + max(0.0, min(100.0, value)) / 100.0 * span

    parts = []
    for t in range(0, 101, 20):
        parts.append(f'<line class="grid" x1="{x(t):.1f}" y1="4" x2="{x(t):.1f}" y2="{height - 22}"/>')
        parts.append(f'<text class="tick" x="{x(t):.1f}" y="{height - 8}" text-anchor="middle">{t}</text>')
    for i, (label, score, half) in enumerate(rows):
        y = 10 + 34 * i
        parts.append(f'<text class="tick" x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect class="bar" x="{left}" y="{y}" width="{x(score) - left:.1f}" height="20"/>')
        if half is not None:
            lo, hi = x(score - half), x(score + half)
            parts.append(f'<line class="ci" x1="{lo:.1f}" y1="{y + 10}" x2="{hi:.1f}" y2="{y + 10}"/>')
            parts.append(f'<line class="ci" x1="{lo:.1f}" y1="{y + 4}" x2="{lo:.1f}" y2="{y + 16}"/>')
            parts.append(f'<line class="ci" x1="{hi:.1f}" y1="{y + 4}" x2="{hi:.1f}" y2="{y + 16}"/>')
    body = "\n".join(parts)
    return Markup(
        f'<svg class="plot intervals" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="Scores with 95% confidence intervals" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )
