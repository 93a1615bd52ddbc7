"""Activations: values and gradients against NumPy float64 formulas, Keras defaults.

RReLU's random training slopes and PReLU's learned, possibly shared slopes
have their own tests after the elementwise table.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tricklab.errors import UserInputError
from tricklab.nn import activations, build_model, layers
from tricklab.nn.activations import LeakyReLU
from tricklab.nn.base import channels_first, channels_last
from tricklab.nn.layers import Dense
from tricklab.nn.rectifiers import PReLU, RReLU

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
GELU_TANH = math.sqrt(2 / math.pi)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _normal_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(GELU_TANH * (x + 0.044715 * x**3)))


def _gelu_tanh_grad(x: np.ndarray) -> np.ndarray:
    t = np.tanh(GELU_TANH * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * GELU_TANH * (1 + 3 * 0.044715 * x**2)


def _swish_grad(x: np.ndarray) -> np.ndarray:
    return _sigmoid(x) * (1 + x * (1 - _sigmoid(x)))


def _leaky(slope: float):
    return (
        lambda x: np.where(x > 0, x, slope * x),
        lambda x: np.where(x > 0, 1.0, slope),
    )


def _elu(alpha: float):
    return (
        lambda x: np.where(x > 0, x, alpha * np.expm1(x)),
        lambda x: np.where(x > 0, 1.0, alpha * np.exp(x)),
    )


# (registry spec, f, f') written from the papers' formulas; every elementwise entry needs one.
ELEMENTWISE = {
    "linear": ("linear", lambda x: x, np.ones_like),
    "relu": ("relu", lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "leaky_relu": ("leaky_relu", *_leaky(0.3)),
    "leaky_relu(0.1)": ({"leaky_relu": {"negative_slope": 0.1}}, *_leaky(0.1)),
    "elu": ("elu", *_elu(1.0)),
    "elu(0.5)": ({"elu": {"alpha": 0.5}}, *_elu(0.5)),
    "selu": (
        "selu",
        lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)),
        lambda x: SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(x)),
    ),
    "sigmoid": ("sigmoid", _sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x))),
    "tanh": ("tanh", np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "gelu": ("gelu", lambda x: x * _normal_cdf(x), lambda x: _normal_cdf(x) + x * _normal_pdf(x)),
    "gelu(tanh)": ({"gelu": {"approximate": True}}, _gelu_tanh, _gelu_tanh_grad),
    "swish": ("swish", lambda x: x * _sigmoid(x), _swish_grad),
    "silu": ("silu", lambda x: x * _sigmoid(x), _swish_grad),
    # In evaluation RReLU is a leaky ReLU with the mean slope (1/8 + 1/3) / 2 = 11/48.
    "rrelu (eval)": ("rrelu", *_leaky(11 / 48)),
    "rrelu(0.1, 0.3) (eval)": ({"rrelu": {"lower": 0.1, "upper": 0.3}}, *_leaky(0.2)),
    # PReLU's slopes start at 0 (Keras's alpha_initializer="zeros"): a ReLU at first.
    "prelu (initial)": ("prelu", lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "prelu(constant 0.25)": (
        {"prelu": {"alpha_initializer": {"constant": {"value": 0.25}}}},
        *_leaky(0.25),
    ),
}
VECTOR = {"softmax"}

# Even count: 0, where the derivative of the ReLU family is a convention, is left out.
# Ten samples of 100 features, so that layers with per-unit parameters build.
GRID = np.linspace(-6.0, 6.0, 1000).reshape(10, 100)


def _ready(module: torch.nn.Module) -> torch.nn.Module:
    """Build for GRID's samples and switch to evaluation (RReLU's deterministic mode)."""
    module.build((100,))
    return module.double().eval()


def test_every_activation_has_a_reference() -> None:
    covered = {
        spec if isinstance(spec, str) else next(iter(spec)) for spec, *_ in ELEMENTWISE.values()
    }
    assert covered | VECTOR == set(activations.names())


@pytest.mark.parametrize("case", list(ELEMENTWISE))
def test_values_and_gradients_match_numpy(case: str) -> None:
    spec, f, df = ELEMENTWISE[case]
    x = torch.tensor(GRID, requires_grad=True)
    y = _ready(activations.get(spec))(x)
    y.sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), f(GRID), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), df(GRID), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_values_and_gradients_match_numpy(axis: int) -> None:
    rng = np.random.default_rng(0)
    logits, weights = rng.normal(size=(8, 10)) * 3, rng.normal(size=(8, 10))
    exp = np.exp(logits - logits.max(axis=axis, keepdims=True))
    soft = exp / exp.sum(axis=axis, keepdims=True)
    # d/dx Σ w·softmax(x) = s · (w − Σ s·w), the softmax Jacobian-vector product.
    grad = soft * (weights - (soft * weights).sum(axis=axis, keepdims=True))
    x = torch.tensor(logits, requires_grad=True)
    y = activations.get({"softmax": {"axis": axis}})(x)
    (y * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), soft, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", activations.names())
def test_config_round_trips(name: str) -> None:
    module = activations.get(name)
    config = module.get_config()
    assert config == activations.resolve(name)[1]
    assert activations.get({name: config}).get_config() == config
    assert type(module).from_config(config).get_config() == config
    assert activations.get(module) is module


@pytest.mark.parametrize("name", activations.names())
def test_every_activation_is_also_a_layer(name: str) -> None:
    assert layers.info(name).factory is activations.info(name).factory
    module = activations.get(name)
    module.build((5,))
    assert module.compute_output_shape((5,)) == (5,)
    assert module(torch.randn(3, 5)).shape == (3, 5)


@pytest.mark.parametrize("name", activations.names())
def test_every_activation_works_inside_dense_and_activation(name: str) -> None:
    model = build_model(
        [4], [{"dense": {"units": 3, "activation": name}}, {"activation": {"activation": name}}]
    )
    assert model(torch.randn(2, 4)).shape == (2, 3)


def test_keras_defaults() -> None:
    assert LeakyReLU().negative_slope == 0.3
    assert activations.resolve("elu")[1] == {"alpha": 1.0}
    assert activations.resolve("softmax")[1] == {"axis": -1}
    assert activations.resolve("gelu")[1] == {"approximate": False}
    assert activations.resolve("rrelu")[1] == {"lower": 1 / 8, "upper": 1 / 3}
    assert activations.resolve("prelu")[1] == {
        "alpha_initializer": "zeros",
        "alpha_regularizer": None,
        "alpha_constraint": None,
        "shared_axes": None,
    }


def test_output_activations_are_reported_and_skipped_for_logits() -> None:
    x = torch.randn(4, 3)
    for name in ("softmax", "sigmoid"):
        module = activations.get(name)
        assert module.output_activation == name
        assert torch.equal(module.forward_logits(x), x)
    assert activations.get({"softmax": {"axis": 0}}).output_activation is None
    assert activations.get("tanh").output_activation is None


def test_negative_leaky_slope_is_rejected() -> None:
    with pytest.raises(UserInputError, match=r"leaky_relu\.negative_slope"):
        activations.get({"leaky_relu": {"negative_slope": -0.1}}, "model.layers.2")
    with pytest.raises(UserInputError, match=r"LeakyReLU\.negative_slope"):
        LeakyReLU(negative_slope=-0.1)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"lower": 0.4, "upper": 0.2}, r"^model\.layers\.2\.rrelu\.upper: .*not be below lower"),
        ({"lower": -0.1}, r"^model\.layers\.2\.rrelu\.lower: "),
        ({"upper": 1.5}, r"^model\.layers\.2\.rrelu\.upper: "),
    ],
)
def test_rrelu_rejects_bad_slopes(config: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        build_model([4], ["flatten", {"dense": {"units": 3}}, {"rrelu": config}])
    with pytest.raises(UserInputError, match=r"^RReLU\."):
        RReLU(**config)


def test_rrelu_draws_one_slope_per_element_in_training() -> None:
    lower, upper = 0.1, 0.4
    module = RReLU(lower=lower, upper=upper).double().train()
    torch.manual_seed(0)
    x = -torch.rand(400, 500, dtype=torch.float64) - 0.1
    x.requires_grad_(True)
    y = module(x)
    weights = torch.randn_like(x)
    (y * weights).sum().backward()
    slopes = (y / x).detach()
    assert slopes.min().item() >= lower and slopes.max().item() <= upper
    # U(lower, upper): mean (l + u) / 2, variance (u − l)² / 12, one draw per element.
    assert slopes.mean().item() == pytest.approx((lower + upper) / 2, abs=2e-3)
    assert slopes.var().item() == pytest.approx((upper - lower) ** 2 / 12, rel=0.02)
    # The gradient of each element is the slope it drew.
    np.testing.assert_allclose(x.grad.numpy(), (slopes * weights).numpy(), rtol=1e-12)
    assert not torch.equal(module(x), module(x))
    positive = torch.rand(10, 5, dtype=torch.float64)
    assert torch.equal(module(positive), positive)
    module.eval()
    assert torch.equal(module(x), x * (lower + upper) / 2)


def _prelu_reference(x: np.ndarray, alpha: np.ndarray, upstream: np.ndarray, summed: tuple):
    """PReLU's output and gradients wrt x and alpha, from max(x, 0) + alpha · min(x, 0)."""
    y = np.maximum(x, 0) + alpha * np.minimum(x, 0)
    dx = upstream * np.where(x > 0, 1.0, alpha)
    dalpha = (np.minimum(x, 0) * upstream).sum(axis=summed, keepdims=True)[0]
    return y, dx, dalpha


