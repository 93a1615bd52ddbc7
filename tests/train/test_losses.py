import numpy as np
import pytest
import torch

from tricklab.errors import UserInputError
from tricklab.train.losses import EPSILON, Loss, losses

CLASSIFIERS = ["sparse_categorical_crossentropy", "categorical_crossentropy",
               "binary_crossentropy"]

KERAS_DEFAULTS = {
    "sparse_categorical_crossentropy": {"from_logits": False},
    "categorical_crossentropy": {"from_logits": False, "label_smoothing": 0.0},
    "binary_crossentropy": {"from_logits": False},
    "mse": {},
    "mae": {},
    "huber": {"delta": 1.0},
}
"""Every loss's configuration as Keras 3 defaults it (keras.losses)."""


def _softmax(z: np.ndarray) -> np.ndarray:
    shifted = np.exp(z - z.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _reference(name: str, output: np.ndarray, target: np.ndarray, from_logits: bool = False,
               label_smoothing: float = 0.0, delta: float = 1.0) -> float:
    """Keras's formulas in float64 NumPy."""
    if name == "sparse_categorical_crossentropy":
        p = _softmax(output) if from_logits else output
        p = np.clip(p / p.sum(axis=1, keepdims=True), EPSILON, 1 - EPSILON)
        return float(-np.log(p[np.arange(len(target)), target]).mean())
    if name == "categorical_crossentropy":
        classes = output.shape[1]
        if target.ndim == 1:
            target = np.eye(classes)[target]
        target = target * (1 - label_smoothing) + label_smoothing / classes
        if from_logits:  # log-softmax, exactly
            shifted = output - output.max(axis=1, keepdims=True)
            log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        else:
            log_p = np.log(np.clip(output / output.sum(axis=1, keepdims=True),
                                   EPSILON, 1 - EPSILON))
        return float(-(target * log_p).sum(axis=1).mean())
    if name == "binary_crossentropy":
        p = 1 / (1 + np.exp(-output)) if from_logits else output
        p = np.clip(p.reshape(target.shape), EPSILON, 1 - EPSILON)
        return float(-(target * np.log(p) + (1 - target) * np.log(1 - p)).mean())
    error = output.reshape(target.shape) - target
    if name == "mse":
        return float((error**2).mean())
    if name == "mae":
        return float(np.abs(error).mean())
    assert name == "huber"
    small = np.abs(error) <= delta
    return float(np.where(small, 0.5 * error**2, delta * (np.abs(error) - 0.5 * delta)).mean())


def _batch(name: str, generator: torch.Generator):
    """Logits, the model's output from them, and targets, for one loss."""
    if name == "sparse_categorical_crossentropy":
        logits = torch.randn(16, 5, generator=generator, dtype=torch.float64)
        return logits, torch.softmax(logits, -1), torch.randint(0, 5, (16,), generator=generator)
    if name == "categorical_crossentropy":  # probability targets, the general case
        logits = torch.randn(16, 5, generator=generator, dtype=torch.float64)
        target = torch.softmax(2 * torch.randn(16, 5, generator=generator, dtype=torch.float64),
                               -1)
        return logits, torch.softmax(logits, -1), target
    if name == "binary_crossentropy":
        logits = torch.randn(16, 1, generator=generator, dtype=torch.float64)
        return logits, torch.sigmoid(logits), torch.randint(0, 2, (16,), generator=generator)
    # Errors of both sizes, so huber is tested on both sides of delta.
    output = 2 * torch.randn(16, 3, generator=generator, dtype=torch.float64)
    return output, output, torch.randn(16, 3, generator=generator, dtype=torch.float64)


def _numpy_target(name: str, target: torch.Tensor) -> np.ndarray:
    return target.numpy() if name.startswith("sparse") else target.numpy().astype(np.float64)


@pytest.mark.parametrize("name", losses.names())
def test_loss_matches_keras_formula(name):
    logits, output, target = _batch(name, torch.Generator().manual_seed(1))
    loss = losses.get(name)
    expected = _reference(name, output.numpy(), _numpy_target(name, target))
    assert float(loss(output, target)) == pytest.approx(expected, rel=1e-10)
    # The fused path gives the same value from the logits.
    assert float(loss.on_logits(logits, target)) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("name", losses.names())
def test_loss_defaults_are_kerass(name):
    assert losses.get(name).get_config() == KERAS_DEFAULTS[name]


@pytest.mark.parametrize("name", losses.names())
def test_loss_config_round_trip(name):
    loss = losses.get(name)
    rebuilt = type(loss).from_config(loss.get_config())
    assert rebuilt.get_config() == loss.get_config()
    assert isinstance(rebuilt, Loss)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_from_logits_matches_formula(name):
    logits, _, target = _batch(name, torch.Generator().manual_seed(2))
    loss = losses.get({name: {"from_logits": True}})
    expected = _reference(name, logits.numpy(), _numpy_target(name, target), from_logits=True)
    assert float(loss(logits, target)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_ce_takes_class_indices_one_hot_rows_and_label_smoothing(smoothing,
                                                                           from_logits):
    """Class indices are one-hot encoded; smoothing is Keras's y (1 - ls) + ls / C on both paths."""
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(32, 7, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 7, (32,), generator=generator)
    loss = losses.get({"categorical_crossentropy": {"label_smoothing": smoothing,
                                                    "from_logits": from_logits}})
    output = logits if from_logits else torch.softmax(logits, -1)
    expected = _reference("categorical_crossentropy", output.numpy(), labels.numpy(),
                          from_logits=from_logits, label_smoothing=smoothing)
    one_hot = torch.nn.functional.one_hot(labels, 7).double()
    assert float(loss(output, labels)) == pytest.approx(expected, rel=1e-10)
    assert float(loss(output, labels.int())) == pytest.approx(expected, rel=1e-10)
    assert float(loss(output, one_hot)) == pytest.approx(expected, rel=1e-10)
    assert float(loss.on_logits(logits, labels)) == pytest.approx(expected, rel=1e-8)
    assert float(loss.on_logits(logits, one_hot)) == pytest.approx(expected, rel=1e-8)
    if smoothing:  # the smoothing is not a no-op
        plain = _reference("categorical_crossentropy", output.numpy(), labels.numpy(),
                           from_logits=from_logits)
        assert abs(expected - plain) > 1e-3


@pytest.mark.parametrize("delta", [0.25, 1.0, 3.0])
def test_huber_is_quadratic_within_delta_and_linear_beyond(delta):
    output = torch.linspace(-5, 5, 41, dtype=torch.float64).reshape(-1, 1)
    target = torch.zeros(41, dtype=torch.float64)
    loss = losses.get({"huber": {"delta": delta}})
    expected = _reference("huber", output.numpy(), target.numpy(), delta=delta)
    assert float(loss(output, target)) == pytest.approx(expected, rel=1e-12)
    # Per value: 0.5 x² inside, delta (|x| - delta / 2) outside.
    one = [float(loss(torch.tensor([[x]], dtype=torch.float64), torch.zeros(1))) for x in
           (delta / 2, -2 * delta)]
    assert one == pytest.approx([0.5 * (delta / 2) ** 2, delta * (2 * delta - delta / 2)])


@pytest.mark.parametrize("name", ["mse", "mae", "huber"])
def test_regression_losses_reshape_targets_and_take_integers(name):
    output = torch.tensor([[0.5], [2.0], [-1.5]], dtype=torch.float64)
    target = torch.tensor([1, 0, 2])  # [N] integer targets against [N, 1] outputs
    expected = _reference(name, output.numpy(), target.numpy().astype(np.float64))
    assert float(losses.get(name)(output, target)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_fused_cross_entropy_is_stable_where_probabilities_saturate(name):
    logits = torch.tensor([[200.0, 0.0, -200.0]], requires_grad=True)
    target = torch.tensor([2])
    loss = losses.get(name)
    fused = loss.on_logits(logits, target)
    assert float(fused.detach()) == pytest.approx(400.0)
    fused.backward()
    assert torch.isfinite(logits.grad).all()
    # Through probabilities Keras clips at 1e-7: the loss saturates at -log(1e-7).
    clipped = loss(torch.softmax(logits.detach(), -1), target)
    assert float(clipped) == pytest.approx(-np.log(EPSILON), rel=1e-6)


@pytest.mark.parametrize(("spec", "field"), [
    ({"categorical_crossentropy": {"label_smoothing": 1.5}}, "label_smoothing"),
    ({"categorical_crossentropy": {"label_smoothing": -0.1}}, "label_smoothing"),
    ({"huber": {"delta": 0.0}}, "delta"),
    ({"huber": {"delta": float("inf")}}, "delta"),
])
def test_out_of_range_options_are_one_line_naming_the_field(spec, field):
    with pytest.raises(UserInputError) as raised:
        losses.get(spec, "train.loss")
    name = next(iter(spec))
    assert str(raised.value).startswith(f"train.loss.{name}.{field}: ")
    assert "\n" not in str(raised.value)


def test_unknown_loss_suggests_the_closest():
    with pytest.raises(UserInputError, match="did you mean 'binary_crossentropy'"):
        losses.get("binary_crossentropi", "train.loss")
