"""A study's pictures: effect sizes against the baseline, wall time, LR search.

Every function takes a `StudyResults` (or part of it) and returns an open
matplotlib `Figure`; `figure.png_bytes` or `figure.save_png` renders and closes
it. Each variant keeps one colour in every figure (the learning curves of
`study_curves` too), and the layouts stay readable up to about twenty
variants: horizontal bars and rows instead of a crowded x axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tricklab.report.figure import plt
from tricklab.study.results import LearningRateSearch, StudyResults

__all__ = [
    "forest_plot",
    "learning_rate_search_plot",
    "variant_colors",
    "wall_time_plot",
]

BETTER, WORSE, UNDETECTED = "#1a7f37", "#c62828", "#8a8a8a"


def variant_colors(names: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """One categorical colour per variant: tab10 up to ten variants, tab20 up to twenty."""
    colormap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: colormap(i % colormap.N) for i, name in enumerate(names)}


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _message(text: str, size: tuple[float, float] = (7, 1.6)) -> Figure:
    figure, axis = plt.subplots(figsize=size, layout="constrained")
    axis.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="#555555")
    axis.set_axis_off()
    return figure


def forest_plot(results: StudyResults) -> Figure:
    """Each variant's difference from the baseline with its confidence interval, best on top.

    Detectable effects are filled (green better, red worse); intervals that
    include zero are hollow and grey. Variants without a comparison (diverged,
    failed, pending) keep their row, labelled with the reason.
    """
    rows = [v for v in results.ranked if v.name != results.baseline]
    if not rows:
        return _message("only the baseline: nothing to compare")
    figure, axis = plt.subplots(figsize=(8, 1.3 + 0.42 * len(rows)), layout="constrained")
    for y, variant in enumerate(reversed(rows)):
        comparison, verdict = variant.comparison, results.verdict(variant.name)
        if comparison is None or not math.isfinite(comparison.difference):
            axis.text(0, y, f"  {verdict}", va="center", ha="left", color=WORSE, style="italic")
            continue
        color = {"better": BETTER, "worse": WORSE}.get(verdict, UNDETECTED)
        if math.isfinite(comparison.ci_low):
            low = comparison.difference - comparison.ci_low
            high = comparison.ci_high - comparison.difference
            axis.errorbar(comparison.difference, y, xerr=[[low], [high]], color=color,
                          capsize=4, linewidth=2, zorder=2)
        axis.plot(comparison.difference, y, "o", markersize=9, zorder=3,
                  markerfacecolor=color if comparison.detectable else "white",
                  markeredgecolor=color, markeredgewidth=2)
    axis.axvline(0.0, color="black", linewidth=1, zorder=1)
    axis.set_yticks(range(len(rows)), [_short(v.name) for v in reversed(rows)])
    axis.set_ylim(-0.7, len(rows) - 0.3)
    direction = "higher" if results.higher_is_better else "lower"
    confidence = round(100 * results.analysis.confidence)
    axis.set_xlabel(f"{results.metric}: variant − {results.baseline} "
                    f"(mean, {confidence}% bootstrap CI; {direction} is better)")
    axis.grid(axis="x", alpha=0.3)
    legend = [
        Line2D([], [], marker="o", color=BETTER, linestyle="", markersize=8, label="better"),
        Line2D([], [], marker="o", color=WORSE, linestyle="", markersize=8, label="worse"),
        Line2D([], [], marker="o", color=UNDETECTED, markerfacecolor="white", linestyle="",
               markersize=8, markeredgewidth=2, label="no detectable difference"),
    ]
    figure.legend(handles=legend, loc="outside lower center", ncols=3, frameon=False, fontsize=9)
    axis.set_title(f"Difference from the baseline ({results.baseline})")
    return figure


def wall_time_plot(results: StudyResults) -> Figure:
    """Mean training wall time per variant with ±1 standard deviation, in rank order."""
    names = [v.name for v in results.ranked]
    colors = variant_colors(list(results.variants))
    means = [results.variants[n].wall_time_mean for n in names]
    if all(m is None for m in means):
        return _message("no finished run recorded its wall time")
    stds = [results.variants[n].wall_time_std or 0.0 for n in names]
    figure, axis = plt.subplots(figsize=(8, 1.2 + 0.38 * len(names)), layout="constrained")
    y = np.arange(len(names))[::-1]
    axis.barh(y, [m or 0.0 for m in means], xerr=stds, color=[colors[n] for n in names],
              capsize=3, error_kw={"linewidth": 1})
    for row, mean, std in zip(y, means, stds, strict=True):
        # Beyond the error bar's cap, so the number never sits on the whisker.
        label = "no time" if mean is None else f"{mean:.1f} s"
        axis.text((mean or 0.0) + std, row, f"  {label}", va="center", ha="left", fontsize=8)
    axis.set_yticks(y, [_short(n) for n in names])
    axis.set_xlabel("training wall time per run (s; mean ± std over seeds)")
    axis.set_xlim(0, max(m + s for m, s in zip([m or 0 for m in means], stds, strict=True)) * 1.2)
    axis.grid(axis="x", alpha=0.3)
    axis.set_title("Wall time")
    return figure


def learning_rate_search_plot(searches: Mapping[str, LearningRateSearch],
                              colors: Mapping[str, tuple[float, ...]] | None = None) -> Figure:
    """Mean search score against the learning rate (log axis), seeds as dots, choice as a star."""
    if not searches:
        return _message("no learning-rate search")
    colors = colors or variant_colors(list(searches))
    figure, axis = plt.subplots(figsize=(8, 4.2), layout="constrained")
    for name, search in searches.items():
        color = colors.get(name, "tab:blue")
        rates = [r for r in search.means if search.means[r] is not None]
        axis.plot(rates, [search.means[r] for r in rates], "-o", color=color, label=_short(name))
        for rate, scores in search.scores.items():
            axis.plot([rate] * len(scores), scores, ".", color=color, alpha=0.45)
        if search.chosen is not None and search.means.get(search.chosen) is not None:
            axis.plot(search.chosen, search.means[search.chosen], "*", color=color,
                      markersize=18, markeredgecolor="black", zorder=4)
    axis.set_xscale("log")
    metric = next(iter(searches.values())).metric
    axis.set_xlabel("learning rate")
    axis.set_ylabel(f"{metric} (mean over search seeds)")
    axis.grid(alpha=0.3, which="both")
    axis.plot([], [], "*", color="white", markeredgecolor="black", markersize=14, label="chosen")
    axis.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
    axis.set_title("Learning-rate search")
    return figure
