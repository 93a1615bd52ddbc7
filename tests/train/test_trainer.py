import math

import pytest
import torch
from torch import nn

from tricklab.train import Callback, EarlyStopping, Trainer

from .conftest import blobs, make_model
from .test_feature_cache import frozen_bottom_model


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
    buffered = EpochMetrics(accuracy, logits=True, targets=targets)
    stepwise = EpochMetrics(accuracy, logits=True, targets=targets, max_buffer_bytes=0)
    for begin in range(0, 70, 32):
        batch = slice(begin, begin + 32)
        buffered.add(outputs[batch], begin, targets[batch])
        stepwise.add(outputs[batch], begin, targets[batch])
    expected = int((outputs.argmax(1) == targets).sum())
    assert buffered.outputs is not None and stepwise.outputs is None
    assert int(buffered.sums(70)[0]) == int(stepwise.sums(70)[0]) == expected
    assert int(buffered.sums(32)[0]) == int((outputs[:32].argmax(1) == targets[:32]).sum())


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
