"""Model persistence: architecture + safetensors weights, optimizer state, no pickle, strictness."""

from __future__ import annotations

import builtins
import io
import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from tricklab.errors import UserInputError
from tricklab.nn import Sequential, build_model, layers, resolve_layers
from tricklab.nn.constraints import MaxNorm
from tricklab.nn.layers import Dense, Flatten
from tricklab.nn.rectifiers import PReLU
from tricklab.nn.regularizers import L1L2
from tricklab.nn.variance_scaling import VarianceScaling
from tricklab.optim import make_optimizer
from tricklab.transfer import load_model, load_weights, save_model, save_weights, saving

from ..nn.test_builder import SEED_MODEL
from ..nn.test_layers import example, example_batch

RICH_MODEL = [
    {"flatten": {}},
    {"batch_norm": {"momentum": 0.9, "epsilon": 0.01}},
    {
        "dense": {
            "units": 6,
            "activation": {"prelu": {"alpha_initializer": {"constant": {"value": 0.25}},
                                     "alpha_regularizer": {"l1": {"l1": 0.001}},
                                     "alpha_constraint": "non_neg"}},
            "kernel_initializer": {"variance_scaling": {"scale": 2.0, "mode": "fan_avg",
                                                        "distribution": "uniform"}},
            "bias_initializer": {"random_normal": {"stddev": 0.1}},
            "kernel_regularizer": {"l1_l2": {"l1": 0.01, "l2": 0.02}},
            "bias_regularizer": "l2",
            "kernel_constraint": {"max_norm": {"max_value": 1.5}},
            "bias_constraint": {"min_max_norm": {"min_value": 0.1, "max_value": 2.0}},
        }
    },
    {"leaky_relu": {"negative_slope": 0.2}},
    {"dropout": {"rate": 0.25}},
    {"dense": {"units": 3, "activation": "softmax", "use_bias": False,
               "kernel_initializer": "orthogonal", "kernel_constraint": "unit_norm"}},
]


def scramble(model: nn.Module, seed: int = 7, inputs: torch.Tensor | None = None) -> None:
    """Move every weight and statistic away from its initial value, as training would.

    The statistics move on a training pass over `inputs` (default: normal, mean 1, std 3).
    """
    generator = torch.Generator().manual_seed(seed)
    if inputs is None:
        inputs = torch.randn(16, *model.input_shape, generator=generator) * 3 + 1
    model.train()
    with torch.no_grad():
        model(inputs)
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    torch.manual_seed(123)  # MC dropout stays stochastic in eval mode: same draws for both
    with torch.no_grad():
        return model(x)


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def spec_of(directory: Path) -> dict:
    return json.loads((directory / "model.json").read_text())


@pytest.mark.parametrize("name", layers.names())
def test_every_layer_round_trips_weights_and_predictions(name: str, tmp_path: Path) -> None:
    arguments, shape = example(name)
    if name == "activation":  # with a parametric activation, whose slopes must round-trip
        arguments = {"activation": "prelu"}
    torch.manual_seed(0)
    model = build_model(shape, [{name: arguments}, "flatten", {"dense": {"units": 2}}])
    scramble(model, inputs=example_batch(name, 16, held=False) * (1 if name == "embedding" else 3))
    save_model(model, tmp_path / "m")
    torch.manual_seed(99)  # the rebuilt model draws other initial weights
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, Sequential) and loaded.training
    assert_same_state(model, loaded)
    x = example_batch(name, 4, held=False)
    assert torch.equal(predict(model, x), predict(loaded, x))
    ((_, config),) = resolve_layers([{name: arguments}])[0].items()
    # `swish` and `silu` are one class registered twice: it is written under the first name.
    written = "silu" if name == "swish" else name
    assert spec_of(tmp_path / "m")["layers"][0] == {written: config}


