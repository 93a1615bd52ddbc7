"""The doctor's verdict: the probes of `Probe.to_dict()` turned into findings by stated rules.

Every rule reads medians over probed steps (robust to one noisy batch) and only
the samples before the run first turned non-finite; "error" starts at a stated
second threshold. Layers already explained by a more specific finding are left
out of the later rules, so one cause is told once: dead units explain missing
gradients, and dead, saturated, vanishing or exploding layers explain odd update
sizes, which then say nothing about the learning rate. `diagnose` needs only the
standard library. The kinds, their remedies and the terminal rendering are in
`tricklab.doctor.findings`.

- **divergence** (error): a non-finite loss, a `nonfinite`/`nonfinite_loss`
  event or a layer flagged non-finite; names the first layer and step.
- **exploding_gradients** (Pascanu et al. 2013): a non-last weight layer's
  gradient norm > `EXPLODING_RATIO` = 1e2 times the last weight layer's (error
  1e4); or a weight layer's gradient norm growing > `GRADIENT_GROWTH` = 10x from
  the first to the last quarter of the steps (error 100x); or hidden activation
  std growing > `DEPTH_FACTOR` = 10x from the first to the last hidden layer
  (error 100x): He et al. (2015) show signal and backpropagated gradient grow by
  the same factor per layer when weights are too large, while weight gradients,
  their product, stay level across depth; or a gradient turning NaN/Inf while
  the layer's output and the loss are finite (error).
- **vanishing_gradients** (Glorot & Bengio 2010): a non-last weight layer's
  gradient norm < `VANISHING_RATIO` = 1e-2 of the last weight layer's (shrunk
  100x; error 1e-4); or its update ratio < `VANISHING_RATIO` of the last weight
  layer's (it learns 100x slower: how the chapter's deep N(0, 1) sigmoid network
  shows it, whose gradient norms drop only 10x); or hidden activation std
  shrinking > `DEPTH_FACTOR` across depth.
- **dead_units**: a ReLU-like layer (not the leaky family, whose negative side
  keeps a gradient) with dead fraction >= `DEAD_FRACTION` = 0.5 in its latest
  window (error 0.9). Weight layers at or below an error-level dead layer get no
  gradient through it and are left out of the gradient rules.
- **saturation** (Glorot & Bengio 2010): a hidden sigmoid/tanh layer with median
  saturated fraction >= `SATURATED_FRACTION` = 0.3 (error 0.9). The output layer
  is left out: a confident sigmoid output is meant to saturate.
- **learning_rate_too_high / too_low** (Karpathy, CS231n: update ratio
  ‖Δw‖/‖w‖ ~ 1e-3 is healthy): the median over weight layers of each one's
  median update ratio > `UPDATE_RATIO_HIGH` = 1e-2 (error 1e-1) or <
  `UPDATE_RATIO_LOW` = 1e-5. Steps without an update (ratio 0: frozen, or no
  gradient) are left out, here and in the update-speed rule.
- **activation_shift** (Ioffe & Szegedy 2015), warning: a hidden layer's median
  activation std changes > `SHIFT_FACTOR` = 10x between the first and the last
  quarter of the steps, or its mean moves by > `SHIFT_MEAN` = 1 of the larger
  std. Trend rules need `MIN_TREND_SAMPLES` = 4 samples.

Verdict: "unhealthy" with any finding but `activation_shift`; a drift alone is a
warning on a healthy verdict. Calibration, 300-step runs on Fashion-MNIST: deep
He+ELU, LeCun+SELU and batch-norm networks under SGD, Adam and Nadam stay >= 2x
inside every threshold (layer update ratios 6e-4 to 5e-3, gradient ratios to the
last layer 0.45 to 4.2, update speeds >= 0.2, depth factors <= 4.1, drift <=
1.3x), so they get no finding; the chapter's deep N(0, 1) sigmoid network gives
update speeds of 1/150 to 1/680 and 49-74% saturation.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

from tricklab.doctor.findings import (
    KINDS,
    REMEDIES,
    Diagnosis,
    Finding,
    format_diagnosis,
)

__all__ = ["KINDS", "REMEDIES", "Diagnosis", "Finding", "diagnose", "format_diagnosis"]

VANISHING_RATIO, VANISHING_ERROR = 1e-2, 1e-4
EXPLODING_RATIO, EXPLODING_ERROR = 1e2, 1e4
GRADIENT_GROWTH, GRADIENT_GROWTH_ERROR = 10.0, 100.0
DEPTH_FACTOR, DEPTH_ERROR = 10.0, 100.0
DEAD_FRACTION, DEAD_ERROR_FRACTION = 0.5, 0.9
SATURATED_FRACTION, SATURATED_ERROR_FRACTION = 0.3, 0.9
UPDATE_RATIO_HIGH, UPDATE_RATIO_HIGH_ERROR, UPDATE_RATIO_LOW = 1e-2, 1e-1, 1e-5
SHIFT_FACTOR, SHIFT_MEAN = 10.0, 1.0
EDGE = 0.25  # first and last quarter of the probed steps
MAX_LINES = 4  # per-layer evidence lines per rule; more are summarised in one line
MIN_TREND_SAMPLES = 4
LEAKY = frozenset({"leaky_relu", "prelu", "rrelu"})
SQUASHING = frozenset({"sigmoid", "tanh"})

def _g(value: float) -> str:
    return f"{value:.2g}"


def _short(value: float) -> str:
    """Two significant digits, whole numbers with thousands separators: 4.5, 340, 41,000."""
    return f"{value:.2g}" if value < 10 else f"{float(f'{value:.2g}'):,.0f}"


def _times(ratio: float) -> str:
    """A ratio as `340×` or, below one, as a fraction `1/41,000`."""
    if ratio >= 1:
        return f"{_short(ratio)}×"
    return "0" if ratio <= 0 else f"1/{_short(1 / ratio)}"


def _median(values: Iterable[Any]) -> float | None:
    finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return statistics.median(finite) if finite else None


class _Probes:
    """Read access to a probes dict: healthy samples, layer labels, medians, quarters."""

    def __init__(self, probes: dict[str, Any]) -> None:
        self.layers: list[dict[str, Any]] = list(probes.get("layers") or [])
        self.all: list[dict[str, Any]] = list(probes.get("samples") or [])
        self.events: list[dict[str, Any]] = list(probes.get("events") or [])
        self.saturation = float((probes.get("thresholds") or {}).get("saturation", 0.03))
        self.weights = [i for i, layer in enumerate(self.layers) if layer.get("has_weight")]
        self.last = self.weights[-1] if self.weights else len(self.layers)
        bad = [s["step"] for s in self.all if _bad(s)] + [
            e["step"] for e in self.events if e.get("kind") in ("nonfinite", "nonfinite_loss")]
        self.bad_step: int | None = min(bad, default=None)
        self.samples = [s for s in self.all if self.bad_step is None or s["step"] < self.bad_step]

    def name(self, i: int) -> str:
        return str(self.layers[i].get("name", i))

    def label(self, i: int) -> str:
        layer = self.layers[i]
        kind, activation = layer.get("type") or "?", layer.get("activation")
        return f"layer {self.name(i)} ({kind}{f', {activation}' if activation else ''})"

    def values(self, i: int, key: str, samples: list[dict[str, Any]] | None = None) -> list[Any]:
        return [s["layers"][i].get(key) for s in (self.samples if samples is None else samples)]

    def median(self, i: int, key: str, samples: list[dict[str, Any]] | None = None) -> float | None:
        return _median(self.values(i, key, samples))

    def span(self, samples: list[dict[str, Any]] | None = None) -> str:
        steps = [s["step"] for s in (self.samples if samples is None else samples)] or [0]
        return f"step {steps[0]}" if steps[0] == steps[-1] else f"steps {steps[0]}–{steps[-1]}"

    def quarters(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        """Samples in the first and last quarter of the probed steps (by step, not count)."""
        if len(self.samples) < MIN_TREND_SAMPLES:
            return None
        first, last = self.samples[0]["step"], self.samples[-1]["step"]
        cut = EDGE * (last - first)
        return ([s for s in self.samples if s["step"] <= first + cut],
                [s for s in self.samples if s["step"] >= last - cut])

    def feeding(self, i: int) -> int | None:
        """The weight layer whose output layer `i` is (itself, or the nearest one before)."""
        return next((w for w in reversed(self.weights) if w <= i), None)

    def hidden_activations(self, skip: set[int]) -> list[int]:
        """Layers below the output with a non-linearity and measured output, in depth order."""
        return [i for i, layer in enumerate(self.layers)
                if i < self.last and layer.get("activation") and i not in skip
                and self.median(i, "act_std") is not None]


def _bad(sample: dict[str, Any]) -> bool:
    loss = sample.get("loss")
    bad_loss = isinstance(loss, float) and not math.isfinite(loss)
    return bad_loss or any(layer.get("nonfinite") for layer in sample.get("layers", []))


class _Draft:
    """A finding being assembled: per-rule evidence lines, capped so deep networks stay short."""

    def __init__(self, kind: str) -> None:
        self.kind, self.error = kind, False
        self.layers: list[str] = []
        self.lines: dict[str, list[tuple[str | None, str]]] = {}
        self.data: dict[str, Any] = {}

    def add(self, rule: str, layer: str | None, line: str, value: Any, error: bool) -> None:
        if layer is not None and layer not in self.layers:
            self.layers.append(layer)
        self.lines.setdefault(rule, []).append((layer, line))
        self.error |= error
        if layer is None:
            self.data[rule] = value
        else:
            self.data.setdefault(rule, {})[layer] = value

    def finding(self) -> Finding | None:
        if not self.lines:
            return None
        evidence = []
        for lines in self.lines.values():
            evidence += [line for _, line in lines[:MAX_LINES]]
            rest = [str(layer) for layer, _ in lines[MAX_LINES:]]
            if rest:
                shown = ", ".join(rest[:3]) + (", …" if len(rest) > 3 else "")
                evidence.append(f"… and {len(rest)} more layer(s) alike: {shown}")
        return Finding(self.kind, "error" if self.error else "warning", self.layers, evidence,
                       list(REMEDIES[self.kind]), self.data)


def _divergence(p: _Probes) -> Finding | None:
    if p.bad_step is None:
        return None
    draft, step = _Draft("divergence"), p.bad_step
    events = sorted((e for e in p.events if e.get("kind") == "nonfinite"), key=lambda e: e["step"])
    rows = [(s["step"], i) for s in p.all for i, row in enumerate(s["layers"])
            if row.get("nonfinite")]
    if events:
        layer = events[0].get("layer")
        line = f"step {events[0]['step']}: {events[0].get('detail') or f'NaN/Inf in layer {layer}'}"
    elif rows:
        layer = p.name(rows[0][1])
        line = f"step {rows[0][0]}: NaN/Inf first in {p.label(rows[0][1])}"
    else:
        layer, line = None, f"step {step}: the loss is NaN/Inf"
    draft.add("first_nonfinite_step", None, line, step, True)
    if layer is not None:
        draft.layers.append(str(layer))
        draft.data["first_nonfinite_layer"] = str(layer)
    finite = [s for s in p.samples if isinstance(s.get("loss"), int | float)]
    if finite:
        loss, at = finite[-1]["loss"], finite[-1]["step"]
        draft.add("last_finite_loss", None, f"last finite loss {_g(loss)} at step {at}", loss, True)
    spikes = [e["step"] for e in p.events if e.get("kind") == "loss_spike" and e["step"] <= step]
    if spikes:
        line = f"{len(spikes)} loss spike(s) before it, the first at step {spikes[0]}"
        draft.add("loss_spike_steps", None, line, spikes, True)
    return draft.finding()


def _dead_units(p: _Probes) -> tuple[Finding | None, dict[int, float]]:
    draft, dead = _Draft("dead_units"), {}
    for i, layer in enumerate(p.layers):
        windows = [(s["step"], s["layers"][i].get("dead_fraction")) for s in p.samples]
        windows = [(step, v) for step, v in windows if isinstance(v, int | float)]
        if layer.get("activation") in LEAKY or not windows or windows[-1][1] < DEAD_FRACTION:
            continue
        step, dead[i] = windows[-1]
        units = f" of {layer['units']} units" if layer.get("units") else " of the units"
        draft.add("dead_fraction", p.name(i), f"{p.label(i)}: {dead[i]:.0%}{units} never active "
                  f"over the last window (probed steps up to step {step})", dead[i],
                  dead[i] >= DEAD_ERROR_FRACTION)
    return draft.finding(), dead


def _saturation(p: _Probes) -> tuple[Finding | None, set[int]]:
    draft, saturated = _Draft("saturation"), set()
    low = p.saturation
    for i in range(min(p.last, len(p.layers))):
        activation, value = p.layers[i].get("activation"), p.median(i, "act_saturated_fraction")
        if activation not in SQUASHING or value is None or value < SATURATED_FRACTION:
            continue
        saturated.add(i)
        bound = (f"y < {low:g} or y > {1 - low:g}" if activation == "sigmoid"
                 else f"|y| > {1 - 2 * low:g}")
        line = f"{p.label(i)}: median {value:.0%} of outputs saturated ({bound}), {p.span()}"
        weight = p.feeding(i)
        ratio = p.median(i if weight is None else weight, "grad_ratio_to_last")
        if ratio is not None and ratio < 0.5:
            line += f"; its gradient norm is {_times(ratio)} of the last layer's"
        draft.add("saturated_fraction", p.name(i), line, value, value >= SATURATED_ERROR_FRACTION)
    return draft.finding(), saturated


def _depth(p: _Probes, skip: set[int]) -> tuple[float, list[int]] | None:
    """Median activation std of the last hidden activation over the first one's, and the chain."""
    chain = p.hidden_activations(skip)
    if len(chain) < 2:
        return None
    first, last = p.median(chain[0], "act_std"), p.median(chain[-1], "act_std")
    return None if not first or last is None else (last / first, chain)


