"""Memory footprint: the meta-device estimate, and the refusal of models that cannot fit.

The refusals are tested on the real default path (the machine's available
memory) with models absurd on any machine, and with `TRICKLAB_MEMORY_LIMIT`
lowered for the ones that would fit a machine but not the limit.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Annotated

import pytest
import torch
import yaml
from pydantic import Field
from torch import nn

from tricklab.cli.main import main
from tricklab.errors import UserInputError
from tricklab.nn import (
    DoesNotFitError,
    available_memory,
    build_model,
    check_training_fits,
    count_params,
    estimate_footprint,
    footprint_of,
    layers,
    summarize,
)
from tricklab.nn.base import Layer, Shape
from tricklab.nn.footprint import MEMORY_LIMIT_VARIABLE, format_bytes, memory_limit
from tricklab.recipe import load_recipe
from tricklab.registry import Info
from tricklab.transfer import load_model, reuse_layers, save_model

from ..conftest import REPOSITORY, TINY_RECIPE
from .test_layers import example

RECIPES = sorted(
    str(path.relative_to(REPOSITORY)) for path in (REPOSITORY / "recipes").rglob("*.yaml")
)
BILLION_UNITS = ["flatten", {"dense": {"units": 1_000_000_000}}, {"dense": {"units": 10}}]
"""784 inputs -> 10^9 units: 785,000,000,000 parameters, 2.9 TiB as float32."""

AVAILABLE = r"this machine's \d+\.\d [KMGT]iB of available memory"
QUICK_S = 2.0
"""A refusal takes milliseconds; a build of the refused model would take minutes or never end."""

SMALL_RSS_KIB = 200 * 1024
"""Peak memory a refusal may add (a build of the refused model would add terabytes)."""


@pytest.fixture(autouse=True)
def machine_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own available memory, whatever the environment running the tests says."""
    monkeypatch.delenv(MEMORY_LIMIT_VARIABLE, raising=False)


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def real_weight_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def assert_matches_the_built_model(shape, layer_list) -> None:
    """The estimate's per-layer output shapes and counts equal the real model's."""
    footprint = estimate_footprint(shape, layer_list)
    model = build_model(shape, layer_list)
    rows = summarize(model)
    assert [layer.output_shape for layer in footprint.layers] == [r.output_shape for r in rows]
    assert [layer.params for layer in footprint.layers] == [r.params for r in rows]
    counts = count_params(model)
    assert footprint.params == counts.total
    assert footprint.trainable_params == counts.trainable
    assert footprint.weight_bytes == real_weight_bytes(model)
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    assert footprint.trainable_bytes == trainable
    assert footprint.input_bytes == math.prod(shape) * 4


@pytest.mark.parametrize("name", layers.names())
def test_the_estimate_matches_every_registered_layer(name: str) -> None:
    arguments, shape = example(name)
    assert_matches_the_built_model(shape, [{name: arguments}])


@pytest.mark.parametrize("path", RECIPES)
def test_the_estimate_matches_every_shipped_recipe_and_refuses_none(path: str) -> None:
    recipe = load_recipe(REPOSITORY / path)
    shape, layer_list = recipe.model.input_shape, recipe.model.layers
    assert_matches_the_built_model(shape, layer_list)
    footprint = estimate_footprint(shape, layer_list)
    # Far below any machine's memory, so the check refuses none of them anywhere.
    assert footprint.training_bytes(recipe.train.batch_size) < 512 * 2**20
    check_training_fits(shape, layer_list, recipe.train.batch_size, "cpu")


def test_a_sublayer_is_measured_and_named_at_its_own_path() -> None:
    block = {"residual": {"layers": [{"dense": {"units": 8}}, "relu", {"dense": {"units": 6}}]}}
    footprint = estimate_footprint([6], [block, {"dense": {"units": 2}}])
    residual = footprint.layers[0]
    assert [sub.path for sub in residual.sublayers] == [
        "model.layers.0.residual.layers.0.dense",
        "model.layers.0.residual.layers.1.relu",
        "model.layers.0.residual.layers.2.dense",
    ]
    assert [sub.params for sub in residual.sublayers] == [6 * 8 + 8, 0, 8 * 6 + 6]
    assert [sub.output_shape for sub in residual.sublayers] == [(8,), (8,), (6,)]
    # The block's own output (the sum) is an activation of its own, beyond its layers'.
    assert residual.activation_bytes > sum(sub.activation_bytes for sub in residual.sublayers)


