"""The scheduler callback with a real Trainer: the rates the optimizer actually used, and resume."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from tricklab.errors import UserInputError
from tricklab.optim import make_optimizer
from tricklab.optim.schedules import OneCycle
from tricklab.train import Callback, Trainer
from tricklab.train.scheduling import LearningRateScheduler, schedule_curve

from .conftest import blobs, make_model

SAMPLES, BATCH = 200, 32
STEPS = 7  # ceil(200 / 32) steps per epoch


@pytest.fixture(autouse=True)
def one_thread():
    # A model this small trains fastest on one thread; more threads only spin on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def momentum_of(group: dict) -> float | None:
    if "betas" in group:
        return group["betas"][0]
    return group.get("beta_1", group.get("momentum"))


class Recorder(Callback):
    """Records the learning rate and momentum each optimizer step actually ran with."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.momenta: list[float | None] = []

    def on_batch_end(self, trainer: Trainer, step: int) -> None:
        group = trainer.optimizer.param_groups[0]
        self.lrs.append(group["lr"])
        self.momenta.append(momentum_of(group))


class Interrupt(Callback):
    """Simulates Ctrl-C at the start of epoch `at` (never when `at` is None)."""

    def __init__(self, at: int | None = None) -> None:
        self.at = at

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        if epoch == self.at:
            raise KeyboardInterrupt


def train(schedule, epochs: int = 4, optimizer=None, resume: bool = False, **kwargs) -> tuple:
    """Fit the tiny model; return the recorder, the scheduler and the fit result."""
    model = make_model()
    optimizer = (optimizer or (lambda p: torch.optim.SGD(p, lr=0.1)))(model.parameters())
    scheduler, recorder = LearningRateScheduler(schedule), Recorder()
    callbacks = [scheduler, recorder, *kwargs.pop("extra", [])]
    trainer = Trainer(model, optimizer, callbacks=callbacks, progress="none", **kwargs)
    x, y = blobs(SAMPLES)
    result = trainer.fit(x, y, epochs=epochs, batch_size=BATCH, resume=resume)
    return recorder, scheduler, result


def test_per_step_schedule_sets_the_rate_of_every_step() -> None:
    recorder, _, _ = train({"exponential": {"decay_steps": 5}})
    steps = np.arange(4 * STEPS)
    assert recorder.lrs == pytest.approx(0.1 * 0.1 ** (steps / 5), rel=1e-12)


def test_per_epoch_schedule_changes_the_rate_at_epoch_starts() -> None:
    schedule = {
        "piecewise_constant": {"boundaries": [1, 2], "values": [0.3, 0.2, 0.1], "per": "epoch"}
    }
    recorder, _, result = train(schedule)
    expected = [0.3, 0.3, 0.2, 0.1]
    assert recorder.lrs == [rate for rate in expected for _ in range(STEPS)]
    assert result.history["lr"] == expected


def one_cycle_expected(total: int, peak: float) -> tuple[np.ndarray, np.ndarray]:
    steps = np.arange(total)
    end = 0.9 * (total - 1)
    knots = [0, end / 2, end, total - 1]
    lrs = np.interp(steps, knots, [peak / 10, peak, peak / 10, peak / 10_000])
    return lrs, np.interp(steps, knots, [0.95, 0.85, 0.95, 0.95])


@pytest.mark.parametrize(
    "build",
    [
        lambda p: make_optimizer("sgd", p, learning_rate=0.1, momentum=0.9),
        lambda p: make_optimizer("adam", p, learning_rate=0.1),
        lambda p: torch.optim.Adam(p, lr=0.1),
    ],
    ids=["tricklab_sgd", "tricklab_adam", "torch_adam"],
)
def test_one_cycle_sets_rate_and_momentum(build) -> None:
    recorder, _, _ = train("one_cycle", epochs=2, optimizer=build)
    lrs, momenta = one_cycle_expected(2 * STEPS, 0.1)
    assert recorder.lrs == pytest.approx(lrs, rel=1e-12)
    assert recorder.momenta == pytest.approx(momenta, rel=1e-12)


def test_one_cycle_refuses_an_optimizer_without_momentum() -> None:
    with pytest.raises(UserInputError, match=r"^one_cycle\.cycle_momentum: Adagrad"):
        train("one_cycle", optimizer=lambda p: torch.optim.Adagrad(p, lr=0.1))
    recorder, _, _ = train(
        {"one_cycle": {"cycle_momentum": False}},
        epochs=1,
        optimizer=lambda p: torch.optim.Adagrad(p, lr=0.1),
    )
    assert recorder.momenta == [None] * STEPS


