"""Residual blocks: y = activation(main(x) + shortcut(x)) checked by hand, the shortcut
chosen by shape, nested recipes and their errors, weights seen by the model, freezing,
summaries and persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tricklab.errors import UserInputError
from tricklab.nn import build_model, count_params, format_summary, resolve_layers, summarize
from tricklab.nn.layers import Dense
from tricklab.nn.residual import Residual
from tricklab.transfer import load_model, save_model

DENSE_DEFAULTS = {
    "activation": None,
    "use_bias": True,
    "kernel_initializer": "glorot_uniform",
    "bias_initializer": "zeros",
    "kernel_regularizer": None,
    "bias_regularizer": None,
    "kernel_constraint": None,
    "bias_constraint": None,
}


def numpy_of(parameter: torch.Tensor) -> np.ndarray:
    return parameter.detach().numpy()


def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0)


def batch_norm(z: np.ndarray, axes: tuple[int, ...], epsilon: float = 1e-3) -> np.ndarray:
    """Training-mode batch normalization with gamma 1 and beta 0, biased variance."""
    mean = z.mean(axis=axes, keepdims=True)
    return (z - mean) / np.sqrt(z.var(axis=axes, keepdims=True) + epsilon)


def double_model(input_shape, layer_list, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(input_shape, layer_list).double()
    with torch.no_grad():  # non-zero biases, so a missing bias would show
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_()
    return model


def test_identity_shortcut_by_hand() -> None:
    block = {"residual": {"layers": [{"dense": {"units": 6, "activation": "relu"}},
                                     {"dense": {"units": 6}}],
                          "activation": "relu"}}
    model = double_model([6], [block])
    residual = model[0]
    assert residual.shortcut is None
    x = np.random.default_rng(0).normal(size=(5, 6))
    first, second = residual.main
    hidden = relu(x @ numpy_of(first.weight).T + numpy_of(first.bias))
    main = hidden @ numpy_of(second.weight).T + numpy_of(second.bias)
    expected = relu(main + x)
    np.testing.assert_allclose(model(torch.tensor(x)).detach().numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("with_batch_norm", [True, False])
def test_flat_projection_by_hand(with_batch_norm: bool) -> None:
    block = {"residual": {"layers": [{"dense": {"units": 4, "activation": "tanh"}}],
                          "shortcut_batch_norm": with_batch_norm, "activation": "elu"}}
    model = double_model([6], [block]).train()
    residual = model[0]
    assert residual.shortcut.dense.weight.shape == (4, 6)
    assert residual.shortcut.dense.bias is None
    assert hasattr(residual.shortcut, "batch_norm") is with_batch_norm
    x = np.random.default_rng(1).normal(size=(8, 6)) * 2 + 1
    (dense,) = residual.main
    main = np.tanh(x @ numpy_of(dense.weight).T + numpy_of(dense.bias))
    projected = x @ numpy_of(residual.shortcut.dense.weight).T
    if with_batch_norm:
        projected = batch_norm(projected, axes=(0,))
    total = main + projected
    expected = np.where(total > 0, total, np.expm1(total))
    np.testing.assert_allclose(model(torch.tensor(x)).detach().numpy(), expected, rtol=1e-10)


def test_image_projection_subsamples_with_the_main_paths_stride() -> None:
    # (8, 8, 4) -> (4, 4, 16) -> (4, 4, 8): the main path halves height and width,
    # as a convolution with strides 2 would.
    block = {"residual": {"layers": [{"reshape": {"target_shape": [4, 4, 16]}},
                                     {"dense": {"units": 8}}],
                          "activation": "relu"}}
    model = double_model([8, 8, 4], [block]).train()
    residual = model[0]
    assert model.output_shape == (4, 4, 8)
    assert residual.shortcut.dense.weight.shape == (8, 4)
    x = np.random.default_rng(2).normal(size=(3, 8, 8, 4))
    dense = residual.main[1]
    main = x.reshape(3, 4, 4, 16) @ numpy_of(dense.weight).T + numpy_of(dense.bias)
    # Keras's Conv2D(8, 1, strides=2, use_bias=False) on channels-last x, then BN.
    projected = x[:, ::2, ::2, :] @ numpy_of(residual.shortcut.dense.weight).T
    expected = relu(main + batch_norm(projected, axes=(0, 1, 2)))
    np.testing.assert_allclose(model(torch.tensor(x)).detach().numpy(), expected, rtol=1e-10)


def test_odd_sizes_take_the_stride_of_same_padding() -> None:
    # 7 -> 4 is what a stride-2 convolution with padding "same" gives.
    to_4x4 = [{"flatten": {}}, {"dense": {"units": 32}}, {"reshape": {"target_shape": [4, 4, 2]}}]
    model = double_model([7, 7, 2], [{"residual": {"layers": to_4x4,
                                                   "shortcut_batch_norm": False}}])
    residual = model[0]
    x = np.random.default_rng(3).normal(size=(2, 7, 7, 2))
    main = residual.main[1]
    hidden = x.reshape(2, -1) @ numpy_of(main.weight).T + numpy_of(main.bias)
    projected = x[:, ::2, ::2, :] @ numpy_of(residual.shortcut.dense.weight).T
    expected = hidden.reshape(2, 4, 4, 2) + projected
    np.testing.assert_allclose(model(torch.tensor(x)).detach().numpy(), expected, rtol=1e-10)
    with pytest.raises(UserInputError, match=r"^model\.layers\.0\.residual\.shortcut: no strided"
                                             r".*no s takes 6 to 4"):
        build_model([6, 6, 2], [{"residual": {"layers": to_4x4}}])


@pytest.mark.parametrize(
    ("shortcut", "units", "identity"),
    [("auto", 6, True), ("auto", 5, False), ("projection", 6, False), ("identity", 6, True)],
)
def test_the_shortcut_kind(shortcut: str, units: int, identity: bool) -> None:
    model = build_model([3, 6], [{"residual": {"layers": [{"dense": {"units": units}}],
                                               "shortcut": shortcut}}])
    residual = model[0]
    assert (residual.shortcut is None) is identity
    if not identity:
        assert residual.shortcut.dense.weight.shape == (units, 6)
        x = torch.randn(2, 3, 6)
        residual.eval()  # batch norm with its initial moving statistics: x / sqrt(1 + eps)
        projected = x @ residual.shortcut.dense.weight.T / np.sqrt(1 + 1e-3)
        assert torch.allclose(residual(x), residual.main[0](x) + projected, atol=1e-6)


@pytest.mark.parametrize(
    ("input_shape", "block", "message"),
    [
        ([6], {"layers": [{"dense": {"units": 3}}], "shortcut": "identity"},
         r"^model\.layers\.0\.residual\.shortcut: an identity shortcut needs the main layers "
         r"to keep the input shape \(6,\), but they give \(3,\)"),
        ([2, 3], {"layers": ["flatten"]},
         r"^model\.layers\.0\.residual\.shortcut: no projection maps the input shape \(2, 3\) "
         r"to the main layers' output shape \(6,\)"),
        ([4, 4, 2], {"layers": [{"reshape": {"target_shape": [8, 4, 1]}}]},
         r"^model\.layers\.0\.residual\.shortcut: no strided 1×1 projection"),
        ([6], {"layers": [{"dense": {"units": 0}}]},
         r"^model\.layers\.0\.residual\.layers\.0\.dense\.units: "),
        ([6], {"layers": ["flatten", "densee"]},
         r"^model\.layers\.0\.residual\.layers\.1: unknown layer 'densee'; did you mean"),
        ([6], {"layers": [{"residual": {"layers": [{"dense": {"units": 2, "size": 1}}]}}]},
         r"^model\.layers\.0\.residual\.layers\.0\.residual\.layers\.0\.dense: unknown key"),
        ([6], {"layers": [{"dense": {"units": 6}}, {"batch_norm": {"axis": 2}}]},
         r"^model\.layers\.0\.residual\.layers\.1\.batch_norm: axis 2 is not a feature axis"),
        ([6], {"layers": [{"residual": {"layers": [{"batch_norm": {"axis": 2}}]}}]},
         r"^model\.layers\.0\.residual\.layers\.0\.residual\.layers\.0\.batch_norm: axis 2"),
        ([6], {"layers": []}, r"^model\.layers\.0\.residual\.layers: expected a non-empty list"),
        ([6], {"layers": [{"dense": {"units": 6}}], "shortcut": "none"},
         r"^model\.layers\.0\.residual\.shortcut: "),
        ([6], {"layers": [{"dense": {"units": 6}}], "activation": "rleu"},
         r"^model\.layers\.0\.residual\.activation: unknown activation 'rleu'"),
    ],
)
def test_errors_name_their_dotted_path(input_shape, block, message) -> None:
    with pytest.raises(UserInputError, match=message):
        build_model(input_shape, [{"residual": block}])


def test_resolved_recipe_shows_every_default_of_the_nested_layers() -> None:
    recipe = [{"residual": {"layers": [{"dense": {"units": 6}},
                                       {"residual": {"layers": ["batch_norm"],
                                                     "activation": "leaky_relu"}}],
                            "activation": "relu"}}]
    resolved = resolve_layers(recipe)
    assert resolved == [{"residual": {
        "layers": [
            {"dense": {"units": 6, **DENSE_DEFAULTS}},
            {"residual": {
                "layers": [{"batch_norm": {"axis": -1, "momentum": 0.99, "epsilon": 1e-3,
                                           "center": True, "scale": True}}],
                "shortcut": "auto",
                "shortcut_batch_norm": True,
                "activation": {"leaky_relu": {"negative_slope": 0.3}},
            }},
        ],
        "shortcut": "auto",
        "shortcut_batch_norm": True,
        "activation": "relu",
    }}]
    assert resolve_layers(resolved) == resolved
    torch.manual_seed(0)
    first = build_model([6], recipe)
    torch.manual_seed(0)
    second = build_model([6], resolved)
    assert first[0].get_config() == resolved[0]["residual"]
    assert Residual.from_config(first[0].get_config()).get_config() == resolved[0]["residual"]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                  second.state_dict().values(), strict=True))


def test_nested_blocks_by_hand() -> None:
    inner = {"residual": {"layers": [{"dense": {"units": 4}}], "activation": "tanh"}}
    model = double_model([4], [{"residual": {"layers": [inner, {"dense": {"units": 4}}]}}])
    outer = model[0]
    inner_dense, outer_dense = outer.main[0].main[0], outer.main[1]
    x = np.random.default_rng(4).normal(size=(3, 4))
    inner_out = np.tanh(x @ numpy_of(inner_dense.weight).T + numpy_of(inner_dense.bias) + x)
    main = inner_out @ numpy_of(outer_dense.weight).T + numpy_of(outer_dense.bias)
    np.testing.assert_allclose(model(torch.tensor(x)).detach().numpy(), main + x, rtol=1e-12)


def test_weights_are_drawn_in_order_main_path_then_projection() -> None:
    torch.manual_seed(7)
    block = build_model([6], [{"residual": {"layers": [{"dense": {"units": 4}}]}}])[0]
    torch.manual_seed(7)
    main, projection = Dense(units=4), Dense(units=4, use_bias=False)
    main.build((6,))
    projection.build((6,))
    assert torch.equal(block.main[0].weight, main.weight)
    assert torch.equal(block.shortcut.dense.weight, projection.weight)


def test_the_model_sees_the_sublayers_regularizers_and_constraints() -> None:
    block = {"residual": {"layers": [
        {"dense": {"units": 5, "kernel_regularizer": {"l2": {"l2": 0.01}},
                   "kernel_constraint": {"max_norm": {"max_value": 0.5}}}},
        {"residual": {"layers": [{"dense": {"units": 5, "bias_regularizer": {"l1": {"l1": 0.1}},
                                            "bias_initializer": "ones"}}]}},
    ]}}
    model = build_model([3], [block, {"dense": {"units": 2}}])
    first, second = model[0].main[0], model[0].main[1].main[0]
    assert model.has_regularizers and model.has_constraints
    expected = 0.01 * first.weight.square().sum() + 0.1 * second.bias.abs().sum()
    assert torch.allclose(model.regularization_loss(), expected)
    with torch.no_grad():
        first.weight.mul_(10)
    model.apply_constraints()
    norms = first.weight.norm(dim=1)  # each unit's incoming weights (Keras axis 0)
    assert torch.all(norms <= 0.5 + 1e-6) and torch.allclose(norms, torch.full((5,), 0.5))


def test_a_frozen_block_freezes_everything_and_its_batch_norms_infer() -> None:
    block = {"residual": {"layers": [{"dense": {"units": 4}}, "batch_norm"],
                          "activation": "relu"}}
    model = build_model([6], [block, {"dense": {"units": 2}}])
    residual = model[0]
    assert not residual.deterministic_in_training
    residual.trainable = False
    assert not any(p.requires_grad for p in residual.parameters())
    assert residual.deterministic_in_training
    assert model.frozen_prefix_length() == 1
    statistics = {k: v.clone() for k, v in residual.state_dict().items() if "moving" in k}
    assert len(statistics) == 4  # the main path's and the shortcut's batch norms
    x = torch.randn(8, 6) * 3 + 1
    model.train()
    training = residual(x)
    model.eval()
    assert torch.equal(training, residual(x))
    assert all(torch.equal(residual.state_dict()[k], v) for k, v in statistics.items())
    assert [row.trainable for row in summarize(model)] == [False, True]


def test_a_frozen_entry_inside_a_block_stays_frozen() -> None:
    block = {"residual": {"layers": [{"dense": {"units": 6, "trainable": False}},
                                     {"dense": {"units": 6}}]}}
    model = build_model([6], [block])
    frozen, trained = model[0].main
    assert not frozen.trainable and not any(p.requires_grad for p in frozen.parameters())
    assert trained.trainable and all(p.requires_grad for p in trained.parameters())
    assert model[0].trainable


def test_summary_counts_every_sublayer() -> None:
    block = {"residual": {"layers": [{"dense": {"units": 4}}]}}
    model = build_model([6], [block, {"dense": {"units": 2}}])
    # main 6·4 + 4; projection 6·4; its batch norm 4 gamma, 4 beta, 8 statistics.
    assert count_params(model[0]) == (68, 60, 8)
    rows = summarize(model)
    assert (rows[0].name, rows[0].type, rows[0].output_shape, rows[0].params) == (
        "residual", "Residual", (4,), 68)
    text = format_summary(model)
    assert "residual (Residual)" in text and "(None, 4)" in text
    assert "Total params: 78" in text and "Non-trainable params: 8" in text


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    layer_list = [
        {"residual": {"layers": [{"dense": {"units": 8, "activation": "relu",
                                            "kernel_regularizer": "l2"}},
                                 {"dense": {"units": 5, "trainable": False}},
                                 "batch_norm"],
                      "activation": {"leaky_relu": {"negative_slope": 0.1}}}},
        {"residual": {"layers": [{"layer_norm": {}}, {"dense": {"units": 5}}],
                      "shortcut": "projection", "shortcut_batch_norm": False}},
        {"dense": {"units": 3, "activation": "softmax"}},
    ]
    torch.manual_seed(0)
    model = build_model([6], layer_list)
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 6) * 3 + 1)  # moves the batch norms' statistics
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape) * 0.1)
    model[1].trainable = False
    save_model(model, tmp_path / "m")
    torch.manual_seed(99)
    loaded = load_model(tmp_path / "m")
    spec = (tmp_path / "m" / "model.json").read_text()
    assert '"trainable": false' in spec and '"negative_slope": 0.1' in spec
    assert list(loaded.state_dict()) == list(model.state_dict())
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    assert not loaded[0].main[1].weight.requires_grad and loaded[0].main[0].weight.requires_grad
    assert not loaded[1].trainable
    assert torch.equal(loaded.regularization_loss(), model.regularization_loss())
    x = torch.randn(4, 6)
    model.eval()
    loaded.eval()
    assert torch.equal(model(x), loaded(x))


def test_a_block_built_directly_reports_at_its_class() -> None:
    with pytest.raises(UserInputError, match=r"^Residual\.layers\.0\.dense\.units: "):
        Residual(layers=[{"dense": {"units": 0}}])
    block = Residual(layers=[{"batch_norm": {"axis": 2}}])
    with pytest.raises(UserInputError, match=r"^layers\.0\.batch_norm: axis 2 is not"):
        block.build((6,))
    assert "layers=" not in repr(Residual(layers=["relu"]))
