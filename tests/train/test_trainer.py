import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from torch import nn

import tricklab
from tricklab.errors import UserInputError
from tricklab.train import Callback, EarlyStopping, Trainer

from .conftest import blobs, make_model
from .test_feature_cache import frozen_bottom_model
from .test_metrics import reference


def _fit(seed=0, epochs=3, data=None, **kwargs):
    x, y = data if data is not None else blobs()
    model = make_model(seed)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), metrics=["accuracy"],
                      seed=seed, progress="none", **kwargs.pop("trainer", {}))
    result = trainer.fit(x, y, epochs=epochs, batch_size=32, **kwargs)
    return model, trainer, result


def test_fit_learns_and_records_history():
    x, y = blobs(samples=400)
    held_out = (x[300:], y[300:])
    _, trainer, result = _fit(epochs=8, data=(x[:300], y[:300]), validation_data=held_out)
    history = result.history
    assert result.status == "completed" and result.epochs_run == 8
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.9
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time_s"}
    assert history["lr"] == [0.1] * 8
    assert 1 <= result.best_epoch <= 8
    scores = trainer.evaluate(*held_out)
    assert scores["loss"] == pytest.approx(history["val_loss"][-1])


def test_running_train_loss_equals_mean_of_batch_losses():
    """The epoch loss is the sample-weighted mean of the batch losses, as Keras reports it."""
    x, y = blobs(samples=70)
    model = make_model()
    losses = []
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.05), progress="none", seed=3)
    original = trainer._loss_fn
    trainer._loss_fn = lambda out, target: _record(original(out, target), len(target), losses)
    result = trainer.fit(x, y, epochs=1, batch_size=32)
    weighted = sum(value * size for value, size in losses) / 70
    assert [size for _, size in losses] == [32, 32, 6]
    assert result.history["loss"][0] == pytest.approx(weighted, rel=1e-6)


def _record(loss, size, sink):
    sink.append((float(loss.detach()), size))
    return loss


def test_fused_training_uses_logits():
    model = make_model()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), progress="none")
    assert trainer._fused
    plain = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=-1))
    other = Trainer(plain, torch.optim.SGD(plain.parameters(), lr=0.1), progress="none")
    assert not other._fused


def test_same_seed_same_weights_and_different_seed_differs():
    first, _, a = _fit(seed=1)
    second, _, b = _fit(seed=1)
    _, _, c = _fit(seed=2)
    assert a.history["loss"] == b.history["loss"]
    for p, q in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(p, q)
    assert a.history["loss"] != c.history["loss"]


def test_resume_in_process_gives_identical_weights(tmp_path):
    x, y = blobs()
    model = make_model(4)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                      seed=4, checkpoint_dir=tmp_path, progress="none")
    # momentum makes the optimizer state matter; compare against the same optimizer
    reference_model = make_model(4)
    reference = Trainer(reference_model, torch.optim.SGD(reference_model.parameters(), lr=0.1,
                        momentum=0.9), seed=4, progress="none")
    reference.fit(x, y, epochs=4)
    trainer.fit(x, y, epochs=2)

    torch.manual_seed(123)  # the resumed process starts from a different RNG state
    resumed_model = make_model(99)
    resumed = Trainer(resumed_model, torch.optim.SGD(resumed_model.parameters(), lr=0.1,
                      momentum=0.9), seed=4, checkpoint_dir=tmp_path, progress="none")
    result = resumed.fit(x, y, epochs=4, resume=True)
    assert result.resumed_from == 2 and result.epochs_run == 4
    for p, q in zip(resumed_model.parameters(), reference_model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_dropout_rng_is_restored_on_resume(tmp_path):
    x, y = blobs()

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))

    def trainer(m, directory=None):
        return Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), loss={
            "sparse_categorical_crossentropy": {"from_logits": True}},
            seed=0, checkpoint_dir=directory, progress="none")

    reference = model()
    trainer(reference).fit(x, y, epochs=3)
    interrupted = model()
    trainer(interrupted, tmp_path).fit(x, y, epochs=1)
    torch.rand(100)  # consume global RNG as another process would
    resumed = model()
    trainer(resumed, tmp_path).fit(x, y, epochs=3, resume=True)
    for p, q in zip(resumed.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)