def test_configs_of_regularizers_constraints_initializers_bn_and_prelu_round_trip(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = build_model([4, 2], RICH_MODEL)
    scramble(model)
    save_model(model, tmp_path / "a")
    assert spec_of(tmp_path / "a")["layers"] == resolve_layers(RICH_MODEL)
    loaded = load_model(tmp_path / "a")
    save_model(loaded, tmp_path / "b")
    assert spec_of(tmp_path / "b") == spec_of(tmp_path / "a")
    assert_same_state(model, loaded)
    assert torch.equal(loaded[1].moving_mean, model[1].moving_mean)
    assert not torch.equal(loaded[1].moving_variance, torch.ones(8))
    # Regularizers and constraints are live again, not only written down.
    assert torch.equal(loaded.regularization_loss(), model.regularization_loss())
    model.apply_constraints()
    loaded.apply_constraints()
    assert_same_state(model, loaded)


def test_objects_given_as_instances_are_written_as_a_recipe_writes_them(tmp_path: Path) -> None:
    model = Sequential(
        Flatten(),
        Dense(units=4, activation=PReLU(alpha_constraint=MaxNorm(max_value=3.0)),
              kernel_initializer=VarianceScaling(scale=2.0),
              kernel_regularizer=L1L2(l1=0.5, l2=0.25)),
        input_shape=[3],
    )
    save_model(model, tmp_path)
    expected = resolve_layers([
        "flatten",
        {"dense": {"units": 4, "activation": {"prelu": {"alpha_constraint": {"max_norm": {"max_value": 3.0}}}},
                   "kernel_initializer": {"variance_scaling": {"scale": 2.0}},
                   "kernel_regularizer": {"l1_l2": {"l1": 0.5, "l2": 0.25}}}},
    ])
    assert spec_of(tmp_path)["layers"] == expected
    assert_same_state(model, load_model(tmp_path))


def test_frozen_layers_and_float64_weights_round_trip(tmp_path: Path) -> None:
    model = build_model([3], [{"dense": {"units": 4}}, {"dense": {"units": 2}}]).double()
    model[0].trainable = False
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    assert [layer.trainable for layer in loaded] == [False, True]
    assert loaded[0].weight.dtype == torch.float64
    assert_same_state(model, loaded)


def train_steps(model: Sequential, optimizer: torch.optim.Optimizer, steps: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, *model.input_shape, generator=generator)
        target = torch.randint(0, 3, (8,), generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model.forward_logits(x), target).backward()
        optimizer.step()


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_state_round_trips_and_the_next_step_matches(amsgrad: bool, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model([5], [{"dense": {"units": 4, "activation": "prelu"}},
                              "batch_norm", {"dense": {"units": 3, "activation": "softmax"}}])
    optimizer = make_optimizer({"adam": {"learning_rate": 0.01, "amsgrad": amsgrad}},
                               model.parameters())
    train_steps(model, optimizer, 3, seed=1)
    save_model(model, tmp_path, optimizer=optimizer)
    loaded, restored = load_model(tmp_path, optimizer=True)
    assert type(restored) is type(optimizer)
    assert restored.get_config() == optimizer.get_config()
    names = {id(p): n for n, p in model.named_parameters()}
    loaded_params = dict(loaded.named_parameters())
    for parameter, state in optimizer.state.items():
        twin = restored.state[loaded_params[names[id(parameter)]]]
        assert twin["step"] == state["step"] == 3
        assert set(twin) == set(state) == {"step", "m", "v", *(["vhat"] if amsgrad else [])}
        for key in ("m", "v"):
            assert torch.equal(twin[key], state[key])
    train_steps(model, optimizer, 2, seed=2)
    train_steps(loaded, restored, 2, seed=2)
    assert_same_state(model, loaded)


def test_optimizer_requested_but_not_saved_is_an_error(tmp_path: Path) -> None:
    model = build_model([3], [{"dense": {"units": 2}}])
    save_model(model, tmp_path, optimizer=make_optimizer("sgd", model.parameters()))
    save_model(model, tmp_path)  # a later save without optimizer
    assert not (tmp_path / "optimizer.json").exists()
    with pytest.raises(UserInputError, match="no optimizer was saved"):
        load_model(tmp_path, optimizer=True)


def test_unregistered_optimizer_or_layer_is_refused_before_writing(tmp_path: Path) -> None:
    model = build_model([3], [{"dense": {"units": 2}}])
    with pytest.raises(UserInputError, match="not a registered tricklab optimizer"):
        save_model(model, tmp_path / "a", optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(UserInputError, match=r"layers\.1: Linear is not a registered"):
        save_model(Sequential(Dense(units=3), nn.Linear(3, 2), input_shape=[3]), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


class Payload:
    """Unpickling this creates `marker`: what a malicious weights file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


def pickle_payloads(marker: Path) -> dict[str, bytes]:
    buffer = io.BytesIO()
    torch.save({"0.weight": torch.zeros(2, 3), "evil": Payload(marker)}, buffer)
    return {"pickle": pickle.dumps(Payload(marker)), "torch.save": buffer.getvalue()}


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_a_pickle_payload_is_refused_and_never_run(kind: str, tmp_path: Path) -> None:
    # The payload is live: unpickling it really creates the marker.
    probe = tmp_path / "probe"
    pickle.loads(pickle_payloads(probe)["pickle"])
    assert probe.exists()

    model = build_model([3], [{"dense": {"units": 2}}])
    save_model(model, tmp_path / "m")
    marker = tmp_path / "marker"
    weights = tmp_path / "m" / "weights.safetensors"
    weights.write_bytes(pickle_payloads(marker)[kind])
    with pytest.raises(UserInputError) as error:
        load_model(tmp_path / "m")
    message = str(error.value)
    assert "\n" not in message
    assert str(weights) in message and "not a valid safetensors file" in message
    with pytest.raises(UserInputError, match="never unpickles"):
        load_weights(model, weights)
    assert not marker.exists()


def test_spec_that_no_longer_matches_the_weights_is_a_clear_error(tmp_path: Path) -> None:
    save_model(build_model([28, 28], SEED_MODEL), tmp_path)
    spec = spec_of(tmp_path)
    spec["layers"][1]["dense"]["units"] = 200
    (tmp_path / "model.json").write_text(json.dumps(spec))
    with pytest.raises(UserInputError) as error:
        load_model(tmp_path)
    message = str(error.value)
    assert "weights.safetensors: the weights do not match" in message
    assert "layer 1 (dense) tensor '1.weight' has shape [300, 784] in the file but [200, 784]" in message
    assert "'1.bias' has shape [300]" in message
    assert "layer 3 (dense) tensor '3.weight' has shape [100, 300] in the file but [100, 200]" in message
    assert "more)" not in message and "\n" not in message


def test_missing_and_unexpected_tensors_are_listed(tmp_path: Path) -> None:
    save_model(build_model([3], [{"dense": {"units": 2}}, "prelu"]), tmp_path)
    spec = spec_of(tmp_path)
    spec["layers"] = [{"dense": {"units": 2, "use_bias": False}}, "batch_norm"]
    (tmp_path / "model.json").write_text(json.dumps(spec))
    with pytest.raises(UserInputError) as error:
        load_model(tmp_path)
    message = str(error.value)
    assert "layer 1 (batch_norm) tensor '1.gamma' missing from the file" in message
    # Not shown: 1.moving_variance missing; 0.bias and 1.alpha unexpected.
    assert message.endswith("tensor '1.moving_mean' missing from the file (and 3 more)")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "model.json: not found; expected a directory written by tricklab's save_model"),
        ("{not json", "model.json: not valid JSON"),
        ('{"format": "keras", "version": 1}',
         "model.json: not a tricklab-model file (format 'keras', expected 'tricklab-model')"),
        ("[1, 2]", "model.json: not a tricklab-model file (format None"),
        ('{"format": "tricklab-model", "version": 2}',
         "model.json: format version 2 is not supported"),
        ('{"format": "tricklab-model", "version": 1, "input_shape": [3], "layers": ["dense"]}',
         "model.json: layers.0.dense.units: required field is missing"),
    ],
)
def test_bad_model_json_is_a_clear_error(content: str | None, expected: str, tmp_path: Path) -> None:
    if content is not None:
        (tmp_path / "model.json").write_text(content)
    with pytest.raises(UserInputError) as error:
        load_model(tmp_path)
    assert expected in str(error.value)


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    save_model(build_model([3], [{"dense": {"units": 2}}]), tmp_path)
    (tmp_path / "weights.safetensors").unlink()
    with pytest.raises(UserInputError, match=r"weights\.safetensors: not found"):
        load_model(tmp_path)


def test_a_failed_save_leaves_the_directory_as_it_was(tmp_path: Path, monkeypatch) -> None:
    save_model(build_model([3], [{"dense": {"units": 2}}]), tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    real = saving.atomic_open

    def failing(path, mode="w"):
        if Path(path).name == "weights.safetensors":
            raise OSError("disk full")
        return real(path, mode)

    monkeypatch.setattr(saving, "atomic_open", failing)
    bigger = build_model([3], [{"dense": {"units": 5}}])
    with pytest.raises(OSError, match="disk full"):
        save_model(bigger, tmp_path / "m")
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    with pytest.raises(OSError, match="disk full"):
        save_model(bigger, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_weights_only_round_trip_on_a_plain_torch_module(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    source(torch.randn(8, 4))  # moves the running statistics
    path = save_weights(source, tmp_path / "sub" / "w.safetensors")
    assert path.exists()
    target = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    assert not torch.equal(target[0].weight, source[0].weight)
    load_weights(target, path)
    assert_same_state(source, target)
    assert target[1].num_batches_tracked.item() == 1

    other = nn.Sequential(nn.Linear(5, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    untouched = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(UserInputError, match=r"tensor '0\.weight' has shape \[3, 4\] in the file but \[3, 5\] in the model"):
        load_weights(other, path)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in untouched.items())  # no partial load


def test_tied_weights_can_be_saved(tmp_path: Path) -> None:
    module = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    module[1].weight = module[0].weight
    save_weights(module, tmp_path / "w.safetensors")
    copy = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    load_weights(copy, tmp_path / "w.safetensors")
    assert torch.equal(copy[1].weight, module[0].weight)


def test_save_model_needs_a_tricklab_sequential(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="use save_weights"):
        save_model(nn.Sequential(nn.Linear(2, 2)), tmp_path)
