"""Layer normalization: Keras defaults, a NumPy float64 reference over any axes, parameters
in Keras's shape for initializers and constraints, regularizers, freezing, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tricklab.errors import UserInputError
from tricklab.nn import build_model, initializers, layers
from tricklab.nn.normalization import LayerNormalization

RANDOM = {"random_normal": {"mean": 1.0, "stddev": 0.5}}


def keras_axes(axis, rank: int) -> list[int]:
    """Keras's normalized axes of a batch of rank `rank`, non-negative and increasing."""
    return sorted(a % rank for a in ([axis] if isinstance(axis, int) else axis))


def reference(x: np.ndarray, axis, gamma: np.ndarray, beta: np.ndarray, epsilon: float):
    """Keras's LayerNormalization on a channels-last batch, in float64."""
    axes = tuple(keras_axes(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    broadcast = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    normalized = (x - mean) / np.sqrt(variance + epsilon)
    return gamma.reshape(broadcast) * normalized + beta.reshape(broadcast)


def keras_parameters(shape: tuple[int, ...], axis, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """gamma then beta as Keras draws them from `RANDOM` after `torch.manual_seed(seed)`."""
    keras_shape = [shape[a - 1] for a in keras_axes(axis, len(shape) + 1)]
    torch.manual_seed(seed)
    draw = initializers.get(RANDOM)
    gamma = draw(torch.empty(keras_shape, dtype=torch.float64))
    beta = draw(torch.empty(keras_shape, dtype=torch.float64))
    return gamma.numpy(), beta.numpy()


def test_keras_defaults() -> None:
    _, config = layers.resolve("layer_norm")
    assert config == {
        "axis": -1,
        "epsilon": 1e-3,
        "center": True,
        "scale": True,
        "beta_initializer": "zeros",
        "gamma_initializer": "ones",
        "beta_regularizer": None,
        "gamma_regularizer": None,
        "beta_constraint": None,
        "gamma_constraint": None,
    }


@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((5,), -1),
        ((4, 5), -1),
        ((4, 5), [1, 2]),
        ((4, 5), 1),  # not the trailing axis
        ((3, 4, 5), -1),  # an image's channels
        ((3, 4, 5), [1, 2]),  # an image's height and width
        ((3, 4, 5), [1, 2, 3]),
        ((3, 4, 5), [-3, -1]),  # height and channels
        ((2, 3, 4, 5), [2, 4]),
    ],
)
def test_matches_a_numpy_float64_reference(shape, axis) -> None:
    epsilon = 0.01
    config = {"axis": axis, "epsilon": epsilon, "gamma_initializer": RANDOM,
              "beta_initializer": RANDOM}
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(3)
        model = build_model(shape, [{"layer_norm": config}])
    finally:
        torch.set_default_dtype(torch.float32)
    # The initializers saw Keras's shape, in Keras's order: gamma first, then beta.
    gamma, beta = keras_parameters(shape, axis, seed=3)
    rng = np.random.default_rng(0)
    # Per-sample scales and offsets, and a tiny-variance sample, make epsilon and the
    # per-sample statistics visible.
    x = rng.normal(size=(6, *shape)) * rng.uniform(0.01, 3, size=(6,) + (1,) * len(shape)) + 2
    expected = reference(x, axis, gamma, beta, epsilon)
    for mode in (model.train, model.eval):
        mode()
        out = model(torch.tensor(x)).detach().numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    # Each sample alone gives the same result: no batch statistics.
    model.train()
    alone = model(torch.tensor(x[2:3])).detach().numpy()
    np.testing.assert_allclose(alone, expected[2:3], rtol=1e-10, atol=1e-12)


def test_without_center_and_scale_there_are_no_parameters() -> None:
    layer = LayerNormalization(axis=[1, 2], center=False, scale=False,
                               beta_regularizer="l2", gamma_constraint="non_neg")
    layer.build((3, 4))
    assert list(layer.parameters()) == []
    assert layer.weight_regularizers() == {} and layer.weight_constraints() == {}
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    mean = x.mean(dim=(1, 2), keepdim=True)
    variance = x.var(dim=(1, 2), keepdim=True, unbiased=False)
    assert torch.allclose(layer(x), (x - mean) / torch.sqrt(variance + 1e-3))


def test_parameters_are_held_channels_first_for_images() -> None:
    layer = LayerNormalization(axis=[1, 2, 3])
    layer.build((3, 4, 5))
    assert layer.gamma.shape == (5, 3, 4) and layer.beta.shape == (5, 3, 4)
    channels = LayerNormalization()
    channels.build((3, 4, 5))
    assert channels.gamma.shape == (5,)


def test_regularizers_and_constraints_reach_the_model() -> None:
    shape, axis = (3, 4, 2), [1, 2, 3]
    config = {"axis": axis, "gamma_initializer": RANDOM, "beta_initializer": RANDOM,
              "gamma_regularizer": {"l2": {"l2": 0.1}}, "beta_regularizer": {"l1": {"l1": 0.2}},
              "gamma_constraint": {"max_norm": {"max_value": 1.0, "axis": 0}},
              "beta_constraint": "non_neg"}
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(5)
        model = build_model(shape, [{"layer_norm": config}])
    finally:
        torch.set_default_dtype(torch.float32)
    gamma, beta = keras_parameters(shape, axis, seed=5)
    penalty = 0.1 * np.sum(gamma**2) + 0.2 * np.sum(np.abs(beta))
    assert model.regularization_loss().item() == pytest.approx(penalty, rel=1e-12)
    model.apply_constraints()
    # Keras's max_norm with axis 0 on gamma (h, w, c): each (w, c) column over h.
    norms = np.sqrt(np.sum(gamma**2, axis=0, keepdims=True))
    keras_gamma = gamma * np.clip(norms, 0, 1.0) / (1e-7 + norms)
    held_gamma = model[0].gamma.detach().numpy()
    np.testing.assert_allclose(held_gamma, np.moveaxis(keras_gamma, -1, 0), rtol=1e-12)
    held_beta = model[0].beta.detach().numpy()
    np.testing.assert_array_equal(held_beta, np.moveaxis(np.maximum(beta, 0), -1, 0))


def test_frozen_layer_norm_keeps_its_parameters_and_is_deterministic() -> None:
    model = build_model([4], [{"layer_norm": {"trainable": False}}])
    assert not any(p.requires_grad for p in model.parameters())
    assert model[0].deterministic_in_training
    assert LayerNormalization().deterministic_in_training


@pytest.mark.parametrize(
    ("axis", "message"),
    [(0, r"axis 0 is not one or more distinct feature axes"),
     (3, r"axis 3 is not"), (-4, r"axis -4 is not"), ([1, -2], r"axis \[1, -2\] is not"),
     ([], r"axis \[\] is not")],
)
def test_bad_axes_are_reported_at_the_layer(axis, message) -> None:
    with pytest.raises(UserInputError, match=rf"^model\.layers\.0\.layer_norm: {message}"):
        build_model([4, 5], [{"layer_norm": {"axis": axis}}])


def test_bad_arguments_are_named() -> None:
    with pytest.raises(UserInputError, match=r"^model\.layers\.0\.layer_norm\.epsilon: "):
        build_model([4], [{"layer_norm": {"epsilon": 0}}])
    with pytest.raises(UserInputError, match=r"gamma_initializer: unknown initializer 'one'"):
        build_model([4], [{"layer_norm": {"gamma_initializer": "one"}}])
