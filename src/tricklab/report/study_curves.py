"""A study's learning curves as inline SVG: training and validation, every seed, values on hover.

One card per variant, in rank order, holds the compared metric's panel and,
next to it, the loss. In every panel training is solid and validation dashed;
each seed's own run is a thin line (a link to its run folder) over the band
between the seeds' lowest and highest value, and the mean over seeds is the
thick line. The baseline's validation mean is repeated, dotted grey, in every
other variant's panel. A key's panels share their axes, so variants compare at
a glance, and epoch ticks are whole numbers.

The SVG is written here, not by matplotlib, so that the page can say what each
line is: hovering an epoch shows every value there, hovering a seed's line names
the seed, through SVG `<title>` elements. No script and nothing outside the page.
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tricklab.study.results import StudyResults, VariantResults
from tricklab.study.store import RunRecord

__all__ = ["CURVES_STYLE", "curve_stems", "learning_curves_html", "plotted_keys"]

WIDTH, HEIGHT = 224, 160
LEFT, RIGHT, TOP, BOTTOM = 36, 6, 17, 28
"""A panel's size and its margins, in the SVG's own units (it scales to its card)."""

SPLITS = (("train", "training", ""), ("val", "validation", "val_"))
"""(class, words, history-key prefix) of the two curves of a panel."""

CURVES_STYLE = """
.curve-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:14px}
.curve-card{margin:0;border:1px solid #d8dee4;border-radius:6px;padding:6px 8px;min-width:0}
.curve-card figcaption{font-weight:600;font-size:14px;overflow-wrap:anywhere}
.panels{display:grid;grid-template-columns:1fr 1fr;gap:6px}
svg.curves{width:100%;height:auto;display:block;font-size:10px;font-family:inherit}
svg.curves .axis{stroke:#8c959f;stroke-width:.8}svg.curves .grid line{stroke:#eaeef2}
svg.curves text{fill:#57606a}svg.curves .panel-title{fill:#1f2328;font-weight:600}
svg.curves .hover rect{fill:transparent}svg.curves .hover rect:hover{fill:rgba(0,0,0,.05)}
svg.curves .band{fill:var(--c);opacity:.13;pointer-events:none}
svg.curves path{fill:none;stroke:var(--c)}svg.curves .val{stroke-dasharray:5 3}
svg.curves .seed{stroke-width:.9;opacity:.55}svg.curves .seed:hover{stroke-width:2.4;opacity:1}
svg.curves .mean{stroke-width:2.2;pointer-events:none}
svg.curves .baseline-ref{stroke:#6e7781;stroke-width:1.3;stroke-dasharray:1.5 2.5;
 pointer-events:none}
svg.curves circle{fill:var(--c);stroke:none}
svg.curves circle.val{fill:#fff;stroke:var(--c);stroke-width:1.2;stroke-dasharray:none}
svg.curves circle.baseline-ref{fill:#6e7781;stroke:none}
.curve-legend{display:flex;flex-wrap:wrap;gap:4px 18px;font-size:13px;color:#57606a;
 margin:4px 0 10px}.curve-legend svg{vertical-align:middle;margin-right:4px}
"""
"""The page's CSS for the curves: the SVG carries classes, the variant's colour as `--c`."""


def curve_stems(results: StudyResults) -> list[str]:
    """The quantities with a panel: the compared metric's, then the loss next to it.

    A quantity has a panel when some finished run recorded its training or
    validation curve. When the compared metric is the loss, the first other
    metric the runs recorded stands next to it.
    """
    recorded = _recorded(results)
    stem = results.metric.split("_", 1)[1] if "_" in results.metric else results.metric
    stems = [name for name in dict.fromkeys([stem, "loss"])
             if name in recorded or f"val_{name}" in recorded]
    if len(stems) < 2:
        others = (key.removeprefix("val_") for key in recorded if key not in ("lr", "time_s"))
        stems += [name for name in dict.fromkeys(others) if name not in stems][: 2 - len(stems)]
    return stems


def plotted_keys(results: StudyResults) -> list[str]:
    """The history keys the curves draw: each panel's training and validation key recorded."""
    recorded = _recorded(results)
    return [f"{prefix}{stem}" for stem in curve_stems(results) for _, _, prefix in SPLITS
            if f"{prefix}{stem}" in recorded]


def _recorded(results: StudyResults) -> dict[str, None]:
    return dict.fromkeys(key for variant in results.variants.values()
                         for run in variant.succeeded_runs for key in run.history)


@dataclass(frozen=True)
class _Curve:
    """One split of one quantity of one variant: each seed's values and their summary per epoch.

    Args:
        runs: The succeeded runs that recorded the key, with their values (NaN: none).
        mean: Mean over those runs per epoch (NaN where no run has a value).
        low: Lowest run's value per epoch.
        high: Highest run's value per epoch.
    """

    runs: list[tuple[RunRecord, np.ndarray]]
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _curve(variant: VariantResults, key: str) -> _Curve | None:
    runs = [(run, np.array([np.nan if v is None else v for v in run.history[key]], float))
            for run in variant.succeeded_runs if run.history.get(key)]
    if not runs:
        return None
    table = np.full((len(runs), max(values.size for _, values in runs)), np.nan)
    for row, (_, values) in enumerate(runs):
        table[row, : values.size] = values
    table[~np.isfinite(table)] = np.nan
    # Runs stopped early are shorter: each epoch summarises the runs that reached it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an epoch no run reached stays NaN
        summary = np.nanmean(table, 0), np.nanmin(table, 0), np.nanmax(table, 0)
    return _Curve([(run, table[row]) for row, (run, _) in enumerate(runs)], *summary)


def _value(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4f}"


def _nice_step(raw: float) -> float:
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))


def _y_ticks(low: float, high: float) -> tuple[list[float], int]:
    """About five round ticks covering `[low, high]`, and the decimals their labels need."""
    if high - low < 1e-12 * max(1.0, abs(high)):
        pad = 0.5 * abs(high) if high else 0.5
        low, high = low - pad, high + pad
    step = _nice_step((high - low) / 5)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if round(step / 10 ** math.floor(
        math.log10(step) + 1e-9), 6) == 2.5 else 0)
    return [index * step for index in range(first, last + 1)], decimals


def _x_ticks(epochs: int) -> list[int]:
    """Whole epochs, at most nine ticks: every epoch, or the first and each multiple of a step."""
    if epochs <= 9:
        return list(range(1, epochs + 1))
    step = int(_nice_step(epochs / 8))
    return [1, *range(step, epochs + 1, step)]


@dataclass(frozen=True)
class _Frame:
    """A quantity's axes, shared by every variant's panel."""

    stem: str
    epochs: int
    y_ticks: list[float]
    decimals: int

    def x(self, epoch: float) -> float:
        low, high = (0.5, 1.5) if self.epochs == 1 else (1, self.epochs)
        return LEFT + (epoch - low) / (high - low) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        low, high = self.y_ticks[0], self.y_ticks[-1]
        return HEIGHT - BOTTOM - (value - low) / (high - low) * (HEIGHT - TOP - BOTTOM)


def _frame(stem: str, curves: Sequence[_Curve]) -> _Frame | None:
    values = np.concatenate([values for curve in curves for _, values in curve.runs] or [[]])
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    ticks, decimals = _y_ticks(float(values.min()), float(values.max()))
    epochs = max(values.size for curve in curves for _, values in curve.runs)
    return _Frame(stem, epochs, ticks, decimals)


def _segments(frame: _Frame, values: np.ndarray) -> list[list[tuple[float, float]]]:
    """The finite stretches of a curve as points; a NaN epoch breaks the line."""
    segments: list[list[tuple[float, float]]] = [[]]
    for epoch, value in enumerate(values, start=1):
        if math.isfinite(value):
            segments[-1].append((frame.x(epoch), frame.y(value)))
        elif segments[-1]:
            segments.append([])
    return [segment for segment in segments if segment]


def _line(frame: _Frame, values: np.ndarray, css: str, attributes: str = "",
          inner: str = "") -> str:
    """A curve as one `<path>`; a curve of lone epochs (one epoch trained) as dots instead."""
    segments = _segments(frame, values)
    if not segments:
        return ""
    if all(len(segment) == 1 for segment in segments):
        radius = 1.8 if "seed" in css else 2.8
        return "".join(f'<circle class="{css}"{attributes} cx="{x:.1f}" cy="{y:.1f}" '
                       f'r="{radius}">{inner}</circle>' for segment in segments for x, y in segment)
    data = " ".join("M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in segment)
                    for segment in segments)
    return f'<path class="{css}"{attributes} d="{data}">{inner}</path>'


def _band(frame: _Frame, curve: _Curve, css: str) -> str:
    polygons = []
    for low, high in zip(_segments(frame, curve.low), _segments(frame, curve.high), strict=True):
        points = [*low, *reversed(high)]
        polygons.append('<polygon class="band {}" points="{}"/>'.format(
            css, " ".join(f"{x:.1f},{y:.1f}" for x, y in points)))
    return "".join(polygons)


def _axes(frame: _Frame) -> str:
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    parts = ['<g class="grid">']
    parts += [f'<line x1="{LEFT}" x2="{right}" y1="{frame.y(t):.1f}" y2="{frame.y(t):.1f}"/>'
              for t in frame.y_ticks]
    parts.append("</g>")
    parts += [f'<text class="ytick" x="{LEFT - 4}" y="{frame.y(t) + 3.5:.1f}" text-anchor="end">'
              f"{t:.{frame.decimals}f}</text>" for t in frame.y_ticks]
    parts += [f'<g class="xtick"><line class="axis" x1="{frame.x(e):.1f}" x2="{frame.x(e):.1f}" '
              f'y1="{bottom}" y2="{bottom + 3}"/><text x="{frame.x(e):.1f}" y="{bottom + 13}" '
              f'text-anchor="middle">{e}</text></g>' for e in _x_ticks(frame.epochs)]
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}"/>'
                 f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}"/>'
                 f'<text x="{(LEFT + right) / 2:.1f}" y="{HEIGHT - 4}" '
                 'text-anchor="middle">epoch</text>')
    return "".join(parts)


