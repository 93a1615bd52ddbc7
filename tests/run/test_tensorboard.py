"""TensorBoard event files of runs and studies, read back with TensorBoard's own reader and plugin."""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_accumulator
from tensorboard.backend.event_processing import plugin_event_multiplexer as multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups, metadata
from tensorboard.util import tensor_util

from tricklab.cli.main import main
from tricklab.recipe import recipe_from_dict
from tricklab.recipe.study import PlannedRun
from tricklab.run.rundir import RunDirectory
from tricklab.run.runner import train_recipe
from tricklab.run.seed_group import train_seed_group
from tricklab.run.study import run_study
from tricklab.run.tensorboard_runs import StudyHParams, differing_fields

from ..conftest import TINY_RECIPE

CURVES = {
    "loss": ("train", "epoch_loss"),
    "accuracy": ("train", "epoch_accuracy"),
    "lr": ("train", "epoch_learning_rate"),
    "val_loss": ("validation", "epoch_loss"),
    "val_accuracy": ("validation", "epoch_accuracy"),
}
"""Where each `history.csv` column is in Keras's TensorBoard layout (`time_s` is not a curve)."""

SESSION_START, SESSION_END = metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG


def tiny(epochs: int = 2, **train: object) -> dict:
    return {**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "epochs": epochs, **train}}