def _gradients(p: _Probes, skip: set[int]) -> tuple[_Draft, _Draft]:
    vanishing, exploding = _Draft("vanishing_gradients"), _Draft("exploding_gradients")
    last_update = _median(v for v in p.values(p.last, "update_ratio") if v) if p.weights else None
    for i in (w for w in p.weights[:-1] if w not in skip):
        ratio, norm, name = p.median(i, "grad_ratio_to_last"), p.median(i, "grad_norm"), p.name(i)
        head = f"{p.label(i)}: median gradient norm {_g(norm or 0)}"
        if ratio is not None and ratio < VANISHING_RATIO:
            vanishing.add("gradient_ratio", name, f"{head}, {_times(ratio)} of the last layer's, "
                          f"{p.span()}", ratio, ratio < VANISHING_ERROR)
        elif ratio is not None and ratio > EXPLODING_RATIO:
            exploding.add("gradient_ratio", name, f"{head}, {_times(ratio)} the last layer's, "
                          f"{p.span()}", ratio, ratio > EXPLODING_ERROR)
        update = _median(v for v in p.values(i, "update_ratio") if v)
        if name not in vanishing.layers and update and last_update and (
                update < VANISHING_RATIO * last_update):
            speed = update / last_update
            vanishing.add("update_speed", name, f"{p.label(i)}: median update ratio {_g(update)}, "
                          f"{_times(speed)} of the last layer's {_g(last_update)}: it learns "
                          f"{_times(1 / speed)} slower, {p.span()}", speed, False)
    quarters = p.quarters()
    for i in (w for w in p.weights if quarters and w not in skip):
        early, late = p.median(i, "grad_norm", quarters[0]), p.median(i, "grad_norm", quarters[1])
        if early and late and late / early > GRADIENT_GROWTH:
            exploding.add("growth", p.name(i), f"{p.label(i)}: median gradient norm grew "
                          f"{_times(late / early)} from {_g(early)} ({p.span(quarters[0])}) to "
                          f"{_g(late)} ({p.span(quarters[1])})", late / early,
                          late / early > GRADIENT_GROWTH_ERROR)
    depth = _depth(p, skip)
    if depth is not None and not 1 / DEPTH_FACTOR <= depth[0] <= DEPTH_FACTOR:
        (factor, chain), grows = depth, depth[0] > 1
        a, b = chain[0], chain[-1]
        line = (f"activation std {'grows' if grows else 'shrinks'} {_times(factor)} across depth, "
                f"from {_g(p.median(a, 'act_std') or 0)} in {p.label(a)} to "
                f"{_g(p.median(b, 'act_std') or 0)} in {p.label(b)} "
                f"(×{factor ** (1 / (len(chain) - 1)):.3g} per layer), {p.span()}")
        draft = exploding if grows else vanishing
        draft.add("activation_depth_factor", None, line, factor,
                  not 1 / DEPTH_ERROR <= factor <= DEPTH_ERROR)
        draft.layers += [p.name(a), p.name(b)]
    first = next((s for s in p.all if _bad(s)), None)
    if first is not None and isinstance(first.get("loss"), int | float) and (
            math.isfinite(first["loss"])):
        # The gradient blew up before the forward pass did: the textbook exploding gradient.
        for i in p.weights:
            row = first["layers"][i]
            if row.get("nonfinite") and row.get("grad_norm") is None and (
                    row.get("act_std") is not None):
                exploding.add("nonfinite_gradient_step", p.name(i), f"{p.label(i)}: gradient "
                              f"NaN/Inf at step {first['step']} while its output and the loss "
                              "were finite", first["step"], True)
                break
    return vanishing, exploding


