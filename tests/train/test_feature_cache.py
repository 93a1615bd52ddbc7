"""Cached frozen features: the same losses as running every layer, and only when it is safe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tricklab.nn import build_model
from tricklab.train import Trainer
from tricklab.train.feature_cache import cache_frozen_bottom

from .conftest import blobs


def frozen_bottom_model(regularizer: str | None = None):
    torch.manual_seed(0)
    return build_model([4], [
        {"dense": {"units": 16, "activation": "selu", "trainable": False,
                   "kernel_regularizer": regularizer}},
        {"batch_norm": {"trainable": False}},
        {"dense": {"units": 8, "activation": "elu", "trainable": False}},
        {"dense": {"units": 8, "activation": "elu", "kernel_regularizer": regularizer}},
        {"dense": {"units": 3, "activation": "softmax"}},
    ])


@pytest.mark.parametrize("regularizer", [None, "l2"])
def test_cached_frozen_features_give_the_same_losses(regularizer):
    x, y = blobs(samples=300)
    histories = []
    for cache in (True, False):
        model = frozen_bottom_model(regularizer)
        trainable = [p for p in model.parameters() if p.requires_grad]
        trainer = Trainer(model, torch.optim.SGD(trainable, lr=0.05, momentum=0.9),
                          metrics=["accuracy"], seed=3, progress="none",
                          cache_frozen_features=cache)
        result = trainer.fit(x[:200], y[:200], epochs=4, batch_size=16,
                             validation_data=(x[200:], y[200:]))
        assert result.cached_layers == (3 if cache else 0)
        histories.append(result.history)
        # Afterwards the whole model serves evaluate and predict again.
        assert trainer.evaluate(x[200:], y[200:])["loss"] == pytest.approx(
            result.history["val_loss"][-1], rel=1e-5)
    cached, uncached = histories
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert cached[key] == pytest.approx(uncached[key], rel=1e-5, abs=1e-7), key


def test_nothing_is_cached_when_the_bottom_trains_or_is_random():
    x, y = blobs(samples=64)
    model = frozen_bottom_model()
    model[0].trainable = True
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.05), progress="none")
    assert trainer.fit(x, y, epochs=1).cached_layers == 0


def test_the_cache_holds_the_bottom_outputs_and_the_top_shares_parameters():
    model = frozen_bottom_model()
    x = torch.randn(10, 4)
    cache = cache_frozen_bottom(model, x, (x[:3], torch.zeros(3)))
    assert (cache.layers, cache.bottom_shape) == (3, (8,))
    with torch.no_grad():
        assert torch.allclose(cache.x, model[:3](x))
        assert torch.allclose(cache.validation[0], model[:3](x[:3]))
        assert torch.equal(model(x), cache.top(cache.x))
    assert cache.top[0].weight is model[3].weight


def test_a_plain_module_has_no_bottom_to_cache():
    frozen = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)).requires_grad_(False)
    assert cache_frozen_bottom(frozen, torch.randn(5, 4)) is None
