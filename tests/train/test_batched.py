"""Batched seeds: S seeds trained as one vmapped model equal S separate `Trainer` runs."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tricklab.errors import UserInputError
from tricklab.nn import build_model
from tricklab.optim import make_optimizer
from tricklab.train import BatchedSeedsTrainer, Trainer
from tricklab.train.batched import vmap_error
from tricklab.train.scheduling import LearningRateScheduler
from tricklab.transfer import load_model, save_model

from .test_trainer import TASKS

SEEDS = [3, 7, 11]
MLP = [
    {"dense": {"units": 12, "activation": "tanh"}},
    {"dense": {"units": 3, "activation": "softmax"}},
]


def blobs(samples: int = 150, classes: int = 3, inputs: int = 4) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(classes, inputs, generator=generator, dtype=torch.float64) * 3
    y = torch.randint(0, classes, (samples,), generator=generator)
    x = centers[y] + torch.randn(samples, inputs, generator=generator, dtype=torch.float64)
    return x, y


def seed_model(layers: list, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model([4], layers).double()


def separate_runs(layers: list, optimizer: dict, epochs: int = 2, **options) -> list:
    """Each seed trained on its own by `Trainer`: `(model, fit result, evaluation)`."""
    x, y = blobs()
    schedule = options.pop("schedule", None)
    runs = []
    for seed in SEEDS:
        model = seed_model(layers, seed)
        trainer = Trainer(
            model, make_optimizer(dict(optimizer), model.parameters()), seed=seed,
            progress="none", metrics=["accuracy"],
            callbacks=[LearningRateScheduler(schedule)] if schedule else [],
        )
        fit = trainer.fit(x, y, epochs=epochs, validation_data=(x[:40], y[:40]), **options)
        runs.append((model, fit, trainer.evaluate(x, y)))
    return runs


def batched_run(layers: list, optimizer: dict, epochs: int = 2, **options) -> tuple:
    x, y = blobs()
    schedule = options.pop("schedule", None)
    trainer = BatchedSeedsTrainer(
        [seed_model(layers, seed) for seed in SEEDS], dict(optimizer), SEEDS, schedule=schedule
    )
    fits = trainer.fit(x, y, epochs=epochs, validation_data=(x[:40], y[:40]), **options)
    return trainer, fits, trainer.evaluate(x, y)


def assert_same_runs(layers: list, optimizer: dict, **options) -> None:
    """Batched seeds end with the weights, statistics, histories and scores of separate runs.

    In float64, to 1e-12: the batched matrix products only sum in another order.
    """
    separate = separate_runs(layers, optimizer, **options)
    trainer, fits, scores = batched_run(layers, optimizer, **options)
    for (model, fit, evaluation), batched_model, batched_fit, batched_scores in zip(
        separate, trainer.unstack(), fits, scores, strict=True
    ):
        expected, got = model.state_dict(), batched_model.state_dict()
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-12, atol=1e-12)
        assert batched_fit.status == fit.status == "completed"
        assert batched_fit.best_epoch == fit.best_epoch
        assert batched_fit.history.keys() == fit.history.keys()
        for key in fit.history.keys() - {"time_s"}:
            assert batched_fit.history[key] == pytest.approx(fit.history[key], rel=1e-9)
        assert batched_scores == pytest.approx(evaluation, rel=1e-9)


@pytest.mark.parametrize("optimizer", [
    {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
    {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
    {"name": "adam", "learning_rate": 0.01},
    {"name": "adam", "learning_rate": 0.01, "amsgrad": True, "weight_decay": 0.01},
    {"name": "adamw", "learning_rate": 0.01},
    {"name": "nadam", "learning_rate": 0.01},
    {"name": "rmsprop", "learning_rate": 0.01, "momentum": 0.5, "centered": True},
    {"name": "adagrad", "learning_rate": 0.05},
    {"name": "adamax", "learning_rate": 0.01},
    {"name": "ftrl", "learning_rate": 0.05, "l1_regularization_strength": 0.001},
], ids=lambda config: "-".join(str(value) for value in config.values()))
def test_each_optimizer_trains_each_seed_as_its_separate_run(optimizer: dict) -> None:
    assert_same_runs(MLP, optimizer)


def test_batch_norm_keeps_each_seeds_moving_statistics_as_its_separate_run() -> None:
    layers = [{"dense": {"units": 12}}, "batch_norm", "relu",
              {"dense": {"units": 3, "activation": "softmax"}}]
    assert_same_runs(layers, {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9})


def test_frozen_layers_stay_frozen_in_every_seed() -> None:
    layers = [{"dense": {"units": 12, "activation": "tanh", "trainable": False}},
              {"batch_norm": {"trainable": False}}, MLP[1]]
    assert_same_runs(layers, {"name": "adam", "learning_rate": 0.01})
    trainer, _, _ = batched_run(layers, {"name": "adam", "learning_rate": 0.01})
    assert [p.shape[1:] for p in trainer.optimizer.param_groups[0]["params"]] == [(3, 12), (3,)]
    for seed, model in zip(SEEDS, trainer.unstack(), strict=True):
        assert torch.equal(model[0].weight, seed_model(layers, seed)[0].weight)


# non_neg's in-place clamp has no vmap batching rule: vmap runs it once per seed, and says so.
@pytest.mark.filterwarnings("ignore:There is a performance drop")
def test_regularizers_and_constraints_act_per_seed() -> None:
    layers = [
        {"dense": {"units": 12, "activation": "tanh", "kernel_regularizer": {"l2": {"l2": 0.01}},
                   "kernel_constraint": {"max_norm": {"max_value": 0.5}}}},
        {"dense": {"units": 3, "activation": "softmax",
                   "kernel_regularizer": {"l1_l2": {"l1": 0.001, "l2": 0.001}},
                   "bias_constraint": "non_neg"}},
    ]
    assert_same_runs(layers, {"name": "adam", "learning_rate": 0.01})


@pytest.mark.parametrize("clip", [{"clipvalue": 0.05}, {"clipnorm": 0.1},
                                  {"global_clipnorm": 0.2}], ids=lambda clip: next(iter(clip)))
def test_gradient_clipping_acts_per_seed(clip: dict) -> None:
    optimizer = {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, **clip}
    assert_same_runs(MLP, optimizer)
    # The threshold is low enough to clip: without it the weights end elsewhere.
    clipped, _, _ = batched_run(MLP, optimizer)
    free, _, _ = batched_run(MLP, {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9})
    assert not torch.allclose(clipped.params["model.0.weight"], free.params["model.0.weight"])


def test_a_shared_learning_rate_schedule_and_unshuffled_batches() -> None:
    schedule = {"one_cycle": {"max_learning_rate": 0.1}}
    assert_same_runs(MLP, {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
                     schedule=schedule, shuffle=False)


@pytest.mark.parametrize("loss", ["mse", "binary_crossentropy"])
def test_other_losses_and_targets(loss: str) -> None:
    x, labels = blobs()
    if loss == "mse":  # an autoencoder: the inputs are the targets
        layers, y = [{"dense": {"units": 2, "activation": "tanh"}}, {"dense": {"units": 4}}], x
    else:  # a sigmoid output, fused with the loss on its logits
        layers = [{"dense": {"units": 8, "activation": "tanh"}},
                  {"dense": {"units": 1, "activation": "sigmoid"}}]
        y = (labels == 0).long()
    metrics = [] if loss == "mse" else ["accuracy"]
    trainer = BatchedSeedsTrainer([seed_model(layers, seed) for seed in SEEDS], "adam", SEEDS,
                                  loss=loss, metrics=metrics)
    fits = trainer.fit(x, y, epochs=2)
    for seed, model, fit in zip(SEEDS, trainer.unstack(), fits, strict=True):
        separate = seed_model(layers, seed)
        expected = Trainer(separate, make_optimizer("adam", separate.parameters()), loss=loss,
                           metrics=metrics, seed=seed, progress="none").fit(x, y, epochs=2)
        assert fit.history["loss"] == pytest.approx(expected.history["loss"], rel=1e-9)
        for want, got in zip(separate.parameters(), model.parameters(), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_convolutions_on_channels_last_images() -> None:
    layers = [{"conv2d": {"filters": 3, "kernel_size": 3}}, "batch_norm", "relu",
              "max_pool2d", "flatten", {"dense": {"units": 3, "activation": "softmax"}}]
    x, y = blobs(inputs=36)
    x = x.view(-1, 6, 6, 1)

    def model(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return build_model([6, 6, 1], layers).double()

    trainer = BatchedSeedsTrainer([model(seed) for seed in SEEDS], "adam", SEEDS)
    trainer.fit(x, y, epochs=2)
    for seed, batched in zip(SEEDS, trainer.unstack(), strict=True):
        separate = model(seed)
        Trainer(separate, make_optimizer("adam", separate.parameters()), seed=seed,
                progress="none").fit(x, y, epochs=2)
        for key, value in separate.state_dict().items():
            torch.testing.assert_close(batched.state_dict()[key], value, rtol=1e-12, atol=1e-12)


def test_float32_runs_agree_to_rounding() -> None:
    x, y = blobs()
    x = x.float()
    models = [seed_model(MLP, seed).float() for seed in SEEDS]
    trainer = BatchedSeedsTrainer(copy.deepcopy(models), {"name": "adam"}, SEEDS)
    trainer.fit(x, y, epochs=2)
    for model, seed, batched in zip(models, SEEDS, trainer.unstack(), strict=True):
        Trainer(model, make_optimizer("adam", model.parameters()), seed=seed,
                progress="none").fit(x, y, epochs=2)
        for expected, got in zip(model.parameters(), batched.parameters(), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_numpy_float64_inputs_and_int_labels_train_as_the_tensor_path() -> None:
    """Converted as `Trainer.fit` converts them: float64 to the models' float32, labels to int64.

    The NumPy run holds out its validation data with `validation_split`, the
    tensor run passes the same last 30 samples as `validation_data`.
    """
    x, y = blobs()
    models = [seed_model(MLP, seed).float() for seed in SEEDS]
    x_np, y_np = x.numpy(), y.numpy().astype(np.int32)
    tensors = BatchedSeedsTrainer(copy.deepcopy(models), {"name": "adam"}, SEEDS)
    tensor_fits = tensors.fit(x[:120].float(), y[:120], epochs=2,
                              validation_data=(x[120:].float(), y[120:]))
    arrays = BatchedSeedsTrainer(copy.deepcopy(models), {"name": "adam"}, SEEDS)
    array_fits = arrays.fit(x_np, y_np, epochs=2, validation_split=0.2)
    for tensor_fit, array_fit in zip(tensor_fits, array_fits, strict=True):
        assert "val_loss" in array_fit.history
        for key in tensor_fit.history.keys() - {"time_s"}:
            assert array_fit.history[key] == tensor_fit.history[key]
    for name, value in tensors.params.items():
        assert torch.equal(arrays.params[name], value)
    assert arrays.evaluate(x_np, y_np) == tensors.evaluate(x.float(), y)
    predicted = arrays.predict(x_np)
    assert isinstance(predicted, np.ndarray) and predicted.dtype == np.float32
    np.testing.assert_array_equal(predicted, tensors.predict(x.float()).numpy())
    with pytest.raises(UserInputError, match=r"^y: sample 0 has target 0\.5"):
        arrays.fit(x_np, np.full(len(x_np), 0.5), epochs=3)
    assert arrays.history[0]["loss"] == array_fits[0].history["loss"]


def test_dropout_draws_an_independent_mask_per_seed_at_its_rate() -> None:
    rate, width = 0.3, 50
    layers = [{"mc_dropout": {"rate": rate}}, {"dense": {"units": width, "use_bias": False}}]
    models = []
    for _ in SEEDS:
        torch.manual_seed(0)
        model = build_model([width], layers)
        with torch.no_grad():
            model[1].weight.copy_(torch.eye(width))
        models.append(model)
    trainer = BatchedSeedsTrainer(models, "sgd", SEEDS)
    # Identity weights and unit inputs: the outputs are the masks scaled by 1 / (1 - rate).
    masks = trainer.predict(torch.ones(200, width)) != 0
    dropped = 1 - masks.float().mean(dim=(1, 2))
    assert dropped.tolist() == pytest.approx([rate] * len(SEEDS), abs=0.02)
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2])


def test_dropout_in_training_differs_between_seeds_with_equal_weights_and_batches() -> None:
    layers = [{"dense": {"units": 12, "activation": "tanh"}}, {"dropout": {"rate": 0.5}},
              {"dense": {"units": 3, "activation": "softmax"}}]
    x, y = blobs()
    for with_dropout in (False, True):
        used = layers if with_dropout else [layers[0], layers[2]]
        trainer = BatchedSeedsTrainer([seed_model(used, 5) for _ in SEEDS], "sgd", [5, 5, 5])
        trainer.fit(x, y, epochs=1)
        weights = trainer.params["model.0.weight"]
        assert torch.equal(weights[0], weights[1]) is not with_dropout


def test_dropout_runs_equal_separate_runs_in_distribution() -> None:
    # Same seeds, so the same initial weights and batch orders; only the dropout masks
    # are drawn differently. Over 16 seeds the final losses must agree in distribution:
    # Welch's t below 3 and standard deviations within a factor of 1.5.
    layers = [{"dense": {"units": 12, "activation": "tanh"}}, {"dropout": {"rate": 0.5}},
              {"dense": {"units": 3, "activation": "softmax"}}]
    seeds = list(range(16))
    x, y = blobs()
    separate = []
    for seed in seeds:
        model = seed_model(layers, seed)
        trainer = Trainer(model, make_optimizer("sgd", model.parameters(), learning_rate=0.05),
                          seed=seed, progress="none")
        separate.append(trainer.fit(x, y, epochs=3).history["loss"][-1])
    trainer = BatchedSeedsTrainer([seed_model(layers, seed) for seed in seeds],
                                  {"name": "sgd", "learning_rate": 0.05}, seeds)
    batched = [fit.history["loss"][-1] for fit in trainer.fit(x, y, epochs=3)]
    assert batched != pytest.approx(separate, rel=1e-9)
    a, b = torch.tensor(separate), torch.tensor(batched)
    welch = (a.mean() - b.mean()) / (a.var() / len(a) + b.var() / len(b)).sqrt()
    assert abs(welch) < 3
    assert 1 / 1.5 < a.std() / b.std() < 1.5


def test_unstacked_models_and_optimizers_are_those_of_each_seed(tmp_path: Path) -> None:
    layers = [{"dense": {"units": 12}}, "batch_norm", "relu",
              {"dense": {"units": 3, "activation": "softmax"}}]
    x, y = blobs()
    trainer = BatchedSeedsTrainer([seed_model(layers, seed) for seed in SEEDS],
                                  {"name": "adam", "clipnorm": 1.0}, SEEDS)
    trainer.fit(x, y, epochs=1)
    predictions = trainer.predict(x)
    models, optimizers = trainer.unstack(), trainer.unstacked_optimizers()
    for index, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
        for name, tensor in model.state_dict().items():
            stacked = {**trainer.params, **trainer.buffers}[f"model.{name}"]
            assert torch.equal(tensor, stacked[index])
        model.eval()
        torch.testing.assert_close(model(x), predictions[index], rtol=1e-12, atol=1e-12)
        assert optimizer.get_config()["clipnorm"] == 1.0
        for param, stacked in zip(optimizer.param_groups[0]["params"], trainer._trainable,
                                  strict=True):
            state, stacked_state = optimizer.state[param], trainer.optimizer.state[stacked]
            assert state["step"] == stacked_state["step"] == 5
            assert torch.equal(state["m"], stacked_state["m"][index])
        save_model(model, tmp_path / str(index), optimizer)
        torch.testing.assert_close(load_model(tmp_path / str(index)).eval()(x), model(x))


def test_a_diverging_seed_leaves_the_others_untouched() -> None:
    optimizer = {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9}
    x, y = blobs()
    models = [seed_model(MLP, seed) for seed in SEEDS]
    with torch.no_grad():
        models[1][0].weight[0, 0] = float("nan")
    trainer = BatchedSeedsTrainer(models, optimizer, SEEDS)
    fits = trainer.fit(x, y, epochs=2, validation_data=(x[:40], y[:40]))
    assert [fit.status for fit in fits] == ["completed", "diverged", "completed"]
    assert fits[1].epochs_run == 1 and "val_loss" not in fits[1].history
    separate = separate_runs(MLP, optimizer)
    for index in (0, 2):
        assert fits[index].history["loss"] == pytest.approx(separate[index][1].history["loss"])


def test_models_of_different_architectures_are_refused() -> None:
    other = [{"dense": {"units": 8, "activation": "tanh"}}, MLP[1]]
    with pytest.raises(ValueError, match="one architecture"):
        BatchedSeedsTrainer([seed_model(MLP, 0), seed_model(other, 1)], "sgd", [0, 1])
    with pytest.raises(ValueError, match="performance scheduling"):
        BatchedSeedsTrainer([seed_model(MLP, 0)], "sgd", [0], schedule="performance")


@pytest.mark.parametrize("layer", [
    {"dense": {"units": 8, "activation": "rrelu"}},
    {"lstm": {"units": 4}},
], ids=["rrelu", "lstm"])
def test_operations_vmap_cannot_batch_are_named_and_refused(layer: dict) -> None:
    layers = [{"reshape": {"target_shape": [2, 2]}}, layer, "flatten", MLP[1]]
    model = seed_model(layers, 0)
    weights = copy.deepcopy(model.state_dict())
    state = torch.get_rng_state()
    error = vmap_error(model)
    assert error is not None and error.strip(), error
    assert torch.equal(torch.get_rng_state(), state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key])
    with pytest.raises(RuntimeError, match=re.escape(error)):
        BatchedSeedsTrainer([model, seed_model(layers, 1)], "sgd", [0, 1])
    assert vmap_error(seed_model(MLP, 0)) is None


@pytest.mark.parametrize("task", TASKS)
def test_each_seed_reports_the_metrics_of_its_separate_run_on_real_data(task: str) -> None:
    """Binary (auc, precision, recall), regression (huber; mae, rmse) and digits (top-k)."""
    data, layers, loss, metrics = TASKS[task]
    x, y = data()
    x = x.astype(np.float64)
    train, validation = (x[:300], y[:300]), (x[300:], y[300:])
    optimizer = {"name": "adam", "learning_rate": 0.01}

    def model(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return build_model([x.shape[1]], layers).double()

    batched = BatchedSeedsTrainer([model(seed) for seed in SEEDS[:2]], optimizer, SEEDS[:2],
                                  loss=loss, metrics=metrics)
    fits = batched.fit(*train, epochs=3, validation_data=validation)
    scores = batched.evaluate(*validation)
    for seed, fit, seed_scores in zip(SEEDS[:2], fits, scores, strict=True):
        separate = model(seed)
        trainer = Trainer(separate, make_optimizer(dict(optimizer), separate.parameters()),
                          loss=loss, metrics=metrics, seed=seed, progress="none")
        expected = trainer.fit(*train, epochs=3, validation_data=validation)
        assert fit.history.keys() == expected.history.keys()
        assert {f"val_{name}" for name in trainer.metric_names} <= fit.history.keys()
        for key in expected.history.keys() - {"time_s"}:
            assert fit.history[key] == pytest.approx(expected.history[key], rel=1e-9), key
        assert seed_scores == pytest.approx(trainer.evaluate(*validation), rel=1e-9)
