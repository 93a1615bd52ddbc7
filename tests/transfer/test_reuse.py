"""clone_model and reuse_layers: copies share nothing, and training the reusing model leaves
the source untouched (the book's pitfall with `Sequential(model_A.layers[:-1])`)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tricklab.errors import UserInputError
from tricklab.nn import build_model
from tricklab.train import Trainer
from tricklab.transfer import save_model
from tricklab.transfer.reuse import clone_model, model_directory, parse_layer_slice, reuse_layers

LAYERS = [
    "flatten",
    {"dense": {"units": 12, "activation": "selu", "kernel_initializer": "lecun_normal"}},
    {"batch_norm": {}},
    {"dense": {"units": 6, "activation": "selu", "kernel_initializer": "lecun_normal"}},
    {"dense": {"units": 4, "activation": "softmax"}},
]


def model_a(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model([3, 4], LAYERS)
    # Non-trivial moving statistics, so copying buffers is tested too.
    model(torch.randn(64, 3, 4))
    return model


def storages(module: nn.Module) -> set[int]:
    return {tensor.untyped_storage().data_ptr() for tensor in module.state_dict().values()}


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in module.state_dict().items()}


def assert_same_state(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), key


def train_steps(model: nn.Module, steps: int = 5, binary: bool = True) -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 3, 4)
    y = (torch.rand(64) > 0.5).long() if binary else torch.randint(0, 4, (64,))
    parameters = [p for p in model.parameters() if p.requires_grad]
    trainer = Trainer(model, torch.optim.SGD(parameters, lr=0.5),
                      loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
                      metrics=(), progress="none")
    trainer.fit(x, y, epochs=steps, batch_size=16)


def test_clone_with_weights_is_equal_and_shares_no_tensor():
    source = model_a()
    source[3].trainable = False
    clone = clone_model(source)
    assert_same_state(snapshot(source), snapshot(clone))
    assert not storages(source) & storages(clone)
    assert not clone[3].trainable and clone[1].trainable
    before = snapshot(source)
    train_steps(clone, binary=False)
    assert_same_state(before, snapshot(source))


def test_clone_without_weights_draws_fresh_ones_from_the_initializers():
    source = model_a()
    torch.manual_seed(7)
    clone = clone_model(source, weights=False)
    torch.manual_seed(7)
    expected = build_model([3, 4], LAYERS)
    assert_same_state(snapshot(expected), snapshot(clone))
    assert not torch.equal(clone[1].weight, source[1].weight)


def test_clone_keeps_each_sublayer_frozen_or_trainable_as_it_was():
    torch.manual_seed(0)
    model = build_model([6], [
        {"residual": {"layers": [{"dense": {"units": 6, "trainable": False}}, "batch_norm"]}},
        {"dense": {"units": 2, "trainable": False}},
    ])
    clone = clone_model(model)
    flags = [p.requires_grad for p in model.parameters()]
    assert flags == [False, False, True, True, False, False]  # inner dense and head frozen
    assert [p.requires_grad for p in clone.parameters()] == flags
    assert [m.trainable for m in clone.modules() if hasattr(m, "trainable")] == [
        m.trainable for m in model.modules() if hasattr(m, "trainable")]


def test_clone_of_a_plain_torch_module():
    source = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    copied = clone_model(source)
    assert not storages(source) & storages(copied)
    assert_same_state(snapshot(source), snapshot(copied))
    fresh = clone_model(source, weights=False)
    assert not torch.equal(fresh[0].weight, source[0].weight)


def test_clone_without_weights_refuses_a_module_it_cannot_reinitialize():
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.factor = nn.Parameter(torch.ones(2))

    with pytest.raises(ValueError, match="Scale has parameters but no reset_parameters"):
        clone_model(nn.Sequential(Scale()), weights=False)


@pytest.mark.parametrize("source_kind", ["model", "model_dir", "run_dir"])
def test_training_the_reusing_model_never_changes_model_a(tmp_path, source_kind):
    source = model_a()
    before = snapshot(source)
    if source_kind == "model":
        origin = source
    else:
        run_dir = tmp_path / "run"
        save_model(source, run_dir / "model" if source_kind == "run_dir" else run_dir)
        origin = run_dir
    model_b = reuse_layers(origin, ":-1", [{"dense": {"units": 1, "activation": "sigmoid"}}])
    reused_before = snapshot(model_b[1])
    assert not storages(source) & storages(model_b)
    train_steps(model_b)
    assert_same_state(before, snapshot(source))
    # The reused layers did train: the test would not notice sharing otherwise.
    assert not torch.equal(reused_before["weight"], model_b[1].weight)
    assert len(model_b) == len(source) and model_b.output_shape == (1,)


def test_frozen_reused_layers_keep_weights_and_batch_norm_statistics():
    model_b = reuse_layers(model_a(), ":-1", [{"dense": {"units": 1, "activation": "sigmoid"}}],
                           trainable=False)
    frozen = snapshot(model_b[:-1])
    head = model_b[-1].weight.clone()
    train_steps(model_b)
    assert_same_state(frozen, snapshot(model_b[:-1]))
    assert not torch.equal(head, model_b[-1].weight)
    assert all(not p.requires_grad for p in model_b[:-1].parameters())


@pytest.mark.parametrize(
    ("text", "expected"),
    [(":-1", slice(None, -1)), ("1:4", slice(1, 4)), (":", slice(None, None)),
     ("-2:", slice(-2, None)), (" 0 : 3 ", slice(0, 3))],
)
def test_layer_slices(text, expected):
    assert parse_layer_slice(text) == expected


@pytest.mark.parametrize("text", ["", "3", "1:2:3", "a:b", "1.5:"])
def test_malformed_layer_slices_are_named(text):
    with pytest.raises(UserInputError, match=r"^model\.reuse\.layers: expected a slice"):
        parse_layer_slice(text)


def test_a_slice_selecting_nothing_is_an_error():
    with pytest.raises(UserInputError, match=r"'5:' selects none of the source's 5 layers"):
        reuse_layers(model_a(), "5:")


def test_a_folder_without_a_model_is_named(tmp_path):
    with pytest.raises(UserInputError, match=r"holds no saved model"):
        model_directory(tmp_path)
