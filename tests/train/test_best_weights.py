import math

import pytest
import torch

from tricklab.train import Trainer
from tricklab.train.best_weights import BEST_FILE, BestWeights, keeper_first
from tricklab.train.callbacks import EarlyStopping

from .conftest import make_model


def _best_epochs(keeper: BestWeights, values: list[float], key: str = "val_loss") -> list[int]:
    """Feed per-epoch values; return the 1-based best epoch after each."""
    seen = []
    for epoch, value in enumerate(values):
        keeper.observe(epoch, {key: value, "lr": 0.1, "time_s": 1.0})
        seen.append(keeper.best_epoch)
    return seen


def test_only_a_strictly_better_finite_value_is_a_new_best():
    keeper = BestWeights()
    assert _best_epochs(keeper, [math.nan, 3.0, 2.0, 2.0, math.inf, -math.inf, 1.5, 1.6]) == [
        None, 2, 3, 3, 3, 3, 7, 7]
    assert (keeper.best, keeper.best_logs) == (1.5, {"val_loss": 1.5})


def test_a_monitor_the_logs_lack_never_improves():
    keeper = BestWeights("val_loss")
    assert _best_epochs(keeper, [1.0, 0.5], key="loss") == [None, None]


@pytest.mark.parametrize(("monitor", "mode", "best"), [
    ("val_accuracy", "max", 2), ("val_auc", "max", 2), ("val_custom_acc", "max", 2),
    ("val_mae", "min", 3), ("loss", "min", 3), ("val_custom", "min", 3),
])
def test_the_direction_follows_the_metric(monitor, mode, best):
    keeper = BestWeights(monitor)
    assert keeper.mode == mode
    assert _best_epochs(keeper, [0.5, 0.9, 0.2], key=monitor)[-1] == best


def test_min_delta_and_start_from_epoch_are_early_stoppings():
    assert _best_epochs(BestWeights(min_delta=0.05), [1.0, 0.99, 0.9]) == [1, 1, 3]
    assert _best_epochs(BestWeights(start_from_epoch=2), [0.1, 0.2, 0.5, 0.4]) == [
        None, None, 3, 4]


def test_the_keeper_goes_before_the_other_callbacks():
    keeper, stopper = BestWeights(), EarlyStopping()
    assert keeper_first([stopper, "x", keeper]) == [keeper, stopper, "x"]


def _trainer(folder, callbacks) -> Trainer:
    model = make_model()
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), metrics=[],
                   callbacks=keeper_first(callbacks), checkpoint_dir=folder, progress="none")


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in trainer.model.state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_the_best_weights_outlive_their_checkpoint_and_a_resume_finds_them(tmp_path, data):
    x, y = data
    # The training loss falls every epoch: watched for its maximum, the first epoch stays best.
    trainer = _trainer(tmp_path, [keeper := BestWeights("loss", "max")])
    trainer.fit(x, y, epochs=1, batch_size=32)
    first = _weights(trainer)
    trainer.fit(x, y, epochs=2, batch_size=32, initial_epoch=1)
    assert not (tmp_path / BEST_FILE).exists()  # epoch 1's own checkpoint is still kept
    trainer.fit(x, y, epochs=4, batch_size=32, initial_epoch=2)
    assert not (tmp_path / "epoch_0001.pt").exists()
    spilled = torch.load(tmp_path / BEST_FILE, weights_only=True)
    assert (spilled["epoch"], keeper.best_epoch) == (1, 1)
    assert _equal(spilled["model"], first) and _equal(keeper.weights, first)
    assert not _equal(_weights(trainer), first)

    resumed = _trainer(tmp_path, [again := BestWeights("loss", "max")])
    resumed.fit(x, y, epochs=5, batch_size=32, resume=True)
    assert again.best_epoch == 1 and _equal(again.weights, first)
    assert again.best_logs == keeper.best_logs

    # Killed before the weights were kept anywhere: the best epoch is known, its weights are not.
    (tmp_path / BEST_FILE).unlink()
    lost = _trainer(tmp_path, [nowhere := BestWeights("loss", "max")])
    with pytest.warns(RuntimeWarning, match=r"the weights of epoch 1, the best by loss, are not"):
        lost.fit(x, y, epochs=5, batch_size=32, resume=True)
    assert nowhere.best_epoch == 1 and nowhere.weights is None


def test_weights_early_stopping_replaces_at_its_stop_are_not_taken_for_that_epochs(
    tmp_path, data
):
    x, y = data
    plain = _trainer(tmp_path / "plain", [])
    plain.fit(x, y, epochs=2, batch_size=32)
    second = _weights(plain)
    # Early stopping watches the falling loss for a rise: it stops at epoch 2 and puts epoch
    # 1's weights back, while the keeper finds epoch 2 the best.
    stopper = EarlyStopping("loss", mode="max", restore_best_weights=True)
    trainer = _trainer(tmp_path / "run", [stopper, keeper := BestWeights("loss")])
    trainer.fit(x, y, epochs=4, batch_size=32)
    assert trainer.stop_training and keeper.best_epoch == 2
    assert _equal(keeper.weights, second) and not _equal(_weights(trainer), second)
    # The stopping epoch's checkpoint holds the restored weights: the best ones went to best.pt.
    assert torch.load(tmp_path / "run" / BEST_FILE, weights_only=True)["epoch"] == 2
    resumed = _trainer(tmp_path / "run", [EarlyStopping("loss", mode="max"),
                                          again := BestWeights("loss")])
    resumed.fit(x, y, epochs=4, batch_size=32, resume=True)
    assert again.best_epoch == 2 and _equal(again.weights, second)
