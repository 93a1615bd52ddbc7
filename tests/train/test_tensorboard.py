"""`TensorBoardLogger` on any module and Trainer: Keras's layout, phases, a diverging epoch."""

from __future__ import annotations

import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from tricklab.train import Trainer
from tricklab.train.tensorboard import TensorBoardLogger, hparam_value, scalar_tag

from .conftest import blobs, make_model


def scalars(folder, tag: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_phases_of_one_trainer_continue_the_same_curves(tmp_path):
    x, y = blobs(samples=200)
    model = make_model()
    logger = TensorBoardLogger(tmp_path / "board")
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), metrics=["accuracy"],
                      callbacks=[logger], progress="none")
    with logger:
        trainer.fit(x[:150], y[:150], epochs=2, validation_data=(x[150:], y[150:]))
        # The book's second phase: a lower rate, as Keras's compile then fit(initial_epoch=2).
        trainer.compile(torch.optim.SGD(model.parameters(), lr=0.01), [logger])
        fit = trainer.fit(x[:150], y[:150], epochs=3, validation_data=(x[150:], y[150:]),
                          initial_epoch=2)
    board = tmp_path / "board"
    assert scalars(board / "train", "epoch_learning_rate") == [
        (0, pytest.approx(0.1)), (1, pytest.approx(0.1)), (2, pytest.approx(0.01))]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        folder, tag = scalar_tag(key)
        logged = scalars(board / folder, tag)
        assert [step for step, _ in logged] == [0, 1, 2]
        assert [value for _, value in logged] == pytest.approx(fit.history[key], rel=1e-6)
    assert not (board / "events").exists() and sorted(p.name for p in board.iterdir()) == [
        "train", "validation"]  # no recipe given: no text, no folder-level file


def test_a_diverged_epoch_is_logged_at_the_end_as_the_history_has_it(tmp_path):
    x, y = blobs()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 3))
    logger = TensorBoardLogger(tmp_path / "board")
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=1e3), callbacks=[logger],
                      loss={"sparse_categorical_crossentropy": {"from_logits": True}},
                      progress="none", divergence_check_every=2, metrics=[])
    with logger:
        fit = trainer.fit(x * 100, y, epochs=5, batch_size=8)
        assert fit.status == "diverged"
        logger.finish({"status": fit.status, "history": fit.history, "epochs_run": fit.epochs_run,
                       "metrics": {"train_loss": math.nan}})
    logged = scalars(tmp_path / "board" / "train", "epoch_loss")
    assert [step for step, _ in logged] == list(range(len(fit.history["loss"])))
    assert not math.isfinite(logged[-1][1])
    # A non-finite final metric is left out, as result.json writes it as null.
    accumulator = EventAccumulator(str(tmp_path / "board")).Reload()
    assert accumulator.Tags()["scalars"] == []


def test_names_and_values_as_tensorboard_takes_them():
    assert [scalar_tag(key) for key in ("loss", "val_auc", "lr", "regularization_loss")] == [
        ("train", "epoch_loss"), ("validation", "epoch_auc"), ("train", "epoch_learning_rate"),
        ("train", "epoch_regularization_loss")]
    assert [hparam_value(v) for v in (True, 3, 0.5, "sgd", None, [1, 2])] == [
        True, 3, 0.5, "sgd", None, "[1,2]"]
    assert hparam_value({"a": "x" * 300}) == '{"a":"' + "x" * 111 + "..."
