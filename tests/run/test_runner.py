import csv
import json

import pytest
import torch
import yaml

from tricklab.errors import UserInputError
from tricklab.nn import build_model
from tricklab.recipe import recipe_from_dict
from tricklab.run import train_recipe

SMALL = {
    "name": "small",
    "seed": 3,
    "data": {"dataset": "fashion_mnist", "validation": 500},
    "model": {
        "layers": [
            "flatten",
            {"dense": {"units": 32, "kernel_initializer": "he_normal"}},
            "leaky_relu",
            {"dense": {"units": 10, "activation": "softmax"}},
        ]
    },
    "train": {"optimizer": {"name": "sgd", "learning_rate": 0.05}, "epochs": 2,
              "metrics": ["accuracy"]},
}


def recipe(**changes):
    document = json.loads(json.dumps(SMALL))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            document[section][field] = value
        else:
            document[section] = value
    return recipe_from_dict(document)


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_run_directory_follows_the_contract(fixture_data, tmp_path):
    outcome = train_recipe(recipe(), out=tmp_path / "run", progress="none")
    run = tmp_path / "run"
    assert outcome.exit_code == 0
    result = json.loads((run / "result.json").read_text())
    for key in ("name", "seed", "status", "metrics", "epochs_run", "best_epoch", "wall_time_s",
                "params", "history", "versions"):
        assert key in result
    assert result["status"] == "completed" and result["epochs_run"] == 2
    assert set(result["metrics"]) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                      "test_loss", "test_accuracy"}
    assert result["params"] == 784 * 32 + 32 + 32 * 10 + 10
    assert set(result["versions"]) == {"tricklab", "torch", "python"}
    assert result["dataset"] == {"name": "fashion_mnist", "train": 1500, "val": 500, "test": 500}
    stored = yaml.safe_load((run / "recipe.yaml").read_text())
    assert stored["model"]["layers"][1]["dense"]["bias_initializer"] == "zeros"
    with (run / "history.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert float(rows[1]["val_accuracy"]) == pytest.approx(result["history"]["val_accuracy"][1])
    assert (run / "plots" / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["epoch_0001.pt", "epoch_0002.pt"]
    assert not list(run.rglob("*.tmp"))


def test_same_seed_same_metrics_different_seed_differs(fixture_data, tmp_path):
    first = train_recipe(recipe(), out=tmp_path / "a", progress="none").result
    second = train_recipe(recipe(), out=tmp_path / "b", progress="none").result
    other = train_recipe(recipe(seed=4), out=tmp_path / "c", progress="none").result
    assert first["metrics"] == second["metrics"]
    assert first["history"]["loss"] == second["history"]["loss"]
    assert first["metrics"] != other["metrics"]


def test_existing_run_is_never_overwritten_without_asking(fixture_data, tmp_path):
    run = tmp_path / "run"
    train_recipe(recipe(), out=run, progress="none")
    before = snapshot(run)
    with pytest.raises(UserInputError, match="already holds a run; pass --resume"):
        train_recipe(recipe(), out=run, progress="none")
    with pytest.raises(UserInputError, match="recipe differs from the one stored"):
        train_recipe(recipe(seed=9), out=run, resume=True, progress="none")
    assert snapshot(run) == before


def test_missing_dataset_changes_nothing(isolated, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text("name: earlier\ntrain: {}\n")
    (run / "result.json").write_text('{"epochs_run": 1}')
    before = snapshot(run)
    monkeypatch.setenv("TRICKLAB_DATA_URL", "http://127.0.0.1:9/")
    with pytest.raises(UserInputError, match="dataset 'fashion_mnist' not found"):
        train_recipe(recipe(), out=run, overwrite=True, progress="none")
    assert snapshot(run) == before


def test_resume_continues_to_more_epochs(fixture_data, tmp_path):
    straight = train_recipe(recipe(train__epochs=3), out=tmp_path / "a", progress="none")
    train_recipe(recipe(), out=tmp_path / "b", progress="none")
    resumed = train_recipe(recipe(train__epochs=3), out=tmp_path / "b", resume=True,
                           progress="none")
    assert resumed.result["resumed_from_epoch"] == 2
    assert resumed.result["metrics"] == straight.result["metrics"]
    a = torch.load(tmp_path / "a/checkpoints/epoch_0003.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b/checkpoints/epoch_0003.pt", weights_only=True)["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_divergence_is_recorded(fixture_data, tmp_path):
    diverging = recipe(
        data={"dataset": "fashion_mnist", "validation": 500, "scale": "none"},
        train__optimizer={"name": "sgd", "learning_rate": 100.0},
    )
    outcome = train_recipe(diverging, out=tmp_path / "run", progress="none")
    assert outcome.exit_code == 3
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "diverged"
    assert result["metrics"]["train_loss"] is None
    assert not (tmp_path / "run" / "model").exists()  # a diverged model is not kept


def test_the_final_model_is_saved_and_loads_to_the_same_predictions(fixture_data, tmp_path):
    from tricklab.data import load_dataset
    from tricklab.transfer import load_model

    outcome = train_recipe(recipe(), out=tmp_path / "run", progress="none")
    model, optimizer = load_model(tmp_path / "run" / "model", optimizer=True)
    assert type(optimizer).__name__ == "SGD"
    test = load_dataset("fashion_mnist", validation=500).test
    model.eval()
    with torch.no_grad():
        accuracy = (model(test.x).argmax(1) == test.y).double().mean().item()
    assert accuracy == pytest.approx(outcome.result["metrics"]["test_accuracy"], abs=1e-12)


def phased(**train):
    """SMALL with a frozen bottom, then everything at a lower rate (the book's two phases)."""
    document = json.loads(json.dumps(SMALL))
    document["model"]["layers"][1]["dense"]["trainable"] = False
    document["train"].pop("epochs")
    document["train"]["phases"] = [
        {"epochs": 2},
        {"epochs": 2, "trainable": "all",
         "optimizer": {"name": "sgd", "learning_rate": 0.005, "momentum": 0.9}},
    ]
    document["train"].update(train)
    return recipe_from_dict(document)


def test_phases_train_in_order_with_continuous_history(fixture_data, tmp_path):
    outcome = train_recipe(phased(), out=tmp_path / "run", progress="none")
    result = outcome.result
    assert result["epochs_run"] == 4 and result["history"]["lr"] == [0.05, 0.05, 0.005, 0.005]
    stored = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert stored["train"]["epochs"] == 4
    assert stored["train"]["phases"][0]["optimizer"]["name"] == "sgd"  # inherited, resolved
    train_recipe(phased(phases=[{"epochs": 2}]), out=tmp_path / "first", progress="none")
    first = torch.load(tmp_path / "first/checkpoints/epoch_0002.pt", weights_only=True)
    last = torch.load(tmp_path / "run/checkpoints/epoch_0004.pt", weights_only=True)
    torch.manual_seed(SMALL["seed"])
    initial = build_model([28, 28], stored["model"]["layers"])[1].weight
    assert torch.equal(first["model"]["1.weight"], initial)  # frozen in the first phase
    assert not torch.equal(last["model"]["1.weight"], initial)
    # The second phase's optimizer was rebuilt: momentum buffers exist only there.
    assert not any("velocity" in s for s in first["optimizer"]["state"].values())
    assert all("velocity" in s for s in last["optimizer"]["state"].values())
    assert len(last["optimizer"]["state"]) == 4  # over every parameter now
    assert (first["phase"], last["phase"]) == (0, 1)


def test_cached_and_uncached_phases_give_the_same_losses(fixture_data, tmp_path):
    cached = train_recipe(phased(), out=tmp_path / "a", progress="none").result
    plain = train_recipe(phased(cache_frozen_features=False), out=tmp_path / "b",
                         progress="none").result
    # flatten, the frozen dense and its leaky_relu
    assert cached["cached_frozen_layers"] == 3 and plain["cached_frozen_layers"] == 0
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert cached["history"][key] == pytest.approx(plain["history"][key], rel=1e-5), key


@pytest.mark.parametrize("stop_after", [1, 2, 3])
def test_a_run_interrupted_in_any_phase_resumes_to_the_same_weights(
    fixture_data, tmp_path, monkeypatch, stop_after
):
    from tricklab.train import Trainer

    straight = train_recipe(phased(), out=tmp_path / "straight", progress="none")
    original = Trainer._train_epoch
    calls = []

    def interrupted(self, *args, **kwargs):
        if len(calls) == stop_after:
            raise KeyboardInterrupt
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    stopped = train_recipe(phased(), out=tmp_path / "resumed", progress="none")
    assert stopped.exit_code == 130
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    resumed = train_recipe(phased(), out=tmp_path / "resumed", resume=True, progress="none")
    assert resumed.result["resumed_from_epoch"] == stop_after
    assert resumed.result["history"]["loss"] == straight.result["history"]["loss"]
    a = torch.load(tmp_path / "straight/checkpoints/epoch_0004.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed/checkpoints/epoch_0004.pt", weights_only=True)["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"epochs": 5}, r"^train\.epochs: 5 differs from the phases' total 4"),
        ({"schedule": {"exponential": {"decay_steps": 10}}},
         r"^train\.schedule: with phases, give each phase its own schedule"),
        ({"phases": [{"epochs": 1, "trainable": "new"}]},
         r"^train\.phases\.0\.trainable: 'new' means the layers after model\.reuse's"),
        ({"phases": [{"epochs": 1, "trainable": "some"}]},
         r"^train\.phases\.0\.trainable: expected a slice"),
        ({"phases": [{"epochs": 1, "learning_rate": 0.1}]},
         r"^train\.phases\.0: unknown key 'learning_rate'; accepted keys: epochs, optimizer, "
         r"schedule, trainable"),
        ({"phases": [{"epochs": 0}]}, r"^train\.phases\.0\.epochs: input should be greater than 0"),
        ({"phases": [{"epochs": 1, "optimizer": {"name": "sgd", "momentum": 2}}]},
         r"^train\.phases\.0\.optimizer\.momentum"),
        ({"phases": []}, r"^train\.phases: list should have at least 1 item"),
    ],
)
def test_bad_phases_are_named(train, message):
    with pytest.raises(UserInputError, match=message):
        phased(**train)


def test_a_phase_that_freezes_everything_is_refused_before_writing(fixture_data, tmp_path):
    frozen = phased(phases=[{"epochs": 1, "trainable": "0:1"}])
    with pytest.raises(UserInputError, match=r"^train\.phases\.0\.trainable: no layer with weights"):
        train_recipe(frozen, out=tmp_path / "run", progress="none")
    assert not (tmp_path / "run").exists()


def test_an_autoencoder_learns_its_inputs_and_plots_reconstructions(fixture_data, tmp_path):
    autoencoder = recipe(
        model={"layers": ["flatten", {"dense": {"units": 16, "activation": "selu"}},
                          {"dense": {"units": 784, "activation": "sigmoid"}}]},
        train={"target": "inputs", "loss": "mse", "optimizer": "nadam", "epochs": 2},
    )
    result = train_recipe(autoencoder, out=tmp_path / "ae", progress="none").result
    history = result["history"]["loss"]
    assert history[1] < history[0]
    from tricklab.data import load_dataset
    from tricklab.transfer import load_model

    test = load_dataset("fashion_mnist", validation=500).test
    model = load_model(tmp_path / "ae" / "model").eval()
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(model(test.x), test.x.reshape(len(test.x), -1))
    assert result["metrics"]["test_loss"] == pytest.approx(expected.item(), rel=1e-5)
    png = (tmp_path / "ae" / "plots" / "reconstructions.png").read_bytes()
    assert png[:4] == b"\x89PNG"


def test_augmentations_listed_in_the_recipe_are_resolved_and_applied(fixture_data, tmp_path):
    augmented = recipe(data={"dataset": "fashion_mnist", "validation": 500,
                             "augment": ["random_flip", {"random_rotation": {"factor": 0.02}}]})
    assert augmented.data["augment"] == [{"random_flip": {"mode": "horizontal"}},
                                         {"random_rotation": {"factor": 0.02, "fill_value": 0.0}}]
    first = train_recipe(augmented, out=tmp_path / "a", progress="none").result
    again = train_recipe(augmented, out=tmp_path / "b", progress="none").result
    plain = train_recipe(recipe(), out=tmp_path / "c", progress="none").result
    assert first["history"]["loss"] == again["history"]["loss"]  # reproducible from the seed
    assert first["history"]["loss"] != plain["history"]["loss"]


CONVOLUTIONAL = [
    {"conv2d": {"filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"}},
    {"max_pool2d": {"pool_size": 2}},
    "flatten",
    {"dense": {"units": 10, "activation": "softmax"}},
]


def test_channels_last_recipe_views_the_images_and_records_device_and_precision(
    fixture_data, tmp_path
):
    plain = train_recipe(recipe(model={"input_shape": [28, 28, 1], "layers": CONVOLUTIONAL}),
                         out=tmp_path / "fp32", progress="none")
    assert plain.result["device"] == "cpu" and plain.result["precision"] == "fp32"
    assert plain.result["params"] == 3 * 3 * 4 + 4 + 14 * 14 * 4 * 10 + 10
    # bf16 autocast with channels-last memory: the same network learns about as well.
    fast = train_recipe(recipe(model={"input_shape": [28, 28, 1], "layers": CONVOLUTIONAL},
                               train={**SMALL["train"], "precision": "bf16",
                                      "channels_last": True}),
                        out=tmp_path / "bf16", progress="none")
    assert fast.exit_code == 0 and fast.result["precision"] == "bf16"
    assert fast.result["metrics"]["test_accuracy"] == pytest.approx(
        plain.result["metrics"]["test_accuracy"], abs=0.05)
    assert plain.result["metrics"]["test_accuracy"] > 0.5


def test_an_input_shape_that_does_not_fit_the_data_is_named(fixture_data, tmp_path):
    bad = recipe(model={"input_shape": [28, 27, 1], "layers": CONVOLUTIONAL})
    with pytest.raises(UserInputError, match=r"^model\.input_shape: \[28, 27, 1\] does not fit "
                                             r"the data's samples of shape \[28, 28\]"):
        train_recipe(bad, out=tmp_path / "run", progress="none")
    assert not (tmp_path / "run").exists()


def test_a_convolution_on_flat_images_is_told_the_input_shape_before_any_data(tmp_path):
    # The first check of the layers (the memory estimate, before the data is loaded)
    # knows the layers take the model's input, so it says which input shape would do.
    first = recipe(model={"input_shape": [28, 28], "layers": CONVOLUTIONAL})
    with pytest.raises(UserInputError) as error:
        train_recipe(first, out=tmp_path / "run", progress="none")
    assert str(error.value) == (
        "model.layers.0.conv2d: conv2d expects samples of shape (height, width, channels), "
        "got (28, 28); use input_shape [28, 28, 1]")
    after_dense = recipe(model={"input_shape": [28, 28],
                                "layers": [{"dense": {"units": 10}}, *CONVOLUTIONAL]})
    with pytest.raises(UserInputError, match=r"got \(28, 10\) from model\.layers\.0\.dense; "):
        train_recipe(after_dense, out=tmp_path / "run", progress="none")
    assert not (tmp_path / "run").exists()


def test_resume_refuses_fewer_epochs_than_the_run_has_trained(fixture_data, tmp_path):
    run = tmp_path / "run"
    train_recipe(recipe(train__epochs=2), out=run, progress="none")
    before = snapshot(run)
    with pytest.raises(UserInputError) as error:
        train_recipe(recipe(train__epochs=1), out=run, resume=True, progress="none")
    assert str(error.value) == (
        f"--resume: train.epochs is 1, but {run} has already trained 2 epochs; "
        "give train.epochs 2 or more"
    )
    assert snapshot(run) == before


def test_resume_names_the_fields_that_differ(fixture_data, tmp_path):
    run = tmp_path / "run"
    train_recipe(recipe(train__epochs=1), out=run, progress="none")
    before = snapshot(run)
    changed = recipe(seed=9, train__batch_size=64, train__epochs=3)
    with pytest.raises(UserInputError) as error:
        train_recipe(changed, out=run, resume=True, progress="none")
    assert str(error.value) == (
        f"--resume: the recipe differs from the one stored in {run / 'recipe.yaml'}: "
        "seed: 3 → 9; train.batch_size: 32 → 64 (only train.epochs may change on resume; "
        "to train the changed recipe, give another --out or pass --overwrite instead)"
    )
    # Another optimizer: its name, its rate, and 5 hyperparameters one has and the other not.
    nadam = recipe(train__optimizer={"name": "nadam", "learning_rate": 0.001})
    with pytest.raises(UserInputError) as error:
        train_recipe(nadam, out=run, resume=True, progress="none")
    assert str(error.value).startswith(
        f"--resume: the recipe differs from the one stored in {run / 'recipe.yaml'}: "
        "train.optimizer.name: 'sgd' → 'nadam'; train.optimizer.learning_rate: 0.05 → 0.001; "
        "train.optimizer.momentum: 0.0 → (not set); and 4 more (only train.epochs")
    # A layer fewer: the long list is shown by its length.
    shorter = recipe(model={"layers": ["flatten", {"dense": {"units": 10,
                                                             "activation": "softmax"}}]})
    with pytest.raises(UserInputError, match=r": model\.layers: a list of 4 → a list of 2 \("):
        train_recipe(shorter, out=run, resume=True, progress="none")
    assert snapshot(run) == before


@pytest.mark.parametrize("stored", ["name: [unclosed\n", "- a list\n", "\x00\xff binary"])
def test_resume_with_a_garbled_stored_recipe_is_one_line(fixture_data, tmp_path, stored):
    run = tmp_path / "run"
    train_recipe(recipe(train__epochs=1), out=run, progress="none")
    (run / "recipe.yaml").write_bytes(stored.encode("latin-1"))
    before = snapshot(run)
    with pytest.raises(UserInputError, match=f"^{run / 'recipe.yaml'}: ") as error:
        train_recipe(recipe(train__epochs=2), out=run, resume=True, progress="none")
    assert "\n" not in str(error.value)
    assert snapshot(run) == before


def test_a_run_that_fails_in_its_first_epoch_puts_the_old_run_back(fixture_data, small_disk):
    # A real full disk: the new, larger model's first checkpoint does not fit.
    disk = small_disk("3m")
    run = disk / "run"
    small = {"layers": ["flatten", {"dense": {"units": 8}}, {"dense": {"units": 10}}]}
    train_recipe(recipe(model=small, train__epochs=1), out=run, progress="none")
    before = snapshot(run)
    large = {"layers": ["flatten", {"dense": {"units": 2000}}, {"dense": {"units": 10}}]}
    with pytest.raises(OSError, match="No space left on device"):
        train_recipe(recipe(model=large, train__epochs=1), out=run, overwrite=True,
                     progress="none")
    assert snapshot(run) == before
    assert sorted(p.name for p in disk.iterdir()) == ["run"]
    # Without --overwrite, in a new folder: nothing is left behind.
    with pytest.raises(OSError, match="No space left on device"):
        train_recipe(recipe(model=large, train__epochs=1), out=disk / "new", progress="none")
    assert sorted(p.name for p in disk.iterdir()) == ["run"]


def _stop_at(monkeypatch, owner, name, calls_before=0):
    """Make `owner.name` raise KeyboardInterrupt (a Ctrl-C there) after `calls_before` calls."""
    original, calls = getattr(owner, name), []

    def stopped(*args, **kwargs):
        if len(calls) == calls_before:
            raise KeyboardInterrupt
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, stopped)
    return lambda: monkeypatch.setattr(owner, name, original)


def test_ctrl_c_in_the_first_epoch_says_nothing_was_saved_and_resume_starts_over(
    fixture_data, tmp_path, monkeypatch, capsys
):
    from tricklab.run.rundir import RunInterrupted
    from tricklab.train import Trainer

    run = tmp_path / "run"
    undo = _stop_at(monkeypatch, Trainer, "_train_epoch")
    with pytest.raises(RunInterrupted) as stopped:
        train_recipe(recipe(), out=run, progress="none")
    assert str(stopped.value) == ("stopped before the first epoch ended, so nothing was saved; "
                                  "run the same command again to start over")
    assert not run.exists()
    undo()
    # The same command with --resume: nothing to continue, so it starts, and says so.
    resumed = train_recipe(recipe(), out=run, resume=True, progress="lines")
    assert (f"--resume: {run} holds no run yet (a run stopped before its first epoch ended saves "
            "nothing); training starts from the beginning\n") in capsys.readouterr().err
    assert resumed.result["status"] == "completed" and resumed.result["resumed_from_epoch"] == 0
    assert resumed.result["epochs_run"] == 2


def test_ctrl_c_before_training_leaves_everything_as_it_was(fixture_data, tmp_path, monkeypatch):
    from tricklab.run import runner
    from tricklab.run.rundir import RunInterrupted

    run = tmp_path / "run"
    train_recipe(recipe(train__epochs=1), out=run, progress="none")
    before = snapshot(run)
    _stop_at(monkeypatch, runner, "load_data")
    with pytest.raises(RunInterrupted) as stopped:
        train_recipe(recipe(), out=tmp_path / "new", progress="none")
    assert str(stopped.value) == ("stopped before training began: nothing was saved; run the "
                                  "same command again to start over")
    with pytest.raises(RunInterrupted) as stopped:
        train_recipe(recipe(), out=run, overwrite=True, progress="none")
    assert str(stopped.value) == (f"stopped before training began: the earlier run in {run} is "
                                  "as it was; run the same command again to start over")
    with pytest.raises(RunInterrupted) as stopped:
        train_recipe(recipe(), out=run, resume=True, progress="none")
    assert str(stopped.value) == (f"stopped before training resumed: {run} is as it was; run the "
                                  "same command again to continue from epoch 1")
    assert snapshot(run) == before and not (tmp_path / "new").exists()


def test_ctrl_c_while_writing_the_results_keeps_the_checkpoint_to_finish_from(
    fixture_data, tmp_path, monkeypatch
):
    from tricklab.run import runner
    from tricklab.run.rundir import RunInterrupted

    run = tmp_path / "run"
    undo = _stop_at(monkeypatch, runner, "write_run")
    with pytest.raises(RunInterrupted) as stopped:
        train_recipe(recipe(), out=run, progress="none")
    assert str(stopped.value) == (
        f"stopped while writing the results: the checkpoint of epoch 2 is kept in "
        f"{run / 'checkpoints'}; add --resume to the same command to finish the run")
    assert (run / "checkpoints" / "epoch_0002.pt").is_file()
    undo()
    finished = train_recipe(recipe(), out=run, resume=True, progress="none")
    assert finished.result["status"] == "completed"
    assert finished.result["resumed_from_epoch"] == 2 and finished.result["epochs_run"] == 2


def test_resume_without_a_checkpoint_says_it_starts_over_and_keeps_the_result_if_stopped(
    fixture_data, tmp_path, monkeypatch, capsys
):
    from tricklab.run.rundir import RunInterrupted
    from tricklab.train import Trainer

    run = tmp_path / "run"
    train_recipe(recipe(train__epochs=1), out=run, progress="none")
    for checkpoint in (run / "checkpoints").iterdir():
        checkpoint.unlink()
    before = snapshot(run)
    undo = _stop_at(monkeypatch, Trainer, "_train_epoch")
    with pytest.raises(RunInterrupted) as stopped:
        train_recipe(recipe(), out=run, resume=True, progress="lines")
    assert str(stopped.value) == ("stopped before the first epoch ended, so nothing was saved; "
                                  "run the same command again to start over")
    assert (f"resume: no checkpoint in {run / 'checkpoints'}; training starts from the "
            "beginning\n") in capsys.readouterr().err
    # The earlier result.json is not replaced by an empty, interrupted one.
    assert snapshot(run) == before
    undo()
    resumed = train_recipe(recipe(), out=run, resume=True, progress="none")
    assert resumed.result["resumed_from_epoch"] == 0 and resumed.result["epochs_run"] == 2
