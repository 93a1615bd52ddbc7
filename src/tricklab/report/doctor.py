"""The doctor's pictures: scale across depth, gradient norms over time, dead and saturated units.

`doctor_depth` is the chapter's picture (Glorot & Bengio 2010, figures 3-7): the
median activation std and gradient norm of every layer against its depth; a
healthy network keeps both roughly level, vanishing gradients fall towards the
input, exploding ones rise. `doctor_heatmap` shows each weight layer's
gradient norm (log10) over the training steps, where growth or a collapse shows
as a colour trend along a row. `doctor_units` shows, per layer, the fraction of
ReLU-like units dead in the latest window and the median fraction of saturated
sigmoid/tanh outputs, against the diagnosis thresholds. Every figure is drawn
only when the probes hold data for it: probes without samples or weight layers
give fewer figures, never an error.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from tricklab.doctor.diagnosis import DEAD_FRACTION, SATURATED_FRACTION, diagnose
from tricklab.report.figure import plt, save_png

__all__ = ["doctor_figures", "plot_doctor"]

ACTIVATION, GRADIENT, DEAD, SATURATED = "#1f77b4", "#d62728", "#6e40aa", "#e08214"
MAX_TICKS = 24  # layer labels on an axis before only every k-th is written
UPRIGHT_TICKS = 12  # up to this many labels stand upright on two lines; more are slanted


def _number(value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else math.nan


def _column(probes: dict[str, Any], index: int, key: str) -> np.ndarray:
    rows = [sample["layers"][index].get(key) for sample in probes.get("samples") or []]
    return np.array([_number(value) for value in rows], dtype=float)


def _median(values: np.ndarray, positive: bool = False) -> float:
    kept = values[np.isfinite(values) & ((values > 0) if positive else True)]
    return float(np.median(kept)) if kept.size else math.nan


def _width(count: int) -> float:
    """Figure width in inches for `count` layers along x: roomy, but within a page."""
    return min(13.0, max(7.0, 0.32 * count + 3))


def _tick_label(layer: dict[str, Any]) -> str:
    return f"{layer.get('name')}\n{layer.get('activation') or layer.get('type') or ''}"


def _layer_axis(axis: Any, positions: Any, layers: list[dict[str, Any]]) -> None:
    """Layer names (and activation or type) as x ticks, thinned and slanted when there are many.

    Args:
        axis: The matplotlib axes.
        positions: The x position of each layer in `layers`.
        layers: The layer records, aligned with `positions`.
    """
    step = max(1, math.ceil(len(layers) / MAX_TICKS))
    shown = list(range(len(layers)))[::step]
    labels = [_tick_label(layers[k]) for k in shown]
    if len(shown) <= UPRIGHT_TICKS:
        axis.set_xticks([positions[k] for k in shown], labels, fontsize=8)
    else:
        flat = [label.replace("\n", " ") for label in labels]
        axis.set_xticks([positions[k] for k in shown], flat, fontsize=8, rotation=45, ha="right",
                        rotation_mode="anchor")
    axis.set_xlabel("layer (input → output)")


def _title(probes: dict[str, Any]) -> str:
    diagnosis = diagnose(probes)
    kinds = ", ".join(dict.fromkeys(f.kind.replace("_", " ") for f in diagnosis.findings))
    return f"doctor: {diagnosis.verdict}" + (f" ({kinds})" if kinds else "")


def _steps(probes: dict[str, Any]) -> str:
    steps = [sample["step"] for sample in probes.get("samples") or []]
    return f"steps {steps[0]}–{steps[-1]}" if steps else "no steps"


def depth_figure(probes: dict[str, Any]) -> Figure | None:
    """Median activation std (top) and weight-gradient norm (bottom, log) against depth.

    Args:
        probes: The probe data (`Probe.to_dict()`).

    Returns:
        The figure, or `None` when there is no sample or no measured layer.
    """
    layers = list(probes.get("layers") or [])
    if not probes.get("samples") or not layers:
        return None
    x = list(range(len(layers)))
    std = np.array([_median(_column(probes, i, "act_std")) for i in x])
    weights = [i for i in x if layers[i].get("has_weight")]
    grad = np.array([_median(_column(probes, i, "grad_norm"), positive=True) for i in weights])
    if not np.isfinite(std).any() and not np.isfinite(grad).any():
        return None
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(_width(len(x)), 6.4),
                                         sharex=True, layout="constrained")
    shown = np.isfinite(std)
    nonlinear = np.array([bool(layer.get("activation")) for layer in layers])
    # Linear outputs (a Dense before its batch norm and activation) have their own scale:
    # drawn as a second, lighter line rather than zig-zagging with the activations'.
    series = [(nonlinear, "activation std", "o-", 1.0),
              (~nonlinear, "linear-output std", ".--", 0.6)]
    if not nonlinear.any() or nonlinear.all():
        series = [(np.ones(len(x), dtype=bool), "activation std", "o-", 1.0)]
    for mask, label, style, alpha in series:
        if (mask & shown).any():
            top.plot(np.array(x)[mask & shown], std[mask & shown], style, color=ACTIVATION,
                     alpha=alpha, label=label)
    finite_std = std[shown & (std > 0)]
    # A log axis only when the scale really changes: it would exaggerate the noise of a flat line.
    if finite_std.size and finite_std.max() / finite_std.min() > 20:
        top.set_yscale("log")
    else:
        top.set_ylim(bottom=0)
    top.set_ylabel("activation std")
    top.legend(loc="best", fontsize=9)
    kept = np.isfinite(grad)
    if kept.any():
        bottom.plot(np.array(weights)[kept], grad[kept], "s-", color=GRADIENT,
                    label="weight-gradient norm")
        bottom.set_yscale("log")
        # Plain numbers (0.3, 40, 1e+03) read faster than 4×10^0 on a short log axis.
        bottom.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        bottom.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False,
                                                      minor_thresholds=(1, 0.4)))
        bottom.legend(loc="best", fontsize=9)
    else:
        bottom.text(0.5, 0.5, "no gradient measured", ha="center", va="center",
                    transform=bottom.transAxes, color="#555555")
    bottom.set_ylabel("gradient norm (log)")
    for axis in (top, bottom):
        axis.grid(alpha=0.3, which="both")
    _layer_axis(bottom, x, layers)
    figure.suptitle(f"{_title(probes)}\nmedian over {_steps(probes)}", fontsize=11)
    return figure


def heatmap_figure(probes: dict[str, Any]) -> Figure | None:
    """log10 gradient norm of each weight layer (rows, input on top) over the probed steps.

    Args:
        probes: The probe data (`Probe.to_dict()`).

    Returns:
        The figure, or `None` without samples, weight layers or any positive gradient.
    """
    layers, samples = list(probes.get("layers") or []), list(probes.get("samples") or [])
    weights = [i for i, layer in enumerate(layers) if layer.get("has_weight")]
    if not samples or not weights:
        return None
    grid = np.array([_column(probes, i, "grad_norm") for i in weights])
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(grid > 0, np.log10(grid), np.nan)
    if not np.isfinite(logs).any():
        return None
    steps = np.array([sample["step"] for sample in samples], dtype=float)
    # Cell edges halfway between probed steps, so uneven (adaptive) intervals keep their width.
    middle = (steps[1:] + steps[:-1]) / 2
    half = (steps[-1] - steps[0]) / (2 * max(len(steps) - 1, 1)) or 0.5
    edges = np.concatenate([[steps[0] - half], middle, [steps[-1] + half]])
    figure, axis = plt.subplots(figsize=(8, max(3.0, 0.28 * len(weights) + 1.8)),
                                layout="constrained")
    colormap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")
    finite = logs[np.isfinite(logs)]
    mesh = axis.pcolormesh(edges, np.arange(len(weights) + 1), np.ma.masked_invalid(logs),
                           cmap=colormap, norm=Normalize(finite.min(), max(finite.max(),
                                                                          finite.min() + 1e-9)))
    figure.colorbar(mesh, ax=axis, label="log10 gradient norm")
    step = max(1, math.ceil(len(weights) / MAX_TICKS))
    rows = list(range(len(weights)))[::step]
    axis.set_yticks([r + 0.5 for r in rows],
                    [_tick_label(layers[weights[r]]).replace("\n", " ") for r in rows], fontsize=8)
    axis.invert_yaxis()  # input layer on top, as the network is usually drawn
    axis.set_xlabel("training step")
    axis.set_ylabel("weight layer")
    axis.set_title("gradient norm per layer over training (grey: none measured)", fontsize=11)
    return figure


def units_figure(probes: dict[str, Any]) -> Figure | None:
    """Per layer: dead fraction (latest window) and median saturated fraction, as bars.

    Args:
        probes: The probe data (`Probe.to_dict()`).

    Returns:
        The figure, or `None` when no layer has a dead or saturated fraction.
    """
    layers = list(probes.get("layers") or [])
    rows = []
    for i in range(len(layers)):
        dead = _column(probes, i, "dead_fraction")
        dead = dead[np.isfinite(dead)]
        saturated = _median(_column(probes, i, "act_saturated_fraction"))
        if dead.size or math.isfinite(saturated):
            rows.append((i, float(dead[-1]) if dead.size else math.nan, saturated))
    if not rows:
        return None
    figure, axis = plt.subplots(figsize=(_width(len(rows)), 4.2),
                                layout="constrained")
    x = np.arange(len(rows))
    dead = np.array([row[1] for row in rows])
    saturated = np.array([row[2] for row in rows])
    width = 0.4 if np.isfinite(dead).any() and np.isfinite(saturated).any() else 0.55
    if np.isfinite(dead).any():
        axis.bar(x - width / 2 * np.isfinite(saturated).any(), np.nan_to_num(dead), width,
                 color=DEAD, label="dead (latest window)")
        axis.axhline(DEAD_FRACTION, color=DEAD, linestyle="--", linewidth=1.2, zorder=3,
                     label=f"dead threshold {DEAD_FRACTION:.0%}")
    if np.isfinite(saturated).any():
        axis.bar(x + width / 2 * np.isfinite(dead).any(), np.nan_to_num(saturated), width,
                 color=SATURATED, label="saturated (median)")
        axis.axhline(SATURATED_FRACTION, color="#7f3b08", linestyle=":", linewidth=1.4, zorder=3,
                     label=f"saturation threshold {SATURATED_FRACTION:.0%}")
    axis.set_ylim(0, 1.05)
    axis.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axis.set_ylabel("fraction of units / outputs")
    _layer_axis(axis, x, [layers[row[0]] for row in rows])
    axis.grid(alpha=0.3, axis="y")
    axis.legend(loc="upper left", fontsize=8, ncols=2)
    axis.set_title(f"dead and saturated units, {_steps(probes)}", fontsize=11)
    return figure


def doctor_figures(probes: dict[str, Any]) -> dict[str, Figure]:
    """The doctor's figures that the probes have data for, by name, open (e.g. to embed).

    Args:
        probes: The probe data (`Probe.to_dict()` or `doctor.json`'s `probes`).

    Returns:
        Up to three figures keyed `doctor_depth`, `doctor_heatmap`, `doctor_units`;
        `figure.png_bytes` renders and closes one.
    """
    makers = {"doctor_depth": depth_figure, "doctor_heatmap": heatmap_figure,
              "doctor_units": units_figure}
    figures = {name: make(probes) for name, make in makers.items()}
    return {name: figure for name, figure in figures.items() if figure is not None}


def plot_doctor(probes: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write `doctor_depth.png`, `doctor_heatmap.png` and `doctor_units.png` where there is data.

    Args:
        probes: The probe data (`Probe.to_dict()` or `doctor.json`'s `probes`).
        folder: Where to write the PNGs (atomically); created if missing.

    Returns:
        The paths written, in the order above.
    """
    folder = Path(folder)
    return [save_png(figure, folder / f"{name}.png")
            for name, figure in doctor_figures(probes).items()]
