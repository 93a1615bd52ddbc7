"""Diagnosis: each rule fires on its symptom with the right layers and numbers, at its boundary.

Probe dicts are built with the shape `Probe.to_dict()` gives (non-finite values
as `None`, dead fractions at window ends, the head's ratio to itself 1); the
healthy and dead-ReLU cases also run the real probe on a small network trained
on the Fashion-MNIST fixture.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from tricklab.data.idx import read_idx
from tricklab.doctor import diagnosis as dx
from tricklab.doctor import watch
from tricklab.doctor.diagnosis import KINDS, REMEDIES, Diagnosis, diagnose, format_diagnosis
from tricklab.doctor.layers import RELU_LIKE
from tricklab.nn import build_model

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "fashion_mnist"
Edit = Callable[[int, int, dict[str, Any]], None]  # (layer index, sample index, row) -> None


def make_probes(activation: str | None = "relu", hidden: int = 3, samples: int = 40,
                every: int = 5, edit: Edit | None = None, output: str = "softmax",
                losses: list[float | None] | None = None) -> dict[str, Any]:
    """A healthy run: `hidden` Dense layers and a head, with `edit` applied to each row.

    Gradient norms near 1 with a little deterministic jitter, update ratios
    near 1e-3 (Karpathy's healthy value), activation std near 1, 2% dead units.
    """
    names = [str(i + 1) for i in range(hidden + 1)]
    layers = [{"index": i, "name": name, "type": "Dense",
               "activation": activation if i < hidden else output, "has_weight": True,
               "units": 50 if i < hidden else 10} for i, name in enumerate(names)]
    rows_by_sample = []
    for k in range(samples):
        jitter = 1 + 0.05 * math.sin(1.7 * k)
        rows = []
        for i, layer in enumerate(layers):
            act = layer["activation"]
            row = {
                "act_mean": 0.5 * jitter, "act_std": 1.0 * jitter,
                "act_zero_fraction": 0.4 if act == "relu" else 0.0,
                "act_saturated_fraction": 0.02 if act in ("sigmoid", "tanh") else None,
                "act_hist": {"counts": [k % 3 + 1] * 30, "low": -1.0, "high": 3.0},
                "dead_fraction": 0.02 if act in RELU_LIKE and k % 10 == 9 else None,
                "grad_norm": 1.0 * jitter, "grad_std": 0.01, "weight_norm": 10.0,
                "update_ratio": 1e-3 * jitter, "distance_from_init": 0.01 * k,
                "grad_ratio_to_last": None, "nonfinite": False,
            }
            if edit is not None:
                edit(i, k, row)
            rows.append(row)
        last = rows[-1]["grad_norm"]
        for row in rows:
            if row["grad_norm"] is not None and last:
                row["grad_ratio_to_last"] = row["grad_norm"] / last
        loss = 2.3 - 0.02 * k if losses is None else losses[k]
        rows_by_sample.append({"step": k * every, "loss": loss, "layers": rows})
    return {"interval": every, "steps": samples * every, "bins": 30, "window": 10,
            "thresholds": {"saturation": 0.03, "loss_spike": 3.0}, "layers": layers,
            "samples": rows_by_sample, "events": []}


def only(diagnosis: Diagnosis, kind: str) -> dx.Finding:
    kinds = [f.kind for f in diagnosis.findings]
    assert kinds == [kind], diagnosis.to_dict()
    return diagnosis.findings[0]


def kinds(diagnosis: Diagnosis) -> list[str]:
    return [f.kind for f in diagnosis.findings]


# Healthy networks: no noise.


def test_healthy_synthetic_run_has_no_findings() -> None:
    result = diagnose(make_probes())
    assert result.to_dict() == {"verdict": "healthy", "findings": []}


def _train_real(layers: list[Any], steps: int = 150, lr: float = 0.01) -> dict[str, Any]:
    images = read_idx(FIXTURE / "train-images-idx3-ubyte.gz")
    labels = read_idx(FIXTURE / "train-labels-idx1-ubyte.gz")
    x = torch.tensor(images, dtype=torch.float32) / 255
    y = torch.tensor(labels, dtype=torch.long)
    torch.manual_seed(0)
    model = build_model([28, 28], ["flatten", *layers])
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with watch(model, every=2) as probe:
        for step in range(steps):
            batch = slice(step * 32 % 1984, step * 32 % 1984 + 32)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            probe.record_loss(loss)
        return probe.to_dict()


@pytest.mark.parametrize("activation", ["relu", "elu"])
def test_real_he_mlp_probes_give_no_findings(activation: str) -> None:
    dense = {"activation": activation, "kernel_initializer": "he_normal"}
    probes = _train_real([{"dense": {"units": 64, **dense}}, {"dense": {"units": 32, **dense}},
                          {"dense": {"units": 10, "activation": "softmax"}}])
    assert len(probes["samples"]) == 75
    assert diagnose(probes).to_dict() == {"verdict": "healthy", "findings": []}


def test_real_dead_relu_layer_is_the_one_finding() -> None:
    probes = _train_real([
        {"dense": {"units": 64, "activation": "relu", "kernel_initializer": "he_normal"}},
        {"dense": {"units": 32, "activation": "relu", "kernel_initializer": "he_normal",
                   "bias_initializer": {"constant": {"value": -10.0}}}},
        {"dense": {"units": 10, "activation": "softmax"}}])
    dead_layer = probes["layers"][1]["name"]
    finding = only(diagnose(probes), "dead_units")
    assert finding.layers == [dead_layer] and finding.severity == "error"
    assert f"layer {dead_layer} (Dense, relu): 100% of 32 units never active" in finding.evidence[0]


# Vanishing and exploding gradients.


def _grad(profile: list[float]) -> Edit:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        row["grad_norm"] = profile[i]
    return edit


def test_vanishing_gradients_from_geometric_decay_across_depth() -> None:
    result = diagnose(make_probes(edit=_grad([0.08**3, 0.08**2, 0.08, 1.0])))
    finding = only(result, "vanishing_gradients")
    assert result.verdict == "unhealthy" and finding.severity == "warning"
    assert finding.layers == ["1", "2"]  # layer 3 at 0.08 is within the threshold
    assert finding.evidence[0] == ("layer 1 (Dense, relu): median gradient norm 0.00051, "
                                   "1/2,000 of the last layer's, steps 0–195")
    assert finding.data["gradient_ratio"]["2"] == pytest.approx(0.0064)
    assert finding.remedies[0].startswith("initialization matched to the activation: Glorot")
    assert "He (he_normal)" in finding.remedies[0] and "LeCun" in finding.remedies[0]


def test_vanishing_below_1e_4_is_an_error() -> None:
    finding = only(diagnose(make_probes(edit=_grad([5e-5, 1.0, 1.0, 1.0]))), "vanishing_gradients")
    assert finding.severity == "error" and "1/20,000 of the last layer's" in finding.evidence[0]


@pytest.mark.parametrize(("ratio", "fires"), [(0.0099, True), (0.0101, False)])
def test_vanishing_threshold_is_1e_2(ratio: float, fires: bool) -> None:
    result = diagnose(make_probes(edit=_grad([ratio, 1.0, 1.0, 1.0])))
    assert kinds(result) == (["vanishing_gradients"] if fires else [])


@pytest.mark.parametrize(("speed", "fires"), [(0.0099, True), (0.0101, False)])
def test_vanishing_when_a_layer_learns_100x_slower_than_the_last(speed: float, fires: bool) -> None:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        row["update_ratio"] = 1e-3 * (speed if i == 0 else 1.0)

    result = diagnose(make_probes(edit=edit))
    assert kinds(result) == (["vanishing_gradients"] if fires else [])
    if fires:
        assert "it learns 100× slower" in result.findings[0].evidence[0]


@pytest.mark.parametrize(("ratio", "fires"), [(101.0, True), (99.0, False)])
def test_exploding_threshold_is_1e2_times_the_last_layer(ratio: float, fires: bool) -> None:
    result = diagnose(make_probes(edit=_grad([ratio, 1.0, 1.0, 1.0])))
    assert kinds(result) == (["exploding_gradients"] if fires else [])
    if fires:
        assert result.findings[0].layers == ["1"]
        assert "median gradient norm 1e+02, 100× the last layer's" in result.findings[0].evidence[0]
        assert result.findings[0].remedies[0].startswith("gradient clipping: clipnorm or global")


@pytest.mark.parametrize(("growth", "fires"), [(10.1, True), (9.9, False)])
def test_exploding_when_gradients_grow_10x_over_the_run(growth: float, fires: bool) -> None:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        row["grad_norm"] = 1.0 if k < 20 else growth

    result = diagnose(make_probes(edit=edit))
    assert kinds(result) == (["exploding_gradients"] if fires else [])
    if fires:
        finding = result.findings[0]
        assert finding.layers == ["1", "2", "3", "4"]
        assert finding.evidence[0] == ("layer 1 (Dense, relu): median gradient norm grew 10× "
                                       "from 1 (steps 0–45) to 10 (steps 150–195)")


def _depth(factor: float) -> Edit:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        row["act_std"] = factor**i
    return edit


def test_activation_scale_growing_across_depth_is_exploding() -> None:
    finding = only(diagnose(make_probes(hidden=8, edit=_depth(1.5))), "exploding_gradients")
    assert finding.layers == ["1", "8"] and finding.severity == "warning"
    assert finding.data["activation_depth_factor"] == pytest.approx(1.5**7)
    assert finding.evidence == ["activation std grows 17× across depth, from 1 in layer 1 "
                                "(Dense, relu) to 17 in layer 8 (Dense, relu) (×1.5 per layer), "
                                "steps 0–195"]


def test_activation_scale_shrinking_across_depth_is_vanishing() -> None:
    finding = only(diagnose(make_probes(hidden=8, edit=_depth(0.6))), "vanishing_gradients")
    assert "shrinks 1/36 across depth" in finding.evidence[0]


def test_long_evidence_is_capped_per_rule() -> None:
    profile = [1e-3] * 12 + [1.0]
    finding = only(diagnose(make_probes(hidden=12, edit=_grad(profile))), "vanishing_gradients")
    assert len(finding.layers) == 12 and len(finding.evidence) == dx.MAX_LINES + 1
    assert finding.evidence[-1] == "… and 8 more layer(s) alike: 5, 6, 7, …"
    assert len(finding.data["gradient_ratio"]) == 12


# Divergence.


def _blow_up(at: int, layer: int, where: str) -> Edit:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        if k == at and i == layer:
            row.update(nonfinite=True, grad_norm=None, **({"act_std": None, "act_mean": None}
                                                          if where == "output" else {}))
        elif k > at:
            row.update(nonfinite=True, grad_norm=None, act_std=None, act_mean=None,
                       update_ratio=None)
    return edit


def test_nonfinite_gradient_with_finite_loss_is_exploding_and_divergence() -> None:
    losses: list[float | None] = [2.0] * 21 + [None] * 19
    probes = make_probes(edit=_blow_up(20, 1, "gradient"), losses=losses)
    probes["events"] = [
        {"step": 100, "kind": "nonfinite", "layer": "2",
         "detail": "NaN/Inf first in the gradient of layer '2' (Dense); 1 layer(s) affected"},
        {"step": 105, "kind": "nonfinite_loss", "layer": None, "detail": "non-finite loss"}]
    result = diagnose(probes)
    assert kinds(result) == ["divergence", "exploding_gradients"]
    divergence, exploding = result.findings
    assert divergence.severity == "error" and divergence.layers == ["2"]
    assert divergence.evidence[0] == ("step 100: NaN/Inf first in the gradient of layer '2' "
                                      "(Dense); 1 layer(s) affected")
    assert divergence.evidence[1] == "last finite loss 2 at step 95"
    assert divergence.remedies[0] == "lower the learning rate"
    assert exploding.severity == "error" and exploding.data["nonfinite_gradient_step"] == {"2": 100}
    assert "layer 2 (Dense, relu): gradient NaN/Inf at step 100" in exploding.evidence[0]


def test_nonfinite_output_is_divergence_only() -> None:
    result = diagnose(make_probes(edit=_blow_up(20, 0, "output"), losses=[2.0] * 20 + [None] * 20))
    finding = only(result, "divergence")
    assert finding.layers == ["1"] and finding.data["first_nonfinite_step"] == 100
    assert finding.evidence[0] == "step 100: NaN/Inf first in layer 1 (Dense, relu)"


def test_nan_loss_event_alone_is_divergence_and_later_samples_are_ignored() -> None:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        if k >= 30:  # huge after the loss turned NaN: must not count as growth
            row["grad_norm"] = 1e6

    probes = make_probes(edit=edit, losses=[1.0] * 30 + [None] * 10)
    probes["events"] = [{"step": 150, "kind": "nonfinite_loss", "layer": None, "detail": "x"},
                        {"step": 60, "kind": "loss_spike", "layer": None, "detail": "y"}]
    finding = only(diagnose(probes), "divergence")
    assert finding.layers == []
    assert finding.evidence == ["step 150: the loss is NaN/Inf", "last finite loss 1 at step 145",
                                "1 loss spike(s) before it, the first at step 60"]


def test_nan_loss_in_memory_is_divergence() -> None:
    probes = make_probes(losses=[1.0] * 39 + [math.nan])
    assert kinds(diagnose(probes)) == ["divergence"]


# Dead and saturated units.


def _dead(layer: int, fraction: float) -> Edit:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        if i == layer and row["dead_fraction"] is not None:
            row["dead_fraction"] = fraction
    return edit


@pytest.mark.parametrize(("fraction", "severity"),
                         [(0.49, None), (0.5, "warning"), (0.89, "warning"), (0.9, "error")])
def test_dead_unit_thresholds(fraction: float, severity: str | None) -> None:
    result = diagnose(make_probes(edit=_dead(1, fraction)))
    if severity is None:
        assert result.findings == []
    else:
        finding = only(result, "dead_units")
        assert finding.severity == severity and finding.layers == ["2"]
        assert finding.evidence == [f"layer 2 (Dense, relu): {fraction:.0%} of 50 units never "
                                    "active over the last window (probed steps up to step 195)"]
        assert finding.remedies[0].startswith("a leaky activation")


def test_leaky_relu_units_are_never_called_dead() -> None:
    assert diagnose(make_probes(activation="leaky_relu", edit=_dead(1, 1.0))).findings == []


def test_dead_layer_explains_the_missing_gradient_below_it() -> None:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        _dead(1, 1.0)(i, k, row)
        if i <= 1:
            row["grad_norm"], row["update_ratio"] = 0.0, 0.0

    result = diagnose(make_probes(edit=edit))
    assert only(result, "dead_units").severity == "error"


def _saturated(fraction: float, layer: int = 0) -> Edit:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        if i == layer:
            row["act_saturated_fraction"] = fraction
    return edit


@pytest.mark.parametrize(("fraction", "severity"), [(0.29, None), (0.3, "warning"), (0.9, "error")])
def test_saturation_thresholds(fraction: float, severity: str | None) -> None:
    result = diagnose(make_probes(activation="sigmoid", edit=_saturated(fraction)))
    if severity is None:
        assert result.findings == []
    else:
        finding = only(result, "saturation")
        assert finding.severity == severity and finding.layers == ["1"]
        assert finding.evidence[0] == (f"layer 1 (Dense, sigmoid): median {fraction:.0%} of "
                                       "outputs saturated (y < 0.03 or y > 0.97), steps 0–195")


def test_tanh_saturation_names_its_bound_and_the_output_layer_may_saturate() -> None:
    result = diagnose(make_probes(activation="tanh", edit=_saturated(0.5)))
    assert "(|y| > 0.94)" in only(result, "saturation").evidence[0]
    confident = make_probes(activation="relu", output="sigmoid", edit=_saturated(0.99, layer=3))
    assert diagnose(confident).findings == []


# Learning rate.


def _updates(value: float) -> Edit:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        row["update_ratio"] = value
    return edit


@pytest.mark.parametrize(("ratio", "kind", "severity"), [
    (0.0099, None, None), (0.0101, "learning_rate_too_high", "warning"),
    (0.2, "learning_rate_too_high", "error"), (1.01e-5, None, None),
    (0.99e-5, "learning_rate_too_low", "warning"), (1e-7, "learning_rate_too_low", "warning"),
])
def test_update_ratio_thresholds(ratio: float, kind: str | None, severity: str | None) -> None:
    result = diagnose(make_probes(edit=_updates(ratio)))
    if kind is None:
        assert result.findings == []
        return
    finding = only(result, kind)
    assert finding.severity == severity and finding.layers == ["1", "2", "3", "4"]
    assert finding.data["median_update_ratio"] == pytest.approx(ratio)


def test_update_ratio_evidence_compares_with_karpathys_1e_3() -> None:
    high = only(diagnose(make_probes(edit=_updates(0.05))), "learning_rate_too_high")
    assert high.evidence == ["median update ratio ‖Δw‖/‖w‖ over 4 weight layer(s) 0.05, 50× the "
                             "healthy ~1e-3, steps 0–195", "per layer: 1: 0.05, 2: 0.05, 3: 0.05, "
                             "4: 0.05"]
    assert high.remedies[0].startswith("lower the learning rate")
    low = only(diagnose(make_probes(edit=_updates(1e-7))), "learning_rate_too_low")
    assert "1e-07, 1/10,000 of the healthy ~1e-3" in low.evidence[0]


def test_steps_without_an_update_say_nothing_about_the_learning_rate() -> None:
    assert diagnose(make_probes(edit=_updates(0.0))).findings == []


# Activation shift and the verdict.


@pytest.mark.parametrize(("late_std", "fires"), [(10.1, True), (9.9, False)])
def test_activation_shift_is_a_warning_that_keeps_the_verdict(late_std: float, fires: bool) -> None:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        if i == 1:
            row["act_std"], row["act_mean"] = (1.0 if k < 20 else late_std), 0.5

    result = diagnose(make_probes(edit=edit))
    assert result.verdict == "healthy"
    assert kinds(result) == (["activation_shift"] if fires else [])
    if fires:
        assert result.findings[0].severity == "warning" and result.findings[0].layers == ["2"]
        assert "activation std 1 → 10 (10×)" in result.findings[0].evidence[0]


def test_activation_mean_moving_more_than_one_std_is_a_shift() -> None:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        if i == 0:
            row["act_std"], row["act_mean"] = 1.0, (0.0 if k < 20 else 1.5)

    finding = only(diagnose(make_probes(edit=edit)), "activation_shift")
    assert finding.data["drift"]["1"]["mean_shift"] == pytest.approx(1.5)


def test_findings_are_ordered_and_any_but_a_shift_makes_it_unhealthy() -> None:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        _dead(0, 0.7)(i, k, row)
        _updates(1e-7)(i, k, row)

    result = diagnose(make_probes(edit=edit))
    assert kinds(result) == ["dead_units", "learning_rate_too_low"]
    assert result.verdict == "unhealthy"
    assert result.findings[1].layers == ["2", "3", "4"]  # layer 1's small steps: its dead units


def test_to_dict_is_json_ready_and_complete() -> None:
    result = diagnose(make_probes(edit=_grad([1e-3, 1.0, 1.0, 1.0])))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(data) == {"verdict", "findings"} and data["verdict"] == "unhealthy"
    assert set(data["findings"][0]) == {"kind", "severity", "layers", "evidence", "remedies", "data"}
    assert set(KINDS) == set(REMEDIES) and all(REMEDIES[kind] for kind in KINDS)


def test_diagnosing_the_stored_json_gives_the_same_result() -> None:
    probes = make_probes(edit=_grad([1e-3, 1.0, 1.0, 1.0]))
    stored = json.loads(json.dumps(probes))
    assert diagnose(stored).to_dict() == diagnose(probes).to_dict()


@pytest.mark.parametrize("probes", [
    {}, {"layers": [], "samples": [], "events": []},
    {"layers": [{"index": 0, "name": "0", "type": "ReLU", "activation": "relu",
                 "has_weight": False, "units": 4}],
     "samples": [{"step": 0, "loss": None, "layers": [{"act_std": 1.0, "act_mean": 0.4}]}]},
], ids=["empty", "no-samples", "no-weight-layer"])
def test_degenerate_probes_are_healthy(probes: dict[str, Any]) -> None:
    assert diagnose(probes).to_dict() == {"verdict": "healthy", "findings": []}


# The terminal.


def _render(renderable: Any) -> str:
    console = Console(record=True, width=160, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_healthy_renders_one_line() -> None:
    text = _render(format_diagnosis(diagnose(make_probes())))
    assert text.startswith("healthy: no finding") and text.count("\n") <= 2


def test_findings_render_as_a_table_with_numbered_remedies() -> None:
    probes = make_probes(edit=_grad([1e-3, 1.0, 1.0, 1.0]))
    probes["layers"][0]["name"] = "[bold]dense"  # names are shown literally, never as markup
    text = _render(format_diagnosis(diagnose(probes)))
    assert text.startswith("unhealthy: 1 finding\n")
    for expected in ("vanishing gradients", "warning", "layers [bold]dense", "1/1,000",
                     "1. initialization matched", "4. residual (skip) connections"):
        assert expected in text


def test_a_shift_alone_renders_as_healthy_with_a_warning() -> None:
    def edit(i: int, k: int, row: dict[str, Any]) -> None:
        if i == 1:
            row["act_std"], row["act_mean"] = 1.0, (0.0 if k < 20 else 2.0)

    text = _render(format_diagnosis(diagnose(make_probes(edit=edit))))
    assert text.startswith("healthy: 1 finding") and "activation shift" in text