def _learning_rate(p: _Probes, skip: set[int]) -> Finding | None:
    medians = {i: _median(v for v in p.values(i, "update_ratio") if v)
               for i in p.weights if i not in skip}
    per_layer = {i: v for i, v in medians.items() if v is not None}
    if not per_layer:
        return None
    overall = statistics.median(per_layer.values())
    if UPDATE_RATIO_LOW <= overall <= UPDATE_RATIO_HIGH:
        return None
    high = overall > UPDATE_RATIO_HIGH
    draft = _Draft("learning_rate_too_high" if high else "learning_rate_too_low")
    draft.add("median_update_ratio", None, f"median update ratio ‖Δw‖/‖w‖ over "
              f"{len(per_layer)} weight layer(s) {_g(overall)}, {_times(overall / 1e-3)} "
              f"{'the' if high else 'of the'} healthy ~1e-3, {p.span()}", overall,
              high and overall > UPDATE_RATIO_HIGH_ERROR)
    ordered = sorted(per_layer, key=per_layer.__getitem__)
    if len(per_layer) > MAX_LINES:
        line = (f"per layer from {_g(per_layer[ordered[0]])} (layer {p.name(ordered[0])}) "
                f"to {_g(per_layer[ordered[-1]])} (layer {p.name(ordered[-1])})")
    else:
        line = "per layer: " + ", ".join(f"{p.name(i)}: {_g(v)}" for i, v in per_layer.items())
    draft.add("update_ratio_by_layer", None, line,
              {p.name(i): v for i, v in per_layer.items()}, False)
    draft.layers = [p.name(i) for i, v in per_layer.items()
                    if (v > UPDATE_RATIO_HIGH if high else v < UPDATE_RATIO_LOW)]
    spikes = [e["step"] for e in p.events if e.get("kind") == "loss_spike"]
    if high and spikes:
        draft.add("loss_spike_steps", None, f"{len(spikes)} loss spike(s), the first at step "
                  f"{spikes[0]}", spikes, False)
    return draft.finding()