def _hover(frame: _Frame, name: str, curves: dict[str, _Curve],
           reference: tuple[str, _Curve] | None) -> str:
    """Per epoch, a transparent column whose `<title>` lists every value at that epoch."""
    rects = []
    width = frame.x(2) - frame.x(1) if frame.epochs > 1 else WIDTH - LEFT - RIGHT
    for index in range(frame.epochs):
        lines = [f"{name}, epoch {index + 1}"]
        for css, words, _ in SPLITS:
            curve = curves.get(css)
            if curve is None or index >= curve.mean.size or not math.isfinite(curve.mean[index]):
                continue
            seeds = [values[index] for _, values in curve.runs
                     if index < values.size and math.isfinite(values[index])]
            spread = (f" (seeds {_value(min(seeds))} to {_value(max(seeds))})"
                      if len(seeds) > 1 else "")
            mean = "mean " if spread else ""
            lines.append(f"{words} {frame.stem}: {mean}{_value(curve.mean[index])}{spread}")
        if reference is not None and index < reference[1].mean.size and math.isfinite(
                reference[1].mean[index]):
            baseline = "baseline" if reference[0] == "baseline" else f"baseline ({reference[0]})"
            lines.append(f"{baseline}, dotted: {_value(reference[1].mean[index])}")
        if len(lines) == 1:
            continue
        left = max(LEFT, frame.x(index + 1) - width / 2)
        right = min(WIDTH - RIGHT, frame.x(index + 1) + width / 2)
        rects.append(f'<rect x="{left:.1f}" y="{TOP}" width="{right - left:.1f}" '
                     f'height="{HEIGHT - TOP - BOTTOM}"><title>'
                     f'{html.escape(chr(10).join(lines))}</title></rect>')
    return f'<g class="hover">{"".join(rects)}</g>'