@pytest.mark.parametrize(
    ("sample", "shared_axes", "alpha_shape", "summed"),
    [
        ((6,), None, (6,), (0,)),
        ((6,), [1], (1,), (0, 1)),
        ((3, 4), None, (3, 4), (0,)),
        ((3, 4), [1], (1, 4), (0, 1)),
        ((3, 4), 2, (3, 1), (0, 2)),
        ((2, 3, 4), [1, 2], (1, 1, 4), (0, 1, 2)),
    ],
)
def test_prelu_values_and_gradients_per_unit_and_shared(
    sample, shared_axes, alpha_shape, summed
) -> None:
    # Images, `(h, w, c)`, are held channels-first inside a model, and so are their slopes.
    image = len(sample) == 3
    module = PReLU(shared_axes=shared_axes)
    module.build(sample)
    module.double()
    held_alpha = channels_last(module.alpha[None])[0] if image else module.alpha
    assert held_alpha.shape == alpha_shape
    assert torch.equal(held_alpha, torch.zeros(alpha_shape, dtype=torch.float64))
    rng = np.random.default_rng(0)
    alpha = rng.uniform(0.05, 0.5, size=alpha_shape)
    x_np, upstream = rng.normal(size=(5, *sample)), rng.normal(size=(5, *sample))
    with torch.no_grad():
        keras_alpha = torch.tensor(alpha)
        module.alpha.copy_(channels_first(keras_alpha[None])[0] if image else keras_alpha)
    x = torch.tensor(x_np, requires_grad=True)
    y = module(channels_first(x) if image else x)
    y = channels_last(y) if image else y
    (y * torch.tensor(upstream)).sum().backward()
    expected_y, expected_dx, expected_dalpha = _prelu_reference(x_np, alpha, upstream, summed)
    np.testing.assert_allclose(y.detach().numpy(), expected_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), expected_dx, rtol=1e-12, atol=1e-12)
    alpha_grad = channels_last(module.alpha.grad[None])[0] if image else module.alpha.grad
    np.testing.assert_allclose(alpha_grad.numpy(), expected_dalpha, rtol=1e-10, atol=1e-12)