def _activation_shift(p: _Probes, skip: set[int]) -> Finding | None:
    quarters, draft = p.quarters(), _Draft("activation_shift")
    for i in p.hidden_activations(skip) if quarters else []:
        early, late = quarters
        std0, std1 = p.median(i, "act_std", early), p.median(i, "act_std", late)
        mean0, mean1 = p.median(i, "act_mean", early), p.median(i, "act_mean", late)
        if not std0 or not std1 or mean0 is None or mean1 is None:
            continue
        factor, shift = std1 / std0, abs(mean1 - mean0) / max(std0, std1)
        if 1 / SHIFT_FACTOR <= factor <= SHIFT_FACTOR and shift <= SHIFT_MEAN:
            continue
        draft.add("drift", p.name(i), f"{p.label(i)}: activation std {_g(std0)} → {_g(std1)} "
                  f"({_times(factor)}), mean {_g(mean0)} → {_g(mean1)} ({shift:.2g} std), "
                  f"{p.span(early)} against {p.span(late)}",
                  {"std_factor": factor, "mean_shift": shift}, False)
    return draft.finding()


def diagnose(probes: dict[str, Any]) -> Diagnosis:
    """Turn a probes dict (`Probe.to_dict()`, or `doctor.json`'s `probes`) into a diagnosis.

    The rules and their thresholds are in the module docstring; a network inside
    every threshold gets `verdict="healthy"` and no finding.

    Args:
        probes: The probe data: `layers`, `samples`, `events`, `thresholds`.

    Returns:
        The verdict and the findings, in `KINDS` order.
    """
    p = _Probes(probes)
    dead, dead_layers = _dead_units(p)
    saturation, saturated = _saturation(p)
    # A weight layer feeding dead units, or any layer below an almost wholly dead
    # one, gets no gradient through it: the dead units are the cause to report.
    blocked = {w for w in map(p.feeding, dead_layers) if w is not None} | {
        w for i, value in dead_layers.items() for w in p.weights
        if w <= i and value >= DEAD_ERROR_FRACTION}
    vanishing, exploding = _gradients(p, blocked | set(dead_layers))
    gradients = [vanishing.finding(), exploding.finding()]
    flagged = {i for i in p.weights if p.name(i) in vanishing.layers + exploding.layers}
    # Small steps of starved or saturated layers are not the learning rate's fault.
    explained = blocked | flagged | {w for w in map(p.feeding, saturated) if w is not None}
    found = [_divergence(p), dead, saturation, *gradients, _learning_rate(p, explained),
             _activation_shift(p, set(dead_layers))]
    findings = sorted((f for f in found if f is not None), key=lambda f: KINDS.index(f.kind))
    sick = any(f.kind != "activation_shift" for f in findings)
    return Diagnosis("unhealthy" if sick else "healthy", findings)
