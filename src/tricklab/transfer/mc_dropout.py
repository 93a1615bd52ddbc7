"""Monte Carlo dropout predictions: average many stochastic passes of a trained model.

Gal & Ghahramani (2016) show that a network trained with dropout approximates
a Bayesian model whose predictive distribution is sampled by keeping dropout
on at inference: the mean of the stochastic predictions is usually better
calibrated than one deterministic pass, and their spread and entropy measure
how unsure the model is. This is what the book's `MCDropout` layer and its
`np.stack([model(X, training=True) for sample in range(100)]).mean(axis=0)`
compute; `predict` does it for any model with dropout layers, without
retraining and without switching batch normalization to batch statistics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tricklab.nn.dropout import AlphaDropout, Dropout

DROPOUT_MODULES: tuple[type[nn.Module], ...] = (
    Dropout,
    AlphaDropout,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
"""The dropout family `predict` switches on; subclasses (e.g. `MCDropout`) count too."""

_PLAIN = "no final_activation attribute"
_VALUES = "values, not probabilities"

PROBABILITY_TOLERANCE = 1e-4
"""How far float32 outputs may stray from [0, 1], or their rows' sums from 1, and still count."""


@dataclass
class Prediction:
    """What `predict` returns; every tensor is float64 on the CPU.

    Args:
        mean: Mean probabilities over the passes, `[N, classes]`, or `[N, 1]` for a
            sigmoid model (the probability of class 1).
        std: Population standard deviation of the probabilities over the passes,
            same shape as `mean`; all zeros for a single pass.
        entropy: Predictive entropy of `mean` in nats, `[N]`; `None` for values
            (`outputs="values"`).
        samples: Number of passes averaged.
    """

    mean: torch.Tensor
    std: torch.Tensor
    entropy: torch.Tensor | None
    samples: int