def test_divergence_is_detected_and_reported():
    x, y = blobs()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 3))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=1e3), progress="none",
                      loss={"sparse_categorical_crossentropy": {"from_logits": True}},
                      divergence_check_every=2)
    result = trainer.fit(x * 100, y, epochs=5, batch_size=8)
    assert result.status == "diverged"
    assert result.epochs_run == 1
    assert not math.isfinite(result.history["loss"][0])


def test_early_stopping_ends_training():
    stopper = EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    _, _, result = _fit(epochs=10, trainer={"callbacks": [stopper]})
    assert result.status == "stopped_early"
    assert result.epochs_run == 2


def test_interrupt_is_reported_and_checkpoint_kept(tmp_path):
    class Interrupt(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                raise KeyboardInterrupt

    _, _, result = _fit(epochs=5, trainer={"callbacks": [Interrupt()], "checkpoint_dir": tmp_path})
    assert result.status == "interrupted"
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["epoch_0001.pt"]


def test_predict_returns_probabilities_and_restores_mode():
    x, _ = blobs(samples=50)
    model = make_model()
    model.train()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), progress="none")
    probabilities = trainer.predict(x, batch_size=16)
    assert probabilities.shape == (50, 3)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(50))
    assert model.training


def test_any_module_without_final_activation_trains():
    x, y = blobs()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                      loss={"sparse_categorical_crossentropy": {"from_logits": True}},
                      metrics=["accuracy"], progress="none")
    result = trainer.fit(x, y, epochs=5)
    assert not trainer._fused
    assert result.history["accuracy"][-1] > 0.8


def test_batch_hooks_see_global_steps_across_epochs_and_resume(tmp_path):
    x, y = blobs(samples=100)

    class Steps(Callback):
        def __init__(self):
            self.seen = []

        def on_batch_begin(self, trainer, step):
            self.seen.append(step)

    first = Steps()
    _fit(epochs=2, data=(x, y), trainer={"callbacks": [first], "checkpoint_dir": tmp_path})
    assert first.seen == list(range(8))  # 4 steps of 32 per epoch
    second = Steps()
    _fit(epochs=3, data=(x, y), resume=True,
         trainer={"callbacks": [second], "checkpoint_dir": tmp_path})
    assert second.seen == [8, 9, 10, 11]


def test_callbacks_without_batch_hooks_are_not_called_per_step():
    stopper = EarlyStopping(monitor="loss", patience=5)
    model = make_model()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), callbacks=[stopper],
                      progress="none")
    assert trainer._batch_begin == [] and trainer._batch_end == []


def test_epoch_metrics_buffer_and_per_step_paths_agree():
    from tricklab.train.metrics import EpochMetrics
    from tricklab.train.metrics import metrics as registry

    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(70, 4, generator=generator)
    targets = torch.randint(0, 4, (70,), generator=generator)
    accuracy = [registry.get("accuracy")]
    buffered = EpochMetrics(accuracy, "softmax", targets)
    stepwise = EpochMetrics(accuracy, "softmax", targets, max_buffer_bytes=0)
    for begin in range(0, 70, 32):
        batch = slice(begin, begin + 32)
        buffered.add(outputs[batch], begin, targets[batch])
        stepwise.add(outputs[batch], begin, targets[batch])
    expected = int((outputs.argmax(1) == targets).sum()) / 70
    assert buffered.outputs is not None and stepwise.outputs is None
    assert float(buffered.values(70)[0]) == float(stepwise.values(70)[0]) == expected
    assert float(buffered.values(32)[0]) == int(
        (outputs[:32].argmax(1) == targets[:32]).sum()) / 32