def test_activations_count_what_the_backward_pass_keeps() -> None:
    # An LSTM keeps every step's gates for the backward pass, not only its output.
    lstm = [{"lstm": {"units": 32}}]
    traced = estimate_footprint([28, 28], lstm)
    outputs_only = estimate_footprint([28, 28], lstm, trace=False)
    assert outputs_only.activation_bytes == 32 * 4
    assert traced.activation_bytes > 28 * 32 * 4
    # A flatten is a view of its input and keeps nothing.
    flat = estimate_footprint([28, 28], ["flatten", {"dense": {"units": 3}}])
    assert flat.layers[0].activation_bytes == 0


def test_a_frozen_layer_needs_no_training_state() -> None:
    frozen = [{"dense": {"units": 100, "trainable": False}}, {"dense": {"units": 2}}]
    footprint = estimate_footprint([50], frozen)
    assert footprint.trainable_params == 202
    assert footprint.layers[0].trainable_bytes == 0
    assert footprint.weight_bytes == (5100 + 202) * 4


def test_a_built_model_measures_as_its_estimate() -> None:
    recipe = load_recipe(REPOSITORY / "recipes/architectures/resnet_small.yaml")
    estimate = estimate_footprint(recipe.model.input_shape, recipe.model.layers)
    measured = footprint_of(build_model(recipe.model.input_shape, recipe.model.layers))
    assert measured == estimate


def test_the_estimate_leaves_the_random_stream_as_it_was() -> None:
    recipe = load_recipe(REPOSITORY / "recipes/architectures/lstm_fashion_mnist.yaml")
    torch.manual_seed(3)
    expected = torch.rand(5)
    torch.manual_seed(3)
    estimate_footprint(recipe.model.input_shape, recipe.model.layers)
    check_training_fits(recipe.model.input_shape, recipe.model.layers, 32, "cpu")
    assert torch.equal(torch.rand(5), expected)


class ValueScaled(Layer):
    """A layer whose build reads a value of its weight, which a meta tensor does not have."""

    def __init__(self, units: Annotated[int, Field(gt=0)] = 3) -> None:
        super().__init__()
        self.units = units

    def build(self, input_shape: Shape) -> None:
        weight = torch.randn(self.units, input_shape[-1])
        self.weight = nn.Parameter(weight / float(weight.abs().max()))
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape[:-1], self.units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T


def test_a_layer_that_needs_values_to_build_is_built_unchecked(monkeypatch) -> None:
    info = Info("value_scaled", ValueScaled, "Scaled by its largest weight.", "", "")
    monkeypatch.setitem(layers._entries, "value_scaled", info)
    model = build_model([4], [{"value_scaled": {"units": 3}}, {"dense": {"units": 2}}])
    assert model[0].weight.abs().max().item() == 1.0
    check_training_fits([4], [{"value_scaled": {"units": 3}}], 32, "cpu")


def test_build_model_refuses_a_billion_units_before_allocating() -> None:
    before, started = peak_rss_kib(), time.perf_counter()
    with pytest.raises(DoesNotFitError) as refused:
        build_model([28, 28], BILLION_UNITS)
    assert time.perf_counter() - started < QUICK_S
    assert peak_rss_kib() - before < SMALL_RSS_KIB
    assert refused.match(
        rf"^model\.layers\.1\.dense: 785,000,000,000 parameters \(2\.9 TiB as float32\) "
        rf"do not fit in {AVAILABLE}; use fewer units$"
    )
    assert isinstance(refused.value, UserInputError)
    assert refused.value.path == "model.layers.1.dense"


def test_a_layer_inside_a_block_is_named() -> None:
    # The identity shortcut holds nothing: the inner layers hold the weights.
    block = {"residual": {"layers": [{"dense": {"units": 1_000_000_000}}, {"dense": {"units": 784}}]}}
    with pytest.raises(DoesNotFitError, match=(
        rf"^model\.layers\.0\.residual\.layers\.0\.dense: 785,000,000,000 parameters "
        rf"\(2\.9 TiB as float32\) do not fit in {AVAILABLE}; use fewer units$"
    )):
        build_model([784], [block])