def test_prelu_learns_one_slope_per_unit_inside_dense() -> None:
    torch.manual_seed(0)
    model = build_model(
        [5], [{"dense": {"units": 4, "activation": "prelu"}}, {"dense": {"units": 1}}]
    )
    dense = model[0]
    assert isinstance(dense, Dense)
    assert [name for name, _ in model.named_parameters()][:3] == [
        "0.weight",
        "0.bias",
        "0.activation.alpha",
    ]
    assert sum(p.numel() for p in dense.parameters()) == 5 * 4 + 4 + 4
    x, target = torch.randn(64, 5), torch.randn(64, 1)
    for _ in range(5):
        model.zero_grad()
        torch.nn.functional.mse_loss(model(x), target).backward()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter -= 0.1 * parameter.grad
    alpha = dense.activation.alpha.detach()
    assert alpha.shape == (4,)
    assert torch.unique(alpha).numel() == 4


def test_prelu_rejects_a_shared_axis_beyond_the_sample() -> None:
    with pytest.raises(UserInputError, match=r"^model\.layers\.1\.prelu: shared_axes: axis 3"):
        build_model([4], [{"dense": {"units": 3}}, {"prelu": {"shared_axes": [3]}}])
    with pytest.raises(UserInputError, match=r"^model\.layers\.1\.prelu\.shared_axes"):
        build_model([4], [{"dense": {"units": 3}}, {"prelu": {"shared_axes": [0]}}])