def events(folder: Path) -> EventAccumulator:
    """Every event of one TensorBoard run folder, as TensorBoard reads them (purges included)."""
    accumulator = EventAccumulator(
        str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    return accumulator.Reload()


def scalars(accumulator: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def history_csv(run_dir: Path) -> dict[str, list[float]]:
    with (run_dir / "history.csv").open(encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == list(range(1, len(rows) + 1))
    return {key: [float(row[key]) for row in rows] for key in rows[0] if key != "epoch"}


def check_curves(run_dir: Path) -> None:
    """The curves equal `history.csv`, epoch by epoch (step = epoch - 1, as Keras counts)."""
    history = history_csv(run_dir)
    assert set(history) == {*CURVES, "time_s"}
    folders = {name: events(run_dir / "tensorboard" / name) for name in ("train", "validation")}
    for name, accumulator in folders.items():
        assert sorted(tag for tag in accumulator.Tags()["scalars"] if tag.startswith("epoch_")) == (
            sorted(tag for folder, tag in CURVES.values() if folder == name))
    for key, (folder, tag) in CURVES.items():
        logged = scalars(folders[folder], tag)
        assert [step for step, _ in logged] == list(range(len(history[key]))), key
        assert [value for _, value in logged] == pytest.approx(history[key], rel=1e-6), key


def text(accumulator: EventAccumulator, tag: str) -> list[str]:
    return [tensor_util.make_ndarray(event.tensor_proto).item().decode()
            for event in accumulator.Tensors(tag)]


def session(accumulator: EventAccumulator) -> tuple[dict, int]:
    """A run's HParams session, as the plugin parses it: its hyperparameters and end status."""
    start = metadata.parse_session_start_info_plugin_data(
        accumulator.SummaryMetadata(SESSION_START).plugin_data.content)
    end = metadata.parse_session_end_info_plugin_data(
        accumulator.SummaryMetadata(SESSION_END).plugin_data.content)
    return plain(start.hparams), end.status


def plain(hparams) -> dict:
    """HParams values (protobuf `Value`s) as Python's: strings, numbers, bools."""
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in hparams.items()}


def histograms(run_dir: Path) -> list[str]:
    board = run_dir / "tensorboard"
    return [tag for folder in (board, board / "train", board / "validation")
            for tag in events(folder).Tags()["histograms"]]


@pytest.mark.parametrize("batched", [False, True], ids=["alone", "batched-seeds"])
def test_result_json_is_written_after_the_events_are_complete(
    fixture_data, tmp_path, monkeypatch, batched
):
    # `result.json` marks a finished run: a Ctrl-C once it is written must find nothing
    # left to do, so the final events are already on disk when it is written.
    written_before: list[list[str]] = []
    write_result = RunDirectory.write_result

    def checked(run_dir: RunDirectory, result: dict) -> None:
        root = events(run_dir.path / "tensorboard")
        written_before.append(sorted(tag for tag in root.Tags()["scalars"]
                                     if tag.startswith("final/")))
        write_result(run_dir, result)

    monkeypatch.setattr(RunDirectory, "write_result", checked)
    recipes = [recipe_from_dict({**tiny(epochs=2), "seed": seed}, "tiny.yaml") for seed in (3, 4)]
    if batched:
        outcomes = train_seed_group(recipes, [tmp_path / f"seed-{r.seed}" for r in recipes])
    else:
        outcomes = [train_recipe(recipes[0], out=tmp_path / "run", progress="none")]
    assert written_before == [sorted(f"final/{key}" for key in outcome.result["metrics"])
                              for outcome in outcomes]


def test_a_run_logs_its_curves_recipe_and_final_metrics(fixture_data, tmp_path):
    recipe = recipe_from_dict(tiny(epochs=3), "tiny.yaml")
    outcome = train_recipe(recipe, out=tmp_path / "run", progress="none")
    run_dir = outcome.run_dir
    check_curves(run_dir)
    root = events(run_dir / "tensorboard")
    assert text(root, "recipe/text_summary") == [
        f"```yaml\n{(run_dir / 'recipe.yaml').read_text(encoding='utf-8')}```"]
    final = {tag.removeprefix("final/"): scalars(root, tag) for tag in root.Tags()["scalars"]}
    assert final == {key: [(3, pytest.approx(value, rel=1e-6))]
                     for key, value in outcome.result["metrics"].items()}
    assert set(final) >= {"test_loss", "test_accuracy", "val_accuracy"}
    # Neither histograms (the doctor's) nor an HParams session (a study's).
    assert histograms(run_dir) == []
    assert SESSION_START not in root.Tags()["tensors"]


def test_the_doctor_adds_histograms_and_update_ratios_from_its_own_probes(fixture_data, tmp_path):
    outcome = train_recipe(recipe_from_dict(tiny(epochs=2), "tiny.yaml"), out=tmp_path / "run",
                           progress="none", doctor=True)
    run_dir = outcome.run_dir
    check_curves(run_dir)
    train = events(run_dir / "tensorboard" / "train")
    assert sorted(histograms(run_dir)) == sorted([
        *(f"{kind}/{layer}/{name}" for kind in ("weights", "gradients")
          for layer in ("1_Dense", "2_Dense") for name in ("weight", "bias")),
        "activations/1_Dense",  # the output layer's are its logits, which the probe leaves
    ])
    for tag in train.Tags()["histograms"]:
        assert [event.step for event in train.Histograms(tag)] == [0, 1], tag
    assert sorted(tag for tag in train.Tags()["scalars"] if not tag.startswith("epoch_")) == [
        "update_ratio/1_Dense", "update_ratio/2_Dense"]
    # The last epoch's weights are the final model's.
    final = load_file(run_dir / "model" / "weights.safetensors")["1.weight"].double()
    weights = train.Histograms("weights/1_Dense/weight")[-1].histogram_value
    assert (weights.num, sum(weights.bucket)) == (784 * 16, 784 * 16)
    assert (weights.min, weights.max) == (final.min().item(), final.max().item())
    assert (weights.sum, weights.sum_squares) == pytest.approx(
        (final.sum().item(), final.square().sum().item()), rel=1e-9)
    probes = json.loads((run_dir / "doctor.json").read_text())["probes"]
    steps = math.ceil(outcome.result["dataset"]["train"] / 32)
    for epoch in (0, 1):
        samples = [sample for sample in probes["samples"]
                   if epoch * steps <= sample["step"] < (epoch + 1) * steps]
        rows = [sample["layers"][0] for sample in samples]
        shown = [row for row in rows if row["act_hist"] is not None][-1]["act_hist"]
        [histogram] = [e.histogram_value for e in train.Histograms("activations/1_Dense")
                       if e.step == epoch]
        assert list(histogram.bucket) == shown["counts"]
        assert (histogram.min, histogram.max) == pytest.approx((shown["low"], shown["high"]))
        [(_, ratio)] = [(step, value) for step, value in scalars(train, "update_ratio/1_Dense")
                        if step == epoch]
        expected = statistics.median(row["update_ratio"] for row in rows
                                     if row["update_ratio"] is not None)
        assert ratio == pytest.approx(expected, rel=1e-6)


def test_a_resumed_run_continues_the_same_steps(fixture_data, tmp_path):
    run = tmp_path / "run"
    train_recipe(recipe_from_dict(tiny(epochs=2), "tiny.yaml"), out=run, progress="none")
    # As if killed after epoch 2's events were written, before its checkpoint.
    (run / "checkpoints" / "epoch_0002.pt").unlink()
    (run / "result.json").unlink()
    # Event files are read in the order of their names, which begin with the second they
    # were made in: a later command's sort after the first's, as they do here from then on.
    time.sleep(1 - time.time() % 1)
    outcome = train_recipe(recipe_from_dict(tiny(epochs=3), "tiny.yaml"), out=run,
                           progress="none", resume=True)
    assert outcome.result["resumed_from_epoch"] == 1
    assert len(list((run / "tensorboard" / "train").iterdir())) == 2  # one file per process
    check_curves(run)  # epochs 2 and 3 once each, with the resumed run's values
    # So does the loader of `tensorboard --load_fast=false`, which purges at a second start only.
    loader = plugin_event_accumulator.EventAccumulator(str(run / "tensorboard" / "train"))
    assert [event.step for event in loader.Reload().Tensors("epoch_loss")] == [0, 1, 2]
    root = events(run / "tensorboard")
    assert scalars(root, "final/test_accuracy") == [
        (3, pytest.approx(outcome.result["metrics"]["test_accuracy"], rel=1e-6))]
    assert len(text(root, "recipe/text_summary")) == 1


def test_off_with_the_recipe_field_or_the_option(fixture_data, tmp_path, capsys):
    recipe = recipe_from_dict(tiny(epochs=1, tensorboard=False), "tiny.yaml")
    outcome = train_recipe(recipe, out=tmp_path / "field", progress="none")
    assert outcome.result["status"] == "completed"
    assert not (outcome.run_dir / "tensorboard").exists()
    # A resolved recipe from before the field existed is read (and resumed) as logging.
    stored = yaml.safe_load((outcome.run_dir / "recipe.yaml").read_text())
    del stored["train"]["tensorboard"]
    assert recipe_from_dict(stored, "old.yaml").train.tensorboard is True
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny(epochs=1)), encoding="utf-8")
    assert main(["train", str(path), "--out", str(tmp_path / "option"), "--quiet",
                 "--no-tensorboard"]) == 0
    assert (tmp_path / "option" / "result.json").is_file()
    assert not (tmp_path / "option" / "tensorboard").exists()
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "quiet", "question": "?", "base": tiny(epochs=1),
                                     "seeds": 1, "variants": {"sgd": {}}}), encoding="utf-8")
    assert main(["study", str(study), "--out", str(tmp_path / "study"), "--quiet",
                 "--workers", "1", "--no-tensorboard"]) == 0
    assert (tmp_path / "study" / "runs" / "sgd" / "seed-0" / "result.json").is_file()
    assert not list((tmp_path / "study").rglob("tensorboard"))
    capsys.readouterr()


