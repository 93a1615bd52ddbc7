"""The doctor's plots: valid PNGs from real probes, and fewer figures, never a crash, on odd input."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from tricklab.doctor import watch
from tricklab.nn import build_model
from tricklab.report.doctor import doctor_figures, plot_doctor
from tricklab.report.figure import plt, png_bytes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ["doctor_depth.png", "doctor_heatmap.png", "doctor_units.png"]


def _probes(layers: list[Any], steps: int = 30, lr: float = 0.1) -> dict[str, Any]:
    """Real probes of a small network trained on random blobs, as `doctor.json` stores them."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 12), torch.randint(0, 3, (64,))
    model = build_model([12], layers)
    parameters = list(model.parameters())
    optimizer = torch.optim.SGD(parameters, lr=lr) if parameters else None
    x.requires_grad_(not parameters)  # an activation-only model still runs a backward pass
    with watch(model, every=1, window=10) as probe:
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad()
            probe.record_loss(loss)
        return json.loads(json.dumps(probe.to_dict()))


@pytest.fixture(scope="module")
def probes() -> dict[str, Any]:
    return _probes([{"dense": {"units": 16, "activation": "relu"}},
                    {"dense": {"units": 16}}, "sigmoid",
                    {"dense": {"units": 3, "activation": "softmax"}}])


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_SIGNATURE) and len(data) > 5000


def test_plot_doctor_writes_three_valid_pngs(probes: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "plots"  # created on demand
    paths = plot_doctor(probes, folder)
    assert [p.name for p in paths] == NAMES
    assert all(_is_png(path) for path in paths)
    assert sorted(p.name for p in folder.iterdir()) == NAMES  # no temporary file left behind


def test_doctor_figures_are_open_figures_for_embedding(probes: dict[str, Any]) -> None:
    figures = doctor_figures(probes)
    assert list(figures) == ["doctor_depth", "doctor_heatmap", "doctor_units"]
    assert all(isinstance(figure, Figure) for figure in figures.values())
    depth = figures["doctor_depth"]
    top, bottom = depth.axes[:2]
    assert bottom.get_yscale() == "log"  # gradient norms span decades
    assert "doctor: " in depth.texts[0].get_text()
    assert [line.get_label() for line in top.get_lines()] == ["activation std", "linear-output std"]
    # One gradient marker per weight layer, at its depth.
    weights = [layer["index"] for layer in probes["layers"] if layer["has_weight"]]
    assert list(bottom.get_lines()[0].get_xdata()) == weights
    assert all(png_bytes(figure).startswith(PNG_SIGNATURE) for figure in figures.values())


def test_units_figure_draws_dead_and_saturated_bars(probes: dict[str, Any]) -> None:
    figure = doctor_figures(probes)["doctor_units"]
    axis = figure.axes[0]
    labels = {text.get_text() for text in axis.get_legend().get_texts()}
    assert labels == {"dead (latest window)", "dead threshold 50%", "saturated (median)",
                      "saturation threshold 30%"}
    heights = [bar.get_height() for bar in axis.patches]
    assert len(heights) == 2 * 2  # two layers (relu, sigmoid) with a bar pair each
    assert all(0 <= height <= 1 for height in heights)
    plt.close(figure)


def _strip(probes: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    stripped = copy.deepcopy(probes)
    for sample in stripped["samples"]:
        for row in sample["layers"]:
            for key in keys:
                row[key] = None
    return stripped


def test_degenerate_probes_give_fewer_figures_and_no_error(
    probes: dict[str, Any], tmp_path: Path
) -> None:
    assert plot_doctor({}, tmp_path / "a") == []
    assert plot_doctor({**probes, "samples": []}, tmp_path / "b") == []
    no_gradients = _strip(probes, ("grad_norm", "grad_ratio_to_last"))
    assert [p.name for p in plot_doctor(no_gradients, tmp_path / "c")] == [
        "doctor_depth.png", "doctor_units.png"]
    nothing = _strip(probes, ("act_std", "grad_norm", "dead_fraction", "act_saturated_fraction"))
    assert plot_doctor(nothing, tmp_path / "d") == []
    single = {**probes, "samples": probes["samples"][:1]}
    assert [p.name for p in plot_doctor(single, tmp_path / "e")] == NAMES  # saturation known
    assert all(_is_png(path) for path in (tmp_path / "e").iterdir())


def test_activation_only_model_and_dead_gradients(tmp_path: Path) -> None:
    activations_only = _probes(["relu", "tanh"], steps=3)  # no weight: no gradient to draw
    assert activations_only["layers"] and not any(
        layer["has_weight"] for layer in activations_only["layers"])
    paths = plot_doctor(activations_only, tmp_path)
    assert [p.name for p in paths] == ["doctor_depth.png", "doctor_units.png"]
    assert all(_is_png(path) for path in paths)


def test_nonfinite_and_many_layers_are_drawn(tmp_path: Path) -> None:
    deep = _probes([{"dense": {"units": 8, "activation": "elu"}}] * 30
                   + [{"dense": {"units": 3, "activation": "softmax"}}], steps=12)
    deep["samples"][-1]["layers"][0].update(act_std=math.inf, grad_norm=math.nan)  # in-memory
    paths = plot_doctor(deep, tmp_path)
    assert [p.name for p in paths] == NAMES and all(_is_png(path) for path in paths)
    ticks = doctor_figures(deep)["doctor_depth"].axes[1].get_xticklabels()
    assert 0 < len(ticks) <= 24  # 31 layers thinned to a readable axis
    plt.close("all")