def _panel(
    frame: _Frame, variant: VariantResults, curves: dict[str, _Curve],
    reference: tuple[str, _Curve] | None, color: str, href: Callable[[RunRecord], str | None],
) -> str:
    e = html.escape
    parts = [f'<svg class="curves" viewBox="0 0 {WIDTH} {HEIGHT}" data-variant="{e(variant.name)}"'
             f' data-key="{e(frame.stem)}" style="--c:{color}" role="img" '
             f'aria-label="{e(variant.name)}: {e(frame.stem)} per epoch">',
             f'<text class="panel-title" x="{LEFT}" y="11">{e(frame.stem)}</text>', _axes(frame),
             _hover(frame, variant.name, curves, reference)]
    parts += [_band(frame, curve, css) for css, curve in curves.items()]
    if reference is not None:
        parts.append(_line(frame, reference[1].mean, "baseline-ref"))
    for css, words, _ in SPLITS:
        curve = curves.get(css)
        for run, values in curve.runs if curve else ():
            finite = np.flatnonzero(np.isfinite(values))
            last = (f", last {_value(values[finite[-1]])} at epoch {finite[-1] + 1}"
                    if finite.size else "")
            link = href(run)
            title = (f"<title>{e(variant.name)}, seed {run.seed}: {words} {e(frame.stem)}{last}"
                     + (f" (click: its run folder, {e(link)})" if link else "") + "</title>")
            line = _line(frame, values, f"seed {css}", f' data-seed="{run.seed}"', title)
            parts.append(f'<a href="{e(link)}">{line}</a>' if link and line else line)
    parts += [_line(frame, curve.mean, f"mean {css}") for css, curve in curves.items()]
    parts.append("</svg>")
    return "".join(parts)