def session_groups(logdir: Path) -> list[api_pb2.SessionGroup]:
    """What TensorBoard's HParams dashboard lists for `tensorboard --logdir logdir`."""
    events_of_runs = multiplexer.EventMultiplexer()
    events_of_runs.AddRunsFromDirectory(str(logdir))
    events_of_runs.Reload()
    provider = data_provider.MultiplexerDataProvider(events_of_runs, str(logdir))
    backend = backend_context.Context(base_plugin.TBContext(
        logdir=str(logdir), multiplexer=events_of_runs, data_provider=provider))
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=100, include_metrics=True,
        allowed_statuses=[api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE])
    return list(list_session_groups.Handler(
        context.RequestContext(), backend, "", request).run().session_groups)


def test_a_study_lists_every_run_in_the_hparams_dashboard(fixture_data, tmp_path):
    spec = {"name": "boarded", "question": "?", "base": tiny(epochs=1), "seeds": 1,
            "variants": {"sgd": {}, "faster": {"set": {"train.optimizer.learning_rate": 0.05}}}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    out = tmp_path / "study"
    outcome = run_study(path, out=out, workers=2, progress="none", batch_seeds=False)
    assert outcome.counts == {"completed": 2}
    groups = session_groups(out)
    assert len(groups) == 2
    for group in groups:
        [run] = group.sessions
        assert run.status == api_pb2.STATUS_SUCCESS
        variant = run.name.split("/")[1]
        assert run.name == f"runs/{variant}/seed-0/tensorboard"
        rate = {"sgd": 0.01, "faster": 0.05}[variant]
        expected = {"variant": variant, "seed": 0, "train.optimizer.learning_rate": rate}
        assert session(events(out / run.name)) == (expected, api_pb2.STATUS_SUCCESS)
        assert plain(group.hparams) == expected
        run_dir = (out / run.name).parent
        result = json.loads((run_dir / "result.json").read_text())
        metrics = {value.name.tag: value.value for value in group.metric_values
                   if value.name.group == ""}
        assert metrics["final/test_accuracy"] == pytest.approx(
            result["metrics"]["test_accuracy"], rel=1e-6)
        check_curves(run_dir)


def test_batched_seeds_log_each_seed_with_its_session(fixture_data, tmp_path):
    recipes = [recipe_from_dict({**tiny(epochs=2), "seed": seed}, "tiny.yaml") for seed in (3, 4)]
    outs = [tmp_path / f"seed-{recipe.seed}" for recipe in recipes]
    hparams = [{"variant": "sgd", "seed": recipe.seed, "model.layers": "flatten, dense, dense"}
               for recipe in recipes]
    outcomes = train_seed_group(recipes, outs, hparams=hparams)
    for outcome, expected in zip(outcomes, hparams, strict=True):
        assert outcome.result["batched_seeds"] == 2
        check_curves(outcome.run_dir)
        root = events(outcome.run_dir / "tensorboard")
        assert session(root) == (expected, api_pb2.STATUS_SUCCESS)
        assert scalars(root, "final/test_loss") == [
            (2, pytest.approx(outcome.result["metrics"]["test_loss"], rel=1e-6))]
        assert text(root, "recipe/text_summary") == [
            f"```yaml\n{(outcome.run_dir / 'recipe.yaml').read_text(encoding='utf-8')}```"]
    off = train_seed_group(recipes, [tmp_path / "off" / out.name for out in outs],
                           tensorboard=False)
    assert all(not (outcome.run_dir / "tensorboard").exists() for outcome in off)


def planned(variant: str, seed: int, recipe: dict, phase: str = "main") -> PlannedRun:
    return PlannedRun(f"{variant}/seed-{seed}", variant, seed, phase, None, recipe)


def test_a_studys_hyperparameters_are_the_fields_its_runs_differ_in():
    base = {"name": "a", "seed": 1, "model": {"layers": ["flatten", {"dense": {"units": 8}}]},
            "train": {"optimizer": {"name": "sgd", "learning_rate": 0.01}, "callbacks": []}}
    wider = {**base, "model": {"layers": ["flatten", {"dense": {"units": 16}}]}}
    deeper = {**base, "name": "b", "model": {"layers": ["flatten", {"dense": {"units": 8}},
                                                        {"dropout": {"rate": 0.2}}]},
              "train": {"optimizer": {"name": "adam", "learning_rate": 0.01, "beta_1": 0.9},
                        "callbacks": ["early_stopping"]}}
    assert differing_fields([base, {**base, "seed": 2, "name": "c"}]) == []
    assert differing_fields([base, wider]) == ["model.layers.1.dense.units"]
    assert differing_fields([base, wider, deeper]) == [
        "model.layers", "train.optimizer.name", "train.callbacks", "train.optimizer.beta_1"]
    runs = [planned("base", 1, base), planned("deeper", 2, deeper, phase="lr_search")]
    study = StudyHParams.of(runs)
    assert study.of_run(runs[0]) == {
        "variant": "base", "seed": 1, "phase": "main", "model.layers": "flatten, dense",
        "train.optimizer.name": "sgd", "train.optimizer.beta_1": None,
        "train.callbacks": "none"}
    assert study.of_run(runs[1])["model.layers"] == "flatten, dense, dropout"
    assert "phase" not in StudyHParams.of(runs[:1]).of_run(runs[0])