def test_compile_starts_a_phase_and_history_continues():
    """The book's recipe: frozen bottom for a few epochs, then everything at a lower rate."""
    x, y = blobs(samples=200)
    model = frozen_bottom_model()
    bottom = [p.clone() for p in model[:3].parameters()]
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainer = Trainer(model, torch.optim.SGD(trainable, lr=0.1), seed=1, progress="none")
    first = trainer.fit(x, y, epochs=2, batch_size=32)
    assert first.epochs_run == 2 and first.cached_layers == 3
    assert all(torch.equal(a, b) for a, b in zip(bottom, model[:3].parameters(), strict=True))
    for layer in model:
        layer.trainable = True
    trainer.compile(torch.optim.SGD(model.parameters(), lr=0.01))
    second = trainer.fit(x, y, epochs=5, batch_size=32, initial_epoch=2)
    assert second.epochs_run == 5 and second.cached_layers == 0
    assert second.history["lr"] == [0.1, 0.1, 0.01, 0.01, 0.01]
    assert second.history["loss"][:2] == first.history["loss"]
    assert trainer.global_step == 5 * math.ceil(200 / 32)
    assert not all(torch.equal(a, b) for a, b in zip(bottom, model[:3].parameters(), strict=True))


# --- Keras-style data: NumPy arrays and lists, converted once (issue 14, point 5) ---

DIGITS_MLP = [{"dense": {"units": 64, "activation": "relu"}},
              {"dense": {"units": 10, "activation": "softmax"}}]


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits: 1797 x 64 float64 pixels in 0-16, int64 labels."""
    return load_digits(return_X_y=True)


def _digits_trainer(seed=0, **options):
    torch.manual_seed(seed)
    model = tricklab.build_model([64], DIGITS_MLP)
    optimizer = tricklab.make_optimizer("adam", model.parameters(), learning_rate=1e-3)
    return Trainer(model, optimizer, metrics=["accuracy"], progress="none", seed=seed,
                   **options)


def test_digits_as_numpy_train_evaluate_and_predict(digits):
    x, y = digits
    assert x.dtype == np.float64 and y.dtype == np.int64
    trainer = _digits_trainer()
    # The last fifth of digits is harder than the rest: validation accuracy levels
    # off at 0.91-0.93 by epoch 40 over seeds 0-4 (0.89-0.92 at epoch 20).
    result = trainer.fit(x, y, epochs=40, validation_split=0.2)
    assert result.status == "completed"
    assert result.history["val_accuracy"][-1] > 0.9
    scores = trainer.evaluate(x, y)
    assert scores["accuracy"] > 0.9
    held_out = trainer.evaluate(x[1437:], y[1437:])
    assert held_out["loss"] == pytest.approx(result.history["val_loss"][-1])
    probabilities = trainer.predict(x)
    assert isinstance(probabilities, np.ndarray) and probabilities.dtype == np.float32
    assert probabilities.shape == (1797, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # A tensor still gives a tensor, with the same values.
    as_tensor = trainer.predict(torch.tensor(x, dtype=torch.float32))
    assert isinstance(as_tensor, torch.Tensor)
    assert torch.equal(as_tensor, torch.from_numpy(probabilities))


def test_validation_split_holds_out_the_last_samples_as_keras_counts(digits):
    """Keras trains on the first int(N * (1 - split)): 1437 of 1797 at 0.2, not 1797 - 359."""
    x, y = digits
    trainer = _digits_trainer()
    result = trainer.fit(x, y, epochs=1, batch_size=1437, shuffle=False, validation_split=0.2)
    assert trainer.steps_per_epoch == 1 and trainer.global_step == 1  # 1438 would take 2
    assert result.history["val_loss"] == [pytest.approx(trainer.evaluate(x[1437:], y[1437:])
                                                        ["loss"])]


@pytest.mark.parametrize(("samples", "split", "trained"),
                         [(10, 0.3, 7), (10, 0.1, 9), (3, 0.5, 1), (7, 0.85, 1), (101, 0.25, 75)])
def test_validation_split_point_is_kerass_floor_of_n_times_one_minus_split(
    digits, samples, split, trained
):
    x, y = digits
    trainer = _digits_trainer()
    trainer.fit(x[:samples], y[:samples], epochs=1, batch_size=1, validation_split=split)
    assert trainer.global_step == trained == math.floor(samples * (1.0 - split))


def test_validation_data_overrides_validation_split(digits):
    x, y = digits
    trainer = _digits_trainer()
    result = trainer.fit(x[:1500], y[:1500], epochs=1, batch_size=1500,
                         validation_data=(x[1500:], y[1500:]), validation_split=0.5)
    assert trainer.global_step == 1  # all 1500 trained: nothing was split off
    assert result.history["val_loss"] == [pytest.approx(trainer.evaluate(x[1500:], y[1500:])
                                                        ["loss"])]


def test_numpy_float64_and_float32_tensor_paths_train_bit_identical_weights(digits):
    x, y = digits
    paths = {
        "numpy float64": (x, y),
        "tensor float32": (torch.tensor(x, dtype=torch.float32), torch.from_numpy(y)),
        "float labels, list": (x.tolist(), y.astype(np.float64)),
    }
    weights = {}
    for name, (inputs, targets) in paths.items():
        trainer = _digits_trainer(seed=3)
        trainer.fit(inputs, targets, epochs=2, validation_split=0.2)
        weights[name] = [p.detach().clone() for p in trainer.model.parameters()]
    reference = weights.pop("numpy float64")
    for name, parameters in weights.items():
        assert all(torch.equal(p, q) for p, q in zip(reference, parameters, strict=True)), name


class _SeenInEvaluation(nn.Module):
    """A linear classifier that records the storage of each inference-mode input batch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(64, 10)
        self.storages: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            self.storages.append(x.untyped_storage().data_ptr())
        return self.linear(x)


