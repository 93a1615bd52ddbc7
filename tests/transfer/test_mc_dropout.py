"""Monte Carlo dropout: stochastic passes with batch norm in inference mode, exact statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tricklab.nn import build_model
from tricklab.transfer import Prediction, predict
from tricklab.transfer.mc_dropout import entropy

INPUTS = 8


def network(dropout: str = "mc_dropout", rate: float = 0.3, head: dict | None = None):
    """A small trained-looking model: dense, batch norm with moved statistics, dropout, head."""
    torch.manual_seed(0)
    layers = [
        {"dense": {"units": 16, "activation": "relu"}},
        "batch_norm",
        {dropout: {"rate": rate}},
        head or {"dense": {"units": 3, "activation": "softmax"}},
    ]
    model = build_model([INPUTS], layers)
    model.train()
    with torch.no_grad():
        for _ in range(20):  # moving statistics far from any single batch's
            model(torch.randn(32, INPUTS) * 3 + 1)
    return model


def without_dropout(model: nn.Module) -> nn.Module:
    del model[2]
    return model


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(40, INPUTS, generator=torch.Generator().manual_seed(1))


def eval_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x).double()


def test_mc_predictions_vary_and_each_mean_row_is_a_distribution(x):
    model = network()
    result = predict(model, x, mc_samples=20, seed=0)
    assert isinstance(result, Prediction) and result.samples == 20
    assert result.mean.shape == result.std.shape == (40, 3) and result.entropy.shape == (40,)
    assert result.mean.dtype == torch.float64
    assert result.std.max() > 0.01
    assert (result.mean >= 0).all()
    torch.testing.assert_close(result.mean.sum(dim=1), torch.ones(40, dtype=torch.float64),
                               rtol=0, atol=1e-6)
    assert not torch.equal(predict(model, x, mc_samples=20, seed=1).mean, result.mean)


@pytest.mark.parametrize("mc_samples", [None, 1])
@pytest.mark.parametrize("dropout", ["dropout", "mc_dropout", "mc_alpha_dropout"])
def test_one_pass_is_the_deterministic_eval_output(x, dropout, mc_samples):
    model = network(dropout)
    result = predict(model, x, mc_samples=mc_samples, batch_size=7)
    assert result.samples == 1
    assert torch.equal(result.std, torch.zeros_like(result.std))
    # Dropout, the Monte Carlo kind included, is the identity: as if it were not there.
    torch.testing.assert_close(result.mean, eval_output(without_dropout(model), x),
                               rtol=0, atol=1e-12)


def test_without_dropout_layers_every_pass_is_the_same(x):
    model = without_dropout(network())
    result = predict(model, x, mc_samples=10, seed=0)
    assert torch.equal(result.std, torch.zeros_like(result.std))
    torch.testing.assert_close(result.mean, eval_output(model, x), rtol=0, atol=1e-12)


def test_batch_norm_stays_in_inference_mode(x):
    model = network("dropout", rate=0.0)
    norm = model[1]
    moving = norm.moving_mean.clone(), norm.moving_variance.clone()
    result = predict(model, x, mc_samples=10, seed=0)
    assert torch.equal(norm.moving_mean, moving[0])
    assert torch.equal(norm.moving_variance, moving[1])
    torch.testing.assert_close(result.mean, eval_output(model, x), rtol=0, atol=1e-12)
    # The check can fail: batch statistics would give other outputs.
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(x).double(), result.mean, atol=1e-3)


@pytest.mark.parametrize("training", [True, False])
def test_modes_are_restored(x, training):
    model = network("dropout")
    model.train(training)
    predict(model, x, mc_samples=5, seed=0)
    predict(model, x)
    assert all(module.training is training for module in model.modules())
    assert all(not module._forward_hooks for module in model.modules())


def test_modes_are_restored_after_an_error():
    model = network("dropout")
    model.train()
    with pytest.raises(RuntimeError):
        predict(model, torch.randn(5, INPUTS + 1), mc_samples=5)
    with pytest.raises(RuntimeError):
        predict(model, torch.randn(5, INPUTS + 1))
    assert all(module.training for module in model.modules())
    assert all(not module._forward_hooks for module in model.modules())


def test_same_seed_same_result_and_the_global_rng_is_untouched(x):
    model = network()
    state = torch.get_rng_state()
    first = predict(model, x, mc_samples=8, seed=3)
    second = predict(model, x, mc_samples=8, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.mean, second.mean) and torch.equal(first.std, second.std)
    # Without a seed the masks come from the global generator, which therefore moves.
    predict(model, x, mc_samples=2)
    assert not torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("dropout", ["dropout", "mc_dropout", "alpha_dropout"])
def test_mean_and_std_equal_stacked_explicit_passes(x, dropout):
    model = network(dropout)
    result = predict(model, x, mc_samples=7, seed=11)
    model.eval()
    model[2].train()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(11)
        passes = torch.stack([model(x).double() for _ in range(7)])
    torch.testing.assert_close(result.mean, passes.mean(dim=0), rtol=0, atol=1e-6)
    torch.testing.assert_close(result.std, passes.std(dim=0, correction=0), rtol=0, atol=1e-6)


def test_entropy_is_minus_sum_p_log_p(x):
    result = predict(network(), x, mc_samples=10, seed=0)
    p = result.mean.numpy()
    np.testing.assert_allclose(result.entropy.numpy(), -(p * np.log(p)).sum(axis=1),
                               rtol=0, atol=1e-12)
    # 0 log 0 = 0: a certain prediction has no entropy, not NaN.
    certain = entropy(torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(certain, torch.tensor([0.0, np.log(2)], dtype=torch.float64))


def test_sigmoid_model_gives_one_probability_and_binary_entropy(x):
    model = network(head={"dense": {"units": 1, "activation": "sigmoid"}})
    result = predict(model, x, mc_samples=10, seed=0)
    assert result.mean.shape == result.std.shape == (40, 1)
    assert ((result.mean >= 0) & (result.mean <= 1)).all() and result.std.max() > 0
    p = result.mean.numpy()[:, 0]
    np.testing.assert_allclose(result.entropy.numpy(), -(p * np.log(p) + (1 - p) * np.log(1 - p)),
                               rtol=0, atol=1e-12)


def test_plain_torch_module_with_torch_dropout(x):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(INPUTS, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4),
                          nn.Softmax(dim=1))
    result = predict(model, x, mc_samples=10, seed=0)
    assert result.std.max() > 0.01
    torch.testing.assert_close(result.mean.sum(dim=1), torch.ones(40, dtype=torch.float64),
                               rtol=0, atol=1e-6)
    assert all(module.training for module in model.modules())
    single = predict(model, x)
    torch.testing.assert_close(single.mean, eval_output(model, x), rtol=0, atol=1e-12)


def test_outputs_that_are_not_probabilities_are_refused(x):
    with pytest.raises(ValueError, match="final activation is None"):
        predict(network(head={"dense": {"units": 3}}), x)
    with pytest.raises(ValueError, match=r"not in \[0, 1\] or their rows do not sum to 1"):
        predict(nn.Linear(INPUTS, 3), x)
    with pytest.raises(ValueError, match="rows do not sum to 1"):
        predict(nn.Sequential(nn.Linear(INPUTS, 3), nn.Sigmoid()), x)
    with pytest.raises(ValueError, match=r"\[N, 1\] for a sigmoid"):
        predict(network(head={"dense": {"units": 2, "activation": "sigmoid"}}), x)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"mc_samples": 0}, "mc_samples must be at least 1, got 0"),
    ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
])
def test_bad_arguments(x, arguments, message):
    with pytest.raises(ValueError, match=message):
        predict(network(), x, **arguments)
    with pytest.raises(ValueError, match="x is empty"):
        predict(network(), x[:0])


def test_values_of_a_regression_are_averaged_without_entropy(x):
    model = network(head={"dense": {"units": 2}})  # a linear head: values, not probabilities
    with pytest.raises(ValueError, match="predict needs probabilities"):
        predict(model, x, mc_samples=3)
    result = predict(model, x, mc_samples=6, seed=2, outputs="values")
    model.eval()
    model[2].train()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(2)
        passes = torch.stack([model(x).double() for _ in range(6)])
    torch.testing.assert_close(result.mean, passes.mean(dim=0), rtol=0, atol=1e-6)
    torch.testing.assert_close(result.std, passes.std(dim=0, correction=0), rtol=0, atol=1e-6)
    assert result.entropy is None and result.samples == 6