def predict(
    model: nn.Module,
    x: torch.Tensor,
    mc_samples: int | None = None,
    batch_size: int = 1024,
    seed: int | None = None,
    outputs: Literal["probabilities", "values"] = "probabilities",
) -> Prediction:
    """Predict class probabilities with Monte Carlo dropout (Gal & Ghahramani 2016).

    The model runs in evaluation mode, so batch normalization keeps its moving
    statistics, while every dropout module (tricklab's `dropout`,
    `alpha_dropout`, `mc_dropout`, `mc_alpha_dropout` and PyTorch's dropout
    modules) is switched to training mode, as Keras's
    `MCDropout.call(inputs, training=True)` does. For `T = mc_samples` such
    stochastic passes giving probabilities `p_t`:

        p̄ = (1/T) Σ_t p_t,    std = sqrt((1/T) Σ_t (p_t − p̄)²),    H = −Σ_c p̄_c log p̄_c

    For a single sigmoid output `p̄` is the probability of class 1 and `H` is
    the binary entropy `−p̄ log p̄ − (1 − p̄) log(1 − p̄)`. Mean and variance
    are accumulated in float64 batch by batch (Welford's update), never
    storing the T passes. Every module's mode is restored afterwards, also on error.

    With `mc_samples` of `None` or 1 the result is one deterministic pass with
    every dropout module, the Monte Carlo ones included, acting as the
    identity (what inverted dropout computes in evaluation); `std` is 0.

    The outputs must be probabilities. A tricklab model must end in softmax or
    sigmoid (its `final_activation`). A module without a `final_activation`
    attribute is taken to output probabilities: one column is the probability
    of class 1, several columns a distribution over classes; outputs that are
    not (outside [0, 1], or rows not summing to 1) raise `ValueError`.

    Keras equivalent: `np.stack([model(X, training=True) for _ in range(T)]).mean(0)`
    with `MCDropout` layers. PyTorch: `model.eval()`, then `m.train()` for each
    dropout module, and a loop of forward passes under `torch.no_grad()`.

    Args:
        model: The trained model, e.g. from `load_model`.
        x: Inputs, `[N, *input_shape]`; batches are moved to the model's device.
        mc_samples: Number of stochastic passes T, at least 1. Defaults to `None`
            (one deterministic pass).
        batch_size: Samples per forward pass. Defaults to `1024`.
        seed: Seed of the dropout masks, drawn inside `torch.random.fork_rng` so
            the global RNG state is left as it was; the masks also depend on
            `batch_size`. Defaults to `None` (draw from the global RNG).
        outputs: `probabilities` (a classifier, checked as above) or `values` (a
            regression: the outputs' mean and deviation over the passes, any
            final activation, no entropy). Defaults to `"probabilities"`.

    Returns:
        The mean, standard deviation and entropy of the predictions.

    Raises:
        ValueError: If `x` is empty, `mc_samples` or `batch_size` is below 1, a
            tricklab model does not end in softmax or sigmoid, a sigmoid model has
            more than one output, or a plain module's outputs are not probabilities.

    Reference:
        Gal & Ghahramani (2016), "Dropout as a Bayesian Approximation: Representing
        Model Uncertainty in Deep Learning", ICML. Géron, Hands-On Machine Learning
        (3rd ed.), ch. 11, "Monte Carlo (MC) Dropout" and its `MCDropout` class.
    """
    samples = 1 if mc_samples is None else mc_samples
    if samples < 1:
        raise ValueError(f"mc_samples must be at least 1, got {mc_samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if x.shape[0] == 0:
        raise ValueError("predict needs at least one sample; x is empty")
    activation = getattr(model, "final_activation", _PLAIN)
    values = outputs == "values"
    if values:
        activation = _VALUES
    elif activation not in ("softmax", "sigmoid", _PLAIN):
        raise ValueError(
            f"predict needs probabilities: the model's final activation is {activation!r}; "
            "end it in a softmax or sigmoid layer"
        )
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else x.device
    means, deviations = [], []
    # Checked once at the end: reading a flag per pass would wait on the device each time.
    invalid = torch.zeros((), dtype=torch.bool, device=device)
    with _prediction_modes(model, stochastic=samples > 1), _seeded(seed, device), torch.no_grad():
        for begin in range(0, x.shape[0], batch_size):
            batch = x[begin : begin + batch_size].to(device)
            mean = m2 = None
            for count in range(1, samples + 1):
                probabilities = model(batch).to(torch.float64)
                if activation == _PLAIN:
                    invalid |= _not_probabilities(probabilities)
                if mean is None:
                    mean, m2 = probabilities, torch.zeros_like(probabilities)
                    continue
                delta = probabilities - mean
                mean = mean + delta / count
                m2 = m2 + delta * (probabilities - mean)
            means.append(mean)
            deviations.append((m2 / samples).sqrt())
    mean, std = torch.cat(means).cpu(), torch.cat(deviations).cpu()
    if bool(invalid):
        raise ValueError(
            "predict needs probabilities: the model's outputs are not in [0, 1] or their "
            "rows do not sum to 1; end it in a softmax or sigmoid"
        )
    if values:
        return Prediction(mean=mean, std=std, entropy=None, samples=samples)
    if mean.ndim != 2 or (activation == "sigmoid" and mean.shape[1] != 1):
        raise ValueError(
            f"predict needs outputs of shape [N, classes] ([N, 1] for a sigmoid), "
            f"got {list(mean.shape)}"
        )
    return Prediction(mean=mean, std=std, entropy=entropy(mean), samples=samples)


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each row of probabilities, `−Σ_c p_c log p_c` (with 0 log 0 = 0).

    Args:
        probabilities: `[N, classes]` distributions, or `[N, 1]` probabilities of
            class 1 (binary entropy).
    """
    if probabilities.shape[-1] == 1:
        probabilities = torch.cat([probabilities, 1 - probabilities], dim=-1)
    return -torch.special.xlogy(probabilities, probabilities).sum(dim=-1)


def _not_probabilities(output: torch.Tensor) -> torch.Tensor:
    """A 0-d bool tensor: whether `output` is not a batch of probabilities."""
    outside = (output < -PROBABILITY_TOLERANCE) | (output > 1 + PROBABILITY_TOLERANCE)
    bad = outside.any()
    if output.ndim == 2 and output.shape[1] > 1:
        bad = bad | ((output.sum(dim=1) - 1).abs() > PROBABILITY_TOLERANCE).any()
    return bad


def _identity(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
) -> torch.Tensor:
    return inputs[0]


@contextlib.contextmanager
def _prediction_modes(model: nn.Module, stochastic: bool) -> Iterator[None]:
    """Evaluation mode with dropout on (`stochastic`) or bypassed; every mode restored after."""
    modes = {module: module.training for module in model.modules()}
    hooks = []
    try:
        model.eval()
        for module in model.modules():
            if isinstance(module, DROPOUT_MODULES):
                if stochastic:
                    module.train()
                else:
                    # The Monte Carlo layers ignore the mode: only a hook makes them the identity.
                    hooks.append(module.register_forward_hook(_identity))
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.training = training


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Draw from generators seeded with `seed`, restoring the global ones after; no-op for None."""
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, enabled=seed is not None):
        if seed is not None:
            torch.default_generator.manual_seed(seed)
            for index in cuda:
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)
        yield
