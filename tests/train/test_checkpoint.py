import copy

import pytest
import torch
from torch import nn

from tricklab.train import CheckpointManager, EarlyStopping, Trainer
from tricklab.train.checkpoint import CheckpointMismatch

from .conftest import SoftmaxMLP, blobs, make_model


def test_keeps_the_newest_files(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    for epoch in range(1, 5):
        manager.save(epoch, {"epoch": epoch, "w": torch.full((3,), float(epoch))})
    assert [p.name for p in manager.paths()] == ["epoch_0003.pt", "epoch_0004.pt"]
    assert manager.load_latest()["epoch"] == 4
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupt_latest_falls_back_to_previous_with_a_warning(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save(1, {"epoch": 1})
    latest = manager.save(2, {"epoch": 2})
    latest.write_bytes(latest.read_bytes()[:20])
    with pytest.warns(RuntimeWarning, match="epoch_0002.pt is unreadable"):
        assert manager.load_latest()["epoch"] == 1


class _Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_loading_never_unpickles_objects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manager = CheckpointManager(tmp_path / "checkpoints")
    manager.save(1, {"epoch": 1})
    torch.save({"x": _Payload()}, tmp_path / "checkpoints" / "epoch_0002.pt")
    with pytest.warns(RuntimeWarning, match="epoch_0002.pt is unreadable"):
        assert manager.load_latest()["epoch"] == 1
    assert not (tmp_path / "PWNED").exists()


def test_no_checkpoint_gives_none(tmp_path):
    assert CheckpointManager(tmp_path / "absent").load_latest() is None


# A newest checkpoint that is readable but does not fit the run resuming from it.

def _trainer(model, folder=None, callbacks=()):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return Trainer(model, optimizer, seed=4, checkpoint_dir=folder, callbacks=callbacks,
                   progress="none")


def _uninterrupted(epochs=4, callbacks=()):
    """The weights of the same run trained straight through, without checkpoints."""
    model = make_model(4)
    _trainer(model, callbacks=callbacks).fit(*blobs(), epochs=epochs)
    return model


def _resume(folder, epochs=4, callbacks=()):
    """Resume in a fresh model (other initial weights, other global RNG state)."""
    torch.manual_seed(123)
    model = make_model(99)
    with pytest.warns(RuntimeWarning) as record:
        result = _trainer(model, folder, callbacks).fit(*blobs(), epochs=epochs, resume=True)
    messages = [str(warning.message) for warning in record if warning.category is RuntimeWarning]
    return model, result, messages


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


class WiderMLP(SoftmaxMLP):
    """The same keys as `SoftmaxMLP`, other shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 3))


class DeeperMLP(SoftmaxMLP):
    """More layers than `SoftmaxMLP`: keys it does not have."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                                  nn.Linear(16, 3))


@pytest.mark.parametrize(("other", "cause"), [
    (WiderMLP, "model.body.0.weight: shape [32, 4] in the checkpoint, [16, 4] in the run"),
    (DeeperMLP, "model: unexpected keys body.4.weight, body.4.bias"),
])
def test_newest_checkpoint_of_another_model_falls_back_to_the_previous_one(
    tmp_path, other, cause
):
    _trainer(make_model(4), tmp_path).fit(*blobs(), epochs=2)
    # Another run's trainer writes epoch 3 into the same folder (and prunes epoch 1).
    torch.manual_seed(0)
    _trainer(other(), tmp_path).fit(*blobs(), epochs=3, initial_epoch=2)
    assert [path.name for path in CheckpointManager(tmp_path).paths()] == [
        "epoch_0002.pt", "epoch_0003.pt"]
    model, result, messages = _resume(tmp_path)
    assert messages == [
        f"checkpoint {tmp_path / 'epoch_0003.pt'} does not fit this run ({cause}); "
        "falling back to the previous one"
    ]
    assert result.resumed_from == 2 and result.epochs_run == 4
    assert _same_weights(model, _uninterrupted())


def _rename_keys(state):
    state["model"] = {f"module.{key}": value for key, value in state["model"].items()}


def _wrong_momentum(state):
    state["optimizer"]["state"][0]["momentum_buffer"] = torch.zeros(3)


def _optimizer_of_other_parameters(state):
    state["optimizer"]["param_groups"][0]["params"] = [0, 1]


def _not_a_tensor(state):
    state["model"]["body.2.bias"] = [0.0, 0.0, 0.0]


def _integer_weights(state):
    state["model"]["body.0.weight"] = torch.zeros(16, 4, dtype=torch.int64)


def _not_a_mapping(state):
    return [state["epoch"], state["model"]]


def _no_rng(state):
    del state["rng"]


@pytest.mark.parametrize(("damage", "cause"), [
    (_rename_keys, "model: missing keys body.0.weight, body.0.bias, body.2.weight and 1 more; "
                   "unexpected keys module.body.0.weight, module.body.0.bias, "
                   "module.body.2.weight and 1 more"),
    (_wrong_momentum, "optimizer.state.0.momentum_buffer: shape [3] in the checkpoint, "
                      "the parameter's is [16, 4]"),
    (_optimizer_of_other_parameters, "optimizer: parameter group 0 has 2 parameters in the "
                                     "checkpoint, 4 in the optimizer"),
    (_not_a_tensor, "model.body.2.bias: a list, not a tensor"),
    (_integer_weights, "model.body.0.weight: dtype torch.int64 in the checkpoint, "
                       "torch.float32 in the run"),
    (_not_a_mapping, "it holds a list, not a checkpoint's mapping"),
    (_no_rng, "no 'rng' entry"),
], ids=lambda value: getattr(value, "__name__", "")[1:])
def test_newest_checkpoint_that_does_not_fit_falls_back_to_the_previous_one(
    tmp_path, damage, cause
):
    _trainer(make_model(4), tmp_path).fit(*blobs(), epochs=2)
    state = torch.load(tmp_path / "epoch_0002.pt", weights_only=True)
    torch.save(damage(state) or state, tmp_path / "epoch_0003.pt")
    model, result, messages = _resume(tmp_path)
    assert messages == [
        f"checkpoint {tmp_path / 'epoch_0003.pt'} does not fit this run ({cause}); "
        "falling back to the previous one"
    ]
    assert result.resumed_from == 2
    assert _same_weights(model, _uninterrupted())


def test_callback_state_that_does_not_load_leaves_the_callbacks_as_they_were(tmp_path):
    def stopper():
        return [EarlyStopping(monitor="loss", patience=10)]

    _trainer(make_model(4), tmp_path, stopper()).fit(*blobs(), epochs=2)
    state = torch.load(tmp_path / "epoch_0002.pt", weights_only=True)
    state["callbacks"] = [{"wait": 7}]  # `best` and the rest are missing
    state["model"] = {key: torch.zeros_like(value) for key, value in state["model"].items()}
    torch.save(state, tmp_path / "epoch_0003.pt")
    model, result, messages = _resume(tmp_path, callbacks=stopper())
    assert messages == [
        f"checkpoint {tmp_path / 'epoch_0003.pt'} does not fit this run (the state of the "
        "callback EarlyStopping does not load (KeyError: 'best')); "
        "falling back to the previous one"
    ]
    assert result.resumed_from == 2
    assert _same_weights(model, _uninterrupted(callbacks=stopper()))


def test_when_no_checkpoint_fits_training_starts_over_untouched(tmp_path):
    _trainer(make_model(4), tmp_path).fit(*blobs(), epochs=2)
    first, second = CheckpointManager(tmp_path).paths()
    # Only the last tensor is of another shape: a load that copies tensor by tensor
    # until it meets it would leave a half-restored model.
    state = torch.load(first, weights_only=True)
    state["model"]["body.2.bias"] = torch.zeros(5)
    torch.save(state, first)
    second.write_bytes(b"not a checkpoint")
    torch.manual_seed(4)
    model = make_model(4)
    initial = copy.deepcopy(model)
    trainer = _trainer(model, tmp_path)
    with pytest.warns(RuntimeWarning) as record:
        assert trainer._restore() is None
    assert [str(warning.message) for warning in record] == [
        f"checkpoint {second} is unreadable (UnpicklingError: Unsupported operand 110); "
        "falling back to the previous one",
        f"checkpoint {first} does not fit this run (model.body.2.bias: shape [5] in the "
        "checkpoint, [3] in the run); no earlier checkpoint is left: training starts over",
    ]
    assert _same_weights(model, initial) and trainer.history == {}
    with pytest.warns(RuntimeWarning):
        result = trainer.fit(*blobs(), epochs=4, resume=True)
    assert result.resumed_from == 0 and result.epochs_run == 4
    assert _same_weights(model, _uninterrupted())


def test_load_latest_skips_what_accept_refuses(tmp_path):
    manager = CheckpointManager(tmp_path, keep=3)
    for epoch in (1, 2, 3):
        manager.save(epoch, {"epoch": epoch})

    def accept(state):
        if state["epoch"] == 3:
            raise CheckpointMismatch("epoch 3 is refused")
        if state["epoch"] == 2:
            raise KeyError("weights")

    with pytest.warns(RuntimeWarning) as record:
        assert manager.load_latest(accept) == {"epoch": 1}
    assert [str(warning.message) for warning in record] == [
        f"checkpoint {tmp_path / 'epoch_0003.pt'} does not fit this run (epoch 3 is refused); "
        "falling back to the previous one",
        f"checkpoint {tmp_path / 'epoch_0002.pt'} does not fit this run (KeyError: 'weights'); "
        "falling back to the previous one",
    ]
    with pytest.warns(RuntimeWarning) as record:
        assert manager.load_latest(lambda state: accept({"epoch": 3})) is None
    assert len(record) == 3 and str(record[-1].message) == (
        f"checkpoint {tmp_path / 'epoch_0001.pt'} does not fit this run (epoch 3 is refused); "
        "no earlier checkpoint is left: training starts over"
    )
