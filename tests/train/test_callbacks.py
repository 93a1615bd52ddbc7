import math

import pytest
import torch

from tricklab.errors import UserInputError
from tricklab.train import Trainer
from tricklab.train.callbacks import Callback, EarlyStopping, callbacks

from .conftest import make_model


def _trainer(callback: EarlyStopping) -> Trainer:
    model = make_model()
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), callbacks=[callback],
                   progress="none")


def _drive(stopper: EarlyStopping, values: list[float], key: str = "val_loss") -> int | None:
    """Feed per-epoch values; return the 0-based epoch at which training was stopped."""
    trainer = _trainer(stopper)
    for epoch, value in enumerate(values):
        stopper.on_epoch_end(trainer, epoch, {key: value})
        if trainer.stop_training:
            return epoch
    return None


def test_patience_counts_epochs_without_improvement():
    # best at epoch 1, then 3 epochs without improvement -> stop at epoch 4 with patience 3
    assert _drive(EarlyStopping(patience=3), [1.0, 0.5, 0.6, 0.7, 0.55, 0.4]) == 4


def test_patience_zero_stops_at_first_non_improvement():
    assert _drive(EarlyStopping(), [1.0, 0.9, 0.95, 0.5]) == 2


def test_min_delta_requires_a_real_improvement():
    values = [1.0, 0.99, 0.985, 0.98]
    assert _drive(EarlyStopping(patience=1, min_delta=0.05), values) == 1
    assert _drive(EarlyStopping(patience=1, min_delta=0.001), values) is None


def test_auto_mode_maximizes_accuracy():
    stopper = EarlyStopping(monitor="val_accuracy", patience=1)
    assert stopper.mode == "max"
    assert _drive(stopper, [0.5, 0.6, 0.55, 0.58], key="val_accuracy") == 2


@pytest.mark.parametrize(("monitor", "mode"), [
    ("val_auc", "max"), ("val_precision", "max"), ("val_recall", "max"),
    ("val_top_k_accuracy", "max"), ("val_mae", "min"), ("val_rmse", "min"),
    ("loss", "min"), ("val_custom_acc", "max"), ("val_custom", "min"),
])
def test_auto_mode_follows_the_metrics_direction(monitor, mode):
    stopper = EarlyStopping(monitor=monitor, patience=1)
    assert stopper.mode == mode
    rising = [0.5, 0.6, 0.7, 0.8]  # better every epoch only when higher is better
    assert _drive(stopper, rising, key=monitor) == (None if mode == "max" else 1)


def test_baseline_must_be_beaten_to_reset_patience():
    # Keras: improving epochs never stop training, but without beating the
    # baseline they do not reset the patience counter either.
    values = [1.0, 0.9, 0.95, 0.97]
    assert _drive(EarlyStopping(patience=2, baseline=0.1), values) == 2
    assert _drive(EarlyStopping(patience=2), values) == 3


def test_restore_best_weights_on_stop():
    stopper = EarlyStopping(patience=1, restore_best_weights=True)
    trainer = _trainer(stopper)
    weights = trainer.model.body[0].weight
    for epoch, value in enumerate([1.0, 0.2, 0.5, 0.6]):
        with torch.no_grad():
            weights.fill_(float(epoch))
        stopper.on_epoch_end(trainer, epoch, {"val_loss": value})
        if trainer.stop_training:
            break
    assert stopper.best_epoch == 1
    assert torch.all(weights == 1.0)


def test_missing_monitor_is_a_clear_error():
    with pytest.raises(UserInputError, match=r"val_loss.*available: loss"):
        _drive(EarlyStopping(), [1.0], key="loss")


def test_state_round_trip_resumes_counting():
    first = EarlyStopping(patience=2)
    _drive(first, [1.0, 1.1])
    second = EarlyStopping(patience=2)
    second.load_state_dict(first.state_dict())
    trainer = _trainer(second)
    second.on_epoch_end(trainer, 2, {"val_loss": 1.2})
    assert trainer.stop_training and second.best == 1.0 and not math.isinf(second.best)


@pytest.mark.parametrize("name", callbacks.names())
def test_callback_config_round_trip(name):
    callback = callbacks.get(name)
    assert isinstance(callback, Callback)
    assert type(callback).from_config(callback.get_config()).get_config() == callback.get_config()


def test_invalid_patience_names_the_field():
    with pytest.raises(UserInputError, match=r"train\.callbacks\.0\.early_stopping\.patience"):
        callbacks.get({"early_stopping": {"patience": -1}}, "train.callbacks.0")