def test_a_huge_input_shape_is_refused_by_name() -> None:
    started = time.perf_counter()
    with pytest.raises(DoesNotFitError, match=(
        r"^model\.input_shape: \[1000000, 1000000\] is 1,000,000,000,000 values per sample "
        rf"\(3\.6 TiB as float32 for one sample\), which does not fit in {AVAILABLE}; "
        r"use a smaller input shape$"
    )):
        build_model([1_000_000, 1_000_000], ["flatten", {"dense": {"units": 10}}])
    with pytest.raises(DoesNotFitError, match=(
        r"^model\.input_shape: \[100000, 100000\] is 10,000,000,000 values per sample "
        rf"\(1\.2 TiB as float32 for a batch of 32\), which does not fit in {AVAILABLE}; "
    )):
        check_training_fits([100_000, 100_000], ["flatten", {"dense": {"units": 10}}], 32, "cpu")
    assert time.perf_counter() - started < QUICK_S


def test_training_that_cannot_fit_is_refused_naming_the_knob() -> None:
    started = time.perf_counter()
    with pytest.raises(DoesNotFitError, match=(
        r"^model\.layers\.1\.dense: 785,000,000,000 parameters \(2\.9 TiB as float32; "
        r"11\.4 TiB to train, with gradients and optimizer state\) "
        rf"do not fit in {AVAILABLE}; use fewer units$"
    )):
        check_training_fits([28, 28], BILLION_UNITS, 32, "cpu")
    assert time.perf_counter() - started < QUICK_S
    # Small weights, but 3.2 million values per sample out of the convolution.
    wide = [{"conv2d": {"filters": 4096, "kernel_size": 3, "padding": "same"}},
            "global_avg_pool2d", {"dense": {"units": 10}}]
    check_training_fits([28, 28, 1], wide, 32, "cpu")
    with pytest.raises(DoesNotFitError, match=(
        r"^model\.layers\.0\.conv2d: activations of [\d,]+ values per sample "
        r"\([\d.]+ TiB as float32 for a batch of 100,000, kept for the backward pass with their "
        rf"gradients\) do not fit in {AVAILABLE}; lower train\.batch_size or use fewer filters$"
    )):
        check_training_fits([28, 28, 1], wide, 100_000, "cpu")


def test_the_limit_lowers_the_memory_and_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    # 78.5 million parameters (300 MiB): fits any machine that runs these tests, not 64 MiB.
    monkeypatch.setenv(MEMORY_LIMIT_VARIABLE, "64MiB")
    assert available_memory() == 64 * 2**20
    with pytest.raises(DoesNotFitError, match=(
        r"^model\.layers\.0\.dense: 78,500,000 parameters \(299\.5 MiB as float32\) do not "
        r"fit in the 64\.0 MiB of memory TRICKLAB_MEMORY_LIMIT allows; use fewer units$"
    )):
        build_model([784], [{"dense": {"units": 100_000}}])
    # Four layers of 20 MiB fit one by one, not together.
    with pytest.raises(DoesNotFitError, match=(
        r"^model\.layers\.0\.dense: 5,242,880 parameters \(20\.0 MiB as float32\) are the "
        r"largest part of the 80\.0 MiB the model needs, which does not fit in the 64\.0 MiB "
        r"of memory TRICKLAB_MEMORY_LIMIT allows; use fewer units$"
    )):
        build_model([2047], [{"dense": {"units": 2560}}, {"dense": {"units": 2047}}] * 2)
    # Neither the input nor the output alone, but both.
    with pytest.raises(DoesNotFitError, match=(
        r"^model\.input_shape: \[10485760\] is 10,485,760 values per sample \(40\.0 MiB as "
        r"float32 for one sample\), the largest part of the 80\.0 MiB the model needs, which "
        r"does not fit in the 64\.0 MiB of memory TRICKLAB_MEMORY_LIMIT allows; use a smaller "
        r"input shape$"
    )):
        build_model([10 * 2**20], ["relu"])
    # One sample of 8 MiB fits; a batch of 32 of them does not.
    with pytest.raises(DoesNotFitError, match=(
        r"^model\.input_shape: \[2097152\] is 2,097,152 values per sample \(256\.0 MiB as "
        r"float32 for a batch of 32\), which does not fit in the 64\.0 MiB of memory "
        r"TRICKLAB_MEMORY_LIMIT allows; lower train\.batch_size$"
    )):
        check_training_fits([2**21], [{"dense": {"units": 1}}], 32, "cpu")