def _legend(baseline: str) -> str:
    def sample(css: str) -> str:
        return (f'<svg class="curves sample" width="34" height="10" viewBox="0 0 34 10" '
                f'style="--c:#57606a;width:34px;display:inline"><path class="{css}" '
                f'd="M1,5 L33,5"/></svg>')

    e = html.escape
    items = [(sample("mean train"), "training (mean over seeds)"),
             (sample("mean val"), "validation"),
             (sample("seed train"), "each seed's run: hover to name it, click to open its folder"),
             ('<svg width="24" height="10" style="display:inline"><rect width="24" height="10" '
              'fill="#57606a" opacity=".2"/></svg>', "lowest to highest seed"),
             (sample("baseline-ref"), f"the baseline's validation mean ({e(baseline)})")]
    return ('<div class="curve-legend">' + "".join(f"<span>{mark}{text}</span>"
                                                  for mark, text in items) + "</div>")


def learning_curves_html(
    results: StudyResults, colors: dict[str, str], href: Callable[[RunRecord], str | None],
    caption: Callable[[str], str],
) -> str:
    """The learning curves of every variant, a legend first: an HTML fragment.

    Args:
        results: The study's results.
        colors: Each variant's colour (a CSS colour), as in the other figures.
        href: A run's folder as a link relative to the page (`None`: no link).
        caption: The HTML that heads a variant's card (its name, its verdict).

    Returns:
        `""` when no finished run recorded a curve.
    """
    stems = curve_stems(results)
    curves = {stem: {name: {css: curve for css, _, prefix in SPLITS
                            if (curve := _curve(variant, f"{prefix}{stem}")) is not None}
                     for name, variant in results.variants.items()} for stem in stems}
    frames = {stem: _frame(stem, [c for by_split in curves[stem].values()
                                  for c in by_split.values()]) for stem in stems}
    frames = {stem: frame for stem, frame in frames.items() if frame is not None}
    if not frames:
        return ""
    cards = []
    for analysed in results.ranked:
        name, e = analysed.name, html.escape
        panels = []
        for stem, frame in frames.items():
            own = curves[stem][name]
            base = curves[stem].get(results.baseline, {})
            shown = base.get("val") or base.get("train")
            reference = (results.baseline, shown) if shown and name != results.baseline else None
            if own:
                panels.append(_panel(frame, results.variants[name], own, reference,
                                     colors[name], href))
        body = ('<div class="panels">' + "".join(panels) + "</div>" if panels
                else '<p class="note">No finished run: no curve to draw.</p>')
        cards.append(f'<figure class="curve-card" data-variant="{e(name)}">'
                     f"<figcaption>{caption(name)}</figcaption>{body}</figure>")
    return _legend(results.baseline) + f'<div class="curve-grid">{"".join(cards)}</div>'