def test_float32_data_reaches_the_model_without_a_copy(digits):
    x, y = digits
    array = np.ascontiguousarray(x, dtype=np.float32)
    tensor = torch.tensor(x, dtype=torch.float32)
    model = _SeenInEvaluation()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.01), progress="none",
                      loss={"sparse_categorical_crossentropy": {"from_logits": True}})
    trainer.fit(array, y, epochs=1, validation_split=0.5)
    trainer.fit(tensor, y, epochs=1, validation_data=(tensor[:1000], y[:1000]))  # one chunk
    trainer.evaluate(array, y, batch_size=2048)
    trainer.predict(tensor, batch_size=2048)
    trainer.predict(array, batch_size=2048)
    array_at = array.__array_interface__["data"][0]
    tensor_at = tensor.untyped_storage().data_ptr()
    assert model.storages == [array_at, tensor_at, array_at, tensor_at, array_at]
    # A float64 array is converted, once: another storage.
    trainer.predict(x, batch_size=2048)
    assert model.storages[-1] != x.__array_interface__["data"][0]


def test_integer_inputs_keep_their_values(digits):
    """uint8 pixels become float32 0-16 as given, never silently divided by 255."""
    x, _ = digits
    trainer = _digits_trainer()
    as_uint8 = trainer.predict(x.astype(np.uint8))
    assert np.array_equal(as_uint8, trainer.predict(x.astype(np.float32)))
    assert not np.allclose(as_uint8, trainer.predict(x.astype(np.float32) / 255))


def test_diabetes_regression_with_float64_targets():
    x, y = load_diabetes(return_X_y=True)
    assert x.dtype == np.float64 and y.dtype == np.float64
    torch.manual_seed(0)
    model = tricklab.build_model([10], [{"dense": {"units": 32, "activation": "relu"}},
                                        {"dense": {"units": 1}}])
    optimizer = tricklab.make_optimizer("adam", model.parameters(), learning_rate=1e-2)
    trainer = Trainer(model, optimizer, loss="mse", metrics=[], progress="none")
    result = trainer.fit(x, y, epochs=10, validation_split=0.2)
    validation = result.history["val_loss"]
    assert all(later < earlier for earlier, later in itertools.pairwise(validation))
    # Keras holds out 442 - int(442 * 0.8) = 89 samples: the last 89.
    assert validation[-1] < 0.6 * validation[0]
    assert trainer.evaluate(x[353:], y[353:])["loss"] == pytest.approx(validation[-1])