def test_a_refusal_allocates_nothing(tmp_path: Path) -> None:
    # In a fresh interpreter, whose peak memory says what the refusal itself cost.
    script = textwrap.dedent("""
        import json, resource, time
        from tricklab.nn import DoesNotFitError, build_model
        before, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
        try:
            build_model([784], [{"dense": {"units": 100_000}}])
            outcome = "built"
        except DoesNotFitError as error:
            outcome = str(error)
        print(json.dumps({
            "outcome": outcome, "seconds": time.perf_counter() - started,
            "added_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before,
        }))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", MEMORY_LIMIT_VARIABLE: "64MiB"}, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"].startswith("model.layers.0.dense: 78,500,000 parameters")
    # Building it would add its 300 MiB of weights.
    assert result["added_kib"] < 32 * 1024
    assert result["seconds"] < QUICK_S


def test_load_model_refuses_an_edited_model_json(tmp_path: Path) -> None:
    save_model(build_model([28, 28], ["flatten", {"dense": {"units": 4}}]), tmp_path)
    spec_path = tmp_path / "model.json"
    spec = json.loads(spec_path.read_text())
    spec["layers"][1]["dense"]["units"] = 1_000_000_000
    spec_path.write_text(json.dumps(spec))
    before, started = peak_rss_kib(), time.perf_counter()
    with pytest.raises(DoesNotFitError) as refused:
        load_model(tmp_path)
    assert time.perf_counter() - started < QUICK_S
    assert peak_rss_kib() - before < SMALL_RSS_KIB
    assert refused.match(
        rf"^{spec_path}: layers\.1\.dense: 785,000,000,000 parameters \(2\.9 TiB as float32\) "
        rf"do not fit in {AVAILABLE}; use fewer units$"
    )


def test_reuse_refuses_new_layers_that_cannot_fit() -> None:
    source = build_model([28, 28], ["flatten", {"dense": {"units": 4}}, {"dense": {"units": 2}}])
    with pytest.raises(DoesNotFitError, match=(
        r"^model\.layers\.0\.dense: 5,000,000,000,000 parameters \(18\.2 TiB as float32\) do "
        rf"not fit in {AVAILABLE}; use fewer units$"
    )):
        reuse_layers(source, ":-1", [{"dense": {"units": 10**12}}])


def test_the_summary_command_refuses_in_one_line(tmp_path: Path, capsys) -> None:
    recipe = {**TINY_RECIPE, "model": {"input_shape": [28, 28], "layers": BILLION_UNITS}}
    path = tmp_path / "absurd.yaml"
    path.write_text(yaml.safe_dump(recipe))
    started = time.perf_counter()
    code = main(["summary", str(path)])
    assert time.perf_counter() - started < QUICK_S
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("error: model.layers.1.dense: 785,000,000,000 parameters (2.9 TiB")
    assert error.endswith("; use fewer units\n")
    assert error.count("\n") == 1 and "Traceback" not in error


@pytest.mark.parametrize(("text", "limit"), [
    ("1073741824", 2**30), ("8GiB", 8 * 2**30), ("512 MiB", 512 * 2**20), ("1.5gib", 3 * 2**29),
    ("64KiB", 2**16), ("2TiB", 2 * 2**40), ("100B", 100), ("", None),
])
def test_the_limit_is_read_in_bytes_or_binary_units(
    monkeypatch: pytest.MonkeyPatch, text: str, limit: int | None
) -> None:
    monkeypatch.setenv(MEMORY_LIMIT_VARIABLE, text)
    assert memory_limit() == limit


@pytest.mark.parametrize("text", ["lots", "8GB", "0", "-5MiB", "1e9"])
def test_a_limit_that_is_not_a_size_is_refused(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv(MEMORY_LIMIT_VARIABLE, text)
    with pytest.raises(UserInputError, match=(
        rf"^TRICKLAB_MEMORY_LIMIT: '{text}' is not a memory size; expected a positive number of "
        r"bytes \(e\.g\. 8589934592\) or one with KiB, MiB, GiB or TiB \(e\.g\. 8GiB\)$"
    )):
        available_memory()


def test_the_limit_never_raises_the_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = available_memory()
    total = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    assert 0 < machine <= total
    monkeypatch.setenv(MEMORY_LIMIT_VARIABLE, "1000TiB")
    assert available_memory() <= total


def test_bytes_are_written_with_binary_units() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1,023 B"
    assert format_bytes(785_000_000_000 * 4) == "2.9 TiB"
    assert format_bytes(int(21.3 * 2**30)) == "21.3 GiB"