def test_resume_keeps_the_original_base_rate(tmp_path: Path) -> None:
    schedule = {"exponential": {"decay_steps": 5}}
    uninterrupted, _, _ = train(schedule)
    train(schedule, epochs=2, checkpoint_dir=tmp_path)
    resumed, scheduler, result = train(schedule, resume=True, checkpoint_dir=tmp_path)
    assert result.resumed_from == 2
    assert scheduler.base == [0.1]
    assert resumed.lrs == uninterrupted.lrs[2 * STEPS :]


def test_interrupted_one_cycle_resumes_on_the_same_curve(tmp_path: Path) -> None:
    sgd = lambda p: make_optimizer("sgd", p, learning_rate=0.1, momentum=0.9)  # noqa: E731
    uninterrupted, _, _ = train("one_cycle", optimizer=sgd, extra=[Interrupt()])
    _, _, stopped = train(
        "one_cycle", optimizer=sgd, checkpoint_dir=tmp_path, extra=[Interrupt(at=2)]
    )
    assert stopped.status == "interrupted"
    resumed, _, _ = train(
        "one_cycle", optimizer=sgd, resume=True, checkpoint_dir=tmp_path, extra=[Interrupt()]
    )
    assert resumed.lrs == uninterrupted.lrs[2 * STEPS :]
    assert resumed.momenta == uninterrupted.momenta[2 * STEPS :]


def test_performance_lowers_the_rate_after_a_plateau() -> None:
    # min_delta larger than any change of the loss: only the first epoch counts as improving.
    schedule = {"performance": {"monitor": "loss", "factor": 0.5, "patience": 1, "min_delta": 10}}
    recorder, _, result = train(schedule)
    assert result.history["lr"] == [0.1, 0.1, 0.05, 0.025]
    assert recorder.lrs == [rate for rate in result.history["lr"] for _ in range(STEPS)]


@pytest.mark.parametrize(("monitor", "mode"), [
    ("val_auc", "max"), ("val_recall", "max"), ("val_accuracy", "max"), ("val_mae", "min"),
    ("val_loss", "min"),
])
def test_performance_auto_mode_follows_the_metrics_direction(monitor, mode) -> None:
    scheduler = LearningRateScheduler({"performance": {"monitor": monitor, "patience": 1}})
    assert scheduler.schedule.mode == mode
    explicit = LearningRateScheduler({"performance": {"monitor": "val_auc", "mode": "min"}})
    assert explicit.schedule.mode == "min"
    # Rising values improve every epoch only when higher is better; else, with a
    # patience of 1, each epoch after the first reduces the rate.
    rates = [scheduler.schedule.update(value, 0.1) for value in (0.5, 0.6, 0.7)]
    assert rates == pytest.approx([0.1, 0.1, 0.1] if mode == "max" else [0.1, 0.01, 0.01])


def test_performance_missing_monitor_names_it_and_the_available_keys() -> None:
    with pytest.raises(UserInputError, match=r"^performance\.monitor: 'val_loss'.*loss"):
        train("performance", epochs=1)


def test_performance_reduces_every_group_down_to_min_lr() -> None:
    model = make_model()
    groups = [
        {"params": model.body[0].parameters()},
        {"params": model.body[2].parameters(), "lr": 0.01},
    ]
    optimizer = torch.optim.SGD(groups, lr=0.1)
    scheduler = LearningRateScheduler({"performance": {"patience": 0, "min_lr": 0.005}})
    trainer = Trainer(model, optimizer, callbacks=[scheduler], progress="none")
    trainer.epochs, trainer.steps_per_epoch = 3, 1
    scheduler.on_train_begin(trainer)
    seen = []
    for epoch, value in enumerate([1.0, 1.0, 1.0, 1.0]):
        scheduler.on_epoch_end(trainer, epoch, {"val_loss": value})
        seen.append([group["lr"] for group in optimizer.param_groups])
    np.testing.assert_allclose(seen, [[0.1, 0.01], [0.01, 0.005], [0.005, 0.005], [0.005, 0.005]])
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == scheduler.state_dict()


def test_config_round_trip_and_schedule_curve() -> None:
    scheduler = LearningRateScheduler(OneCycle(max_learning_rate=0.5))
    config = scheduler.get_config()
    assert config == {"schedule": {"one_cycle": OneCycle(max_learning_rate=0.5).get_config()}}
    assert LearningRateScheduler.from_config(config).get_config() == config
    assert schedule_curve({"power": {"decay_steps": 10}}, 0.1, 4) == pytest.approx(
        [0.1 / (1 + t / 10) for t in range(4)]
    )
    with pytest.raises(UserInputError, match="no curve"):
        schedule_curve("performance", 0.1, 4)