def _refusal(call) -> str:
    with pytest.raises(UserInputError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bad_data_is_one_line_and_trains_nothing(digits):
    x, y = digits
    trainer = _digits_trainer()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    message = _refusal(lambda: trainer.fit(x, y[:100]))
    assert "x has 1797 samples and y has 100" in message
    message = _refusal(lambda: trainer.fit(x[:10], y[:10], validation_data=(x[:5], y[:4])))
    assert "validation_data[0] has 5 samples and validation_data[1] has 4" in message
    strings = np.array([["a", "b"]] * 10, dtype=object)
    assert "x: a NumPy array of dtype object" in _refusal(lambda: trainer.fit(strings, y[:10]))
    assert "x: ['a', 'b'] is not an array of numbers" in _refusal(
        lambda: trainer.fit(["a", "b"], [0, 1]))
    assert "y: sample 1 has target 1.5" in _refusal(lambda: trainer.fit(x[:3], [0, 1.5, 2]))
    assert "y: sample 2 has target -1" in _refusal(lambda: trainer.evaluate(x[:3], [0, 1, -1]))
    assert "validation_data: a tuple of 3" in _refusal(
        lambda: trainer.fit(x[:10], y[:10], validation_data=(x, y, y)))
    assert "x: no samples" in _refusal(lambda: trainer.predict(x[:0]))
    assert all(torch.equal(p, q) for p, q in zip(before, trainer.model.parameters(), strict=True))
    assert trainer.history == {}


def test_categorical_crossentropy_labels_are_checked_like_sparse_ones(digits):
    x, _ = digits
    model = tricklab.build_model([64], [{"dense": {"units": 10, "activation": "softmax"}}])
    trainer = Trainer(model, tricklab.make_optimizer("adam", model.parameters()),
                      loss="categorical_crossentropy", progress="none")
    assert "y: sample 2 has target -1; CategoricalCrossentropy takes class indices" in _refusal(
        lambda: trainer.fit(x[:3], [0, 1, -1]))
    assert "y: sample 0 has target 0.5" in _refusal(lambda: trainer.fit(x[:3], [0.5, 1, 2]))


@pytest.mark.parametrize("split", [1.0, -0.1, 1.5, float("nan"), "0.2", True])
def test_validation_split_out_of_range_is_one_line(digits, split):
    x, y = digits
    message = _refusal(lambda: _digits_trainer().fit(x, y, validation_split=split))
    assert message.startswith("validation_split: ") and "[0, 1)" in message


def test_validation_split_leaving_no_sample_on_a_side_is_one_line(digits):
    x, y = digits
    message = _refusal(lambda: _digits_trainer().fit(x[:1], y[:1], validation_split=0.5))
    assert "leaves 0 for training and 1 for validation" in message


# --- binary, many classes and regression on real data (issue 14, point 2) ---


def standardized(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 569 tumours, 30 features standardized, 0/1 labels (1: benign)."""
    x, y = load_breast_cancer(return_X_y=True)
    return standardized(x), y


def diabetes() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 442 patients, 10 features and the disease progression, both standardized."""
    x, y = load_diabetes(return_X_y=True)
    return standardized(x), standardized(y[:, None])[:, 0]


TASKS = {
    # name: (data, layers, loss, metrics)
    "binary": (breast_cancer, [{"dense": {"units": 16, "activation": "relu"}},
                               {"dense": {"units": 1, "activation": "sigmoid"}}],
               "binary_crossentropy", ["accuracy", "auc", "precision", "recall"]),
    "regression": (diabetes, [{"dense": {"units": 32, "activation": "relu"}},
                              {"dense": {"units": 1}}],
                   "huber", ["mae", "mse", "rmse"]),
    "digits": (lambda: load_digits(return_X_y=True), DIGITS_MLP, "categorical_crossentropy",
               ["accuracy", {"top_k_accuracy": {"k": 3}}, "precision", "recall"]),
}
"""Real data for each kind of task: its data, model, loss and metrics."""


def task_trainer(task: str, seed: int = 0, learning_rate: float = 1e-2) -> Trainer:
    data, layers, loss, metrics = TASKS[task]
    torch.manual_seed(seed)
    model = tricklab.build_model([data()[0].shape[1]], layers)
    optimizer = tricklab.make_optimizer("adam", model.parameters(), learning_rate=learning_rate)
    return Trainer(model, optimizer, loss=loss, metrics=metrics, progress="none", seed=seed)


def expected_scores(trainer: Trainer, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Each metric of the trainer's model on `(x, y)`, from the NumPy references."""
    probabilities = trainer.predict(x).astype(np.float64)
    return {name: reference(name, probabilities, y, metric.get_config())
            for name, metric in zip(trainer.metric_names, trainer.metrics, strict=True)}


@pytest.mark.parametrize("task", TASKS)
def test_validation_and_test_metrics_match_the_references(task):
    """A short fit reports `val_` metrics per epoch; `evaluate` gives the final ones."""
    x, y = TASKS[task][0]()
    parts = {"train": slice(0, 300), "val": slice(300, 400), "test": slice(400, None)}
    (x_train, y_train), validation, (x_test, y_test) = ((x[p], y[p]) for p in parts.values())
    trainer = task_trainer(task)
    result = trainer.fit(x_train, y_train, epochs=8, validation_data=validation)
    names = trainer.metric_names
    assert set(result.history) == {"loss", "val_loss", "lr", "time_s", *names,
                                   *(f"val_{name}" for name in names)}
    validation_scores = trainer.evaluate(*validation)
    test_scores = trainer.evaluate(x_test, y_test)
    for name in names:
        assert result.history[f"val_{name}"][-1] == pytest.approx(validation_scores[name])
    assert validation_scores == pytest.approx({"loss": validation_scores["loss"],
                                               **expected_scores(trainer, *validation)})
    assert test_scores == pytest.approx({"loss": test_scores["loss"],
                                         **expected_scores(trainer, x_test, y_test)})
    if task == "regression":
        assert test_scores["rmse"] == pytest.approx(math.sqrt(test_scores["mse"]))
        # It learned: better than predicting the training mean.
        assert test_scores["mae"] < np.abs(y_test - y_train.mean()).mean()
    else:
        assert test_scores["accuracy"] > 0.85
    if task == "binary":
        assert test_scores["auc"] > 0.95


@pytest.mark.parametrize("task", TASKS)
def test_training_epoch_metrics_match_the_references(task):
    """At a learning rate of 0 the model is the same all epoch: the epoch's metrics are its own."""
    x, y = TASKS[task][0]()
    trainer = task_trainer(task, learning_rate=0.0)
    result = trainer.fit(x, y, epochs=1, batch_size=50)
    logged = {name: result.history[name][0] for name in trainer.metric_names}
    assert logged == pytest.approx(expected_scores(trainer, x, y))


def test_categorical_crossentropy_trains_alike_on_labels_and_one_hot_rows():
    x, y = load_digits(return_X_y=True)
    one_hot = np.eye(10)[y]
    histories = []
    for targets in (y, one_hot):
        trainer = task_trainer("digits", seed=1)
        histories.append(trainer.fit(x[:1200], targets[:1200], epochs=3,
                                     validation_data=(x[1200:], targets[1200:])).history)
    labels, rows = histories
    for key in labels.keys() - {"time_s"}:
        assert rows[key] == pytest.approx(labels[key], rel=1e-5), key
