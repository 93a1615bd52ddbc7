"""Layers: Keras build/shape contract, Dense, Keras batch normalization, config.

The dropout family has its own tests in `test_dropout.py`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tricklab.errors import UserInputError
from tricklab.nn import layers
from tricklab.nn.base import held_shape
from tricklab.nn.layers import Activation, Dense
from tricklab.nn.normalization import BatchNormalization

# Arguments and a per-sample input shape for each layer that needs them; every
# other layer is built from `{}` for samples of shape `(6,)`. The registry-wide
# tests here, in `test_model.py` and in `transfer/test_persistence.py` use these.
EXAMPLES: dict[str, tuple[dict, tuple[int, ...]]] = {
    "dense": ({"units": 3}, (6,)),
    "dropout": ({"rate": 0.5}, (6,)),
    "alpha_dropout": ({"rate": 0.5}, (6,)),
    "mc_dropout": ({"rate": 0.5}, (6,)),
    "mc_alpha_dropout": ({"rate": 0.5}, (6,)),
    "activation": ({"activation": "relu"}, (6,)),
    "conv2d": ({"filters": 4, "kernel_size": 3}, (8, 8, 3)),
    "separable_conv2d": ({"filters": 4, "kernel_size": 3}, (8, 8, 3)),
    "conv2d_transpose": ({"filters": 4, "kernel_size": 3}, (8, 8, 3)),
    "max_pool2d": ({}, (8, 8, 3)),
    "avg_pool2d": ({}, (8, 8, 3)),
    "global_avg_pool2d": ({}, (8, 8, 3)),
    "reshape": ({"target_shape": [3, -1]}, (6,)),
    # A projection shortcut with batch norm, and a batch norm on the main path.
    "residual": (
        {"layers": [{"dense": {"units": 4, "activation": "relu"}}, "batch_norm"],
         "activation": "relu"},
        (6,),
    ),
    "embedding": ({"input_dim": 10, "output_dim": 4}, (5,)),
    "simple_rnn": ({"units": 4}, (5, 6)),
    "lstm": ({"units": 4, "dropout": 0.25, "return_sequences": True}, (5, 6)),
    "gru": ({"units": 4}, (5, 6)),
}


def example(name: str) -> tuple[dict, tuple[int, ...]]:
    """The example arguments and per-sample input shape of layer `name`."""
    return EXAMPLES.get(name, ({}, (6,)))


def example_batch(name: str, size: int, held: bool = True) -> torch.Tensor:
    """A random batch of `size` inputs for layer `name`: token ids for an embedding, else normal.

    Args:
        name: The layer.
        size: Number of samples.
        held: Images channels-first, as a layer gets them inside a model
            (`False`: channels-last, as a model gets them). Defaults to `True`.
    """
    config, shape = example(name)
    if name == "embedding":
        return torch.randint(config["input_dim"], (size, *shape))
    return torch.randn(size, *(held_shape(shape) if held else shape))


def built(layer, input_shape):
    layer.build(tuple(input_shape))
    return layer


@pytest.mark.parametrize("name", layers.names())
def test_every_layer_builds_runs_and_round_trips_its_config(name: str) -> None:
    arguments, shape = example(name)
    _, config = layers.resolve({name: arguments}, "model.layers.0")
    layer = layers.create(name, config)
    assert layer.get_config() == config
    assert layers.get({name: layer.get_config()}).get_config() == config
    assert type(layer).from_config(config).get_config() == config
    built(layer, shape)
    assert layer.built
    out = layer(example_batch(name, 4))
    assert tuple(out.shape[1:]) == held_shape(layer.compute_output_shape(shape))


def test_dense_parameters_in_pytorch_layout() -> None:
    dense = built(Dense(units=7), (5,))
    assert dense.weight.shape == (7, 5) and dense.bias.shape == (7,)
    assert torch.equal(dense.bias, torch.zeros(7))
    no_bias = built(Dense(units=7, use_bias=False), (5,))
    assert no_bias.bias is None
    assert [name for name, _ in no_bias.named_parameters()] == ["weight"]


def test_dense_applies_to_the_last_axis() -> None:
    dense = built(Dense(units=7, activation="tanh"), (3, 5))
    assert dense.compute_output_shape((3, 5)) == (3, 7)
    x = torch.randn(2, 3, 5)
    assert torch.allclose(dense(x), torch.tanh(x @ dense.weight.T + dense.bias))


def test_dense_kernel_initializer_sees_keras_fans() -> None:
    torch.manual_seed(0)
    dense = built(Dense(units=300, kernel_initializer="lecun_uniform"), (784,))
    assert dense.weight.abs().max().item() <= math.sqrt(3 / 784)
    assert dense.weight.std().item() == pytest.approx(math.sqrt(1 / 784), rel=0.02)
    default = built(Dense(units=300), (784,))
    assert default.weight.abs().max().item() <= math.sqrt(6 / (784 + 300))


def test_dense_keras_defaults() -> None:
    _, config = layers.resolve({"dense": {"units": 3}})
    assert config == {
        "units": 3,
        "activation": None,
        "use_bias": True,
        "kernel_initializer": "glorot_uniform",
        "bias_initializer": "zeros",
        "kernel_regularizer": None,
        "bias_regularizer": None,
        "kernel_constraint": None,
        "bias_constraint": None,
    }
    plain = built(Dense(units=3), (4,))
    assert plain.weight_regularizers() == {} and plain.weight_constraints() == {}


def test_dense_rejects_bad_arguments() -> None:
    with pytest.raises(UserInputError, match=r"^Dense\.units: "):
        Dense(units=0)
    with pytest.raises(UserInputError, match=r"^Dense\.kernel_initializer: .*did you mean"):
        Dense(units=3, kernel_initializer="he_norml")


def test_batch_norm_keras_defaults() -> None:
    _, config = layers.resolve("batch_norm")
    assert config == {"axis": -1, "momentum": 0.99, "epsilon": 1e-3, "center": True, "scale": True}


def test_batch_norm_follows_the_keras_formulas() -> None:
    momentum, epsilon = 0.9, 1e-3
    layer = built(BatchNormalization(momentum=momentum), (4,)).double()
    with torch.no_grad():
        layer.gamma.copy_(torch.tensor([1.0, 2.0, 0.5, 1.5]))
        layer.beta.copy_(torch.tensor([0.0, -1.0, 0.3, 2.0]))
    gamma, beta = layer.gamma.detach().numpy(), layer.beta.detach().numpy()
    moving_mean, moving_var = np.zeros(4), np.ones(4)
    rng = np.random.default_rng(0)
    layer.train()
    for _ in range(5):
        # A small batch (5) and a tiny-variance feature make the biased variance and
        # epsilon visible.
        x = rng.normal(size=(5, 4)) * np.array([1.0, 3.0, 0.01, 0.5]) + 2.0
        mean, var = x.mean(axis=0), x.var(axis=0)
        expected = gamma * (x - mean) / np.sqrt(var + epsilon) + beta
        np.testing.assert_allclose(layer(torch.tensor(x)).detach().numpy(), expected, rtol=1e-9)
        moving_mean = momentum * moving_mean + (1 - momentum) * mean
        moving_var = momentum * moving_var + (1 - momentum) * var
        np.testing.assert_allclose(layer.moving_mean.numpy(), moving_mean, rtol=1e-12)
        np.testing.assert_allclose(layer.moving_variance.numpy(), moving_var, rtol=1e-12)
    layer.eval()
    x = rng.normal(size=(3, 4))
    expected = gamma * (x - moving_mean) / np.sqrt(moving_var + epsilon) + beta
    np.testing.assert_allclose(layer(torch.tensor(x)).detach().numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(layer.moving_mean.numpy(), moving_mean, rtol=1e-12)


def test_batch_norm_on_another_feature_axis() -> None:
    layer = built(BatchNormalization(axis=1), (3, 5)).double()
    assert layer.moving_mean.shape == (3,)
    x = np.random.default_rng(1).normal(size=(4, 3, 5))
    mean, var = x.mean(axis=(0, 2), keepdims=True), x.var(axis=(0, 2), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(layer(torch.tensor(x)).detach().numpy(), expected, rtol=1e-9)
    with pytest.raises(UserInputError, match="axis 3"):
        built(BatchNormalization(axis=3), (3, 5))


def test_batch_norm_without_center_and_scale_and_frozen() -> None:
    layer = built(BatchNormalization(center=False, scale=False), (4,))
    assert list(layer.parameters()) == []
    assert sorted(name for name, _ in layer.named_buffers()) == ["moving_mean", "moving_variance"]
    frozen = built(BatchNormalization(), (4,))
    frozen.trainable = False
    assert not any(p.requires_grad for p in frozen.parameters())
    frozen.train()
    x = torch.randn(8, 4) * 5 + 3
    # A frozen Keras BN layer runs in inference mode: moving statistics, no update.
    assert torch.allclose(frozen(x), x / math.sqrt(1 + 1e-3))
    assert torch.equal(frozen.moving_mean, torch.zeros(4))


def test_activation_layer_wraps_the_registry() -> None:
    layer = built(Activation("leaky_relu"), (4,))
    x = torch.randn(3, 4)
    assert torch.equal(layer(x), torch.nn.functional.leaky_relu(x, 0.3))
    assert layer.output_activation is None
    softmax = Activation({"softmax": {}})
    assert softmax.output_activation == "softmax"
    assert torch.equal(softmax.forward_logits(x), x)


def test_trainable_flag_freezes_parameters() -> None:
    dense = built(Dense(units=3), (2,))
    dense.trainable = False
    assert not dense.trainable
    assert not any(p.requires_grad for p in dense.parameters())
    dense.trainable = True
    assert all(p.requires_grad for p in dense.parameters())
