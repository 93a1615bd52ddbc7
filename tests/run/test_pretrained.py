"""`model.reuse.from`: a run directory, a saved model, or a recipe trained first (once)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import yaml

from tricklab.cli.main import main
from tricklab.errors import UserInputError
from tricklab.recipe import load_recipe, recipe_from_dict
from tricklab.run import train_recipe
from tricklab.run.pretrained import MAX_REUSE_CHAIN, check_reuse_chain
from tricklab.transfer import load_model

SOURCE = {
    "name": "source",
    "seed": 1,
    "data": {"dataset": "fashion_mnist", "validation": 500, "classes": [0, 1, 2, 3]},
    "model": {"layers": [
        "flatten",
        {"dense": {"units": 24, "activation": "selu", "kernel_initializer": "lecun_normal"}},
        {"dense": {"units": 12, "activation": "selu", "kernel_initializer": "lecun_normal"}},
        {"dense": {"units": 4, "activation": "softmax"}},
    ]},
    "train": {"optimizer": {"name": "sgd", "learning_rate": 0.02}, "epochs": 1},
}


def target(source: str, **train) -> dict:
    return {
        "name": "target",
        "seed": 2,
        "data": {"dataset": "fashion_mnist", "validation": 500, "classes": [5, 6]},
        "model": {"reuse": {"from": source, "trainable": False},
                  "layers": [{"dense": {"units": 1, "activation": "sigmoid"}}]},
        "train": {"loss": "binary_crossentropy", "metrics": ["accuracy"],
                  "optimizer": {"name": "sgd", "learning_rate": 0.02}, "epochs": 1, **train},
    }


def write(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_reuse_from_a_run_directory_keeps_the_source_run_intact(fixture_data, tmp_path):
    train_recipe(recipe_from_dict(SOURCE), out=tmp_path / "source", progress="none")
    weights = tmp_path / "source" / "model" / "weights.safetensors"
    before = weights.read_bytes()
    outcome = train_recipe(recipe_from_dict(target(str(tmp_path / "source"))),
                           out=tmp_path / "target", progress="none")
    assert outcome.result["status"] == "completed"
    assert weights.read_bytes() == before
    source = load_model(tmp_path / "source" / "model")
    reused = load_model(tmp_path / "target" / "model")
    assert torch.equal(source[1].weight, reused[1].weight)  # frozen: unchanged by training
    assert reused.output_shape == (1,)
    assert outcome.result["cached_frozen_layers"] == 3
    assert outcome.result["trainable_params"] == 13


def test_a_recipe_source_is_trained_once_beside_the_run(fixture_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "source.yaml", SOURCE)
    train_recipe(recipe_from_dict(target("source.yaml")), out=tmp_path / "runs" / "target",
                 progress="none")
    result = tmp_path / "runs" / "source" / "result.json"
    assert json.loads(result.read_text())["status"] == "completed"
    stamp = result.stat().st_mtime_ns
    train_recipe(recipe_from_dict(target("source.yaml")), out=tmp_path / "runs" / "again",
                 progress="none")
    assert result.stat().st_mtime_ns == stamp  # the finished pretraining run is reused


def test_a_recipe_source_never_overwrites_a_different_run(fixture_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "source.yaml", SOURCE)
    other = {**SOURCE, "seed": 99}
    train_recipe(recipe_from_dict(other), out=tmp_path / "runs" / "source", progress="none")
    before = (tmp_path / "runs" / "source" / "result.json").read_bytes()
    with pytest.raises(UserInputError, match=r"holds a run of another version of source\.yaml"):
        train_recipe(recipe_from_dict(target("source.yaml")), out=tmp_path / "runs" / "target",
                     progress="none")
    assert (tmp_path / "runs" / "source" / "result.json").read_bytes() == before
    assert not (tmp_path / "runs" / "target").exists()


def test_a_source_without_a_model_is_a_clear_error(fixture_data, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match=r"^model\.reuse\.from: .*empty holds no saved model"):
        train_recipe(recipe_from_dict(target(str(tmp_path / "empty"))), out=tmp_path / "t",
                     progress="none")
    assert not (tmp_path / "t").exists()


def test_input_shapes_must_agree(fixture_data, tmp_path):
    train_recipe(recipe_from_dict(SOURCE), out=tmp_path / "source", progress="none")
    mismatched = target(str(tmp_path / "source"))
    mismatched["model"]["input_shape"] = [784]
    with pytest.raises(UserInputError, match=r"takes inputs of shape \[28, 28\].*are \[784\]"):
        train_recipe(recipe_from_dict(mismatched), out=tmp_path / "t", progress="none")


# --- cycles and chains of recipes that reuse one another ---------------------------------


def reusing(name: str, source: str) -> dict:
    """A recipe named `name` whose `model.reuse.from` is `source`."""
    return {**target(source), "name": name}


def test_a_recipe_that_reuses_itself_is_refused_before_anything_runs(
        fixture_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.yaml", reusing("a", "a.yaml"))
    with pytest.raises(UserInputError) as raised:
        train_recipe(load_recipe("a.yaml"), out=tmp_path / "runs" / "a", progress="none")
    assert str(raised.value) == "model.reuse.from: a cycle of reused recipes: a.yaml -> a.yaml"
    assert not (tmp_path / "runs").exists()


def test_recipes_that_reuse_each_other_are_compared_by_resolved_path(
        fixture_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.yaml", reusing("a", "b.yaml"))
    write(tmp_path / "b.yaml", reusing("b", "./a.yaml"))
    write(tmp_path / "t.yaml", reusing("t", "a.yaml"))
    with pytest.raises(UserInputError) as raised:
        train_recipe(load_recipe("t.yaml"), out=tmp_path / "runs" / "t", progress="none")
    assert str(raised.value) == (
        "model.reuse.from: a cycle of reused recipes: a.yaml -> b.yaml -> ./a.yaml"
    )
    assert not (tmp_path / "runs").exists()


def test_train_refuses_two_recipes_that_reuse_each_other_in_one_line(
        fixture_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.yaml", reusing("a", "b.yaml"))
    write(tmp_path / "b.yaml", reusing("b", "a.yaml"))
    assert main(["train", "a.yaml"]) == 2
    assert capsys.readouterr().err == (
        "error: model.reuse.from: a cycle of reused recipes: b.yaml -> a.yaml -> b.yaml\n"
    )
    assert not (tmp_path / "runs").exists()


def test_a_chain_of_reused_recipes_is_bounded(fixture_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    chain = [f"r{index}.yaml" for index in range(MAX_REUSE_CHAIN + 2)]  # r0 reuses 17 recipes
    for name, source in itertools.pairwise(chain):
        write(tmp_path / name, reusing(Path(name).stem, source))
    write(tmp_path / chain[-1], {**SOURCE, "name": Path(chain[-1]).stem})
    check_reuse_chain("r2.yaml")  # 16 recipes: allowed, and nothing trains
    assert not (tmp_path / "runs").exists()
    with pytest.raises(UserInputError) as raised:
        train_recipe(load_recipe("r0.yaml"), out=tmp_path / "runs" / "r0", progress="none")
    assert str(raised.value) == (
        "model.reuse.from: a chain of more than 16 reused recipes (r1.yaml -> r2.yaml -> ... "
        "-> r17.yaml); at most 16 recipes may each reuse the next"
    )
    assert not (tmp_path / "runs").exists()


def test_a_garbled_result_of_a_pretraining_run_is_a_clear_error(
        fixture_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "source.yaml", SOURCE)
    train_recipe(load_recipe("source.yaml"), out=tmp_path / "runs" / "source", progress="none")
    result = tmp_path / "runs" / "source" / "result.json"
    result.write_text('{"status": "compl', encoding="utf-8")  # cut off by a full disk
    with pytest.raises(UserInputError) as raised:
        train_recipe(recipe_from_dict(target("source.yaml")), out=tmp_path / "runs" / "target",
                     progress="none")
    assert str(raised.value) == (
        f"{result}: not a run's result (a JSON object with a "
        "status); the file was left as it is"
    )
    assert result.read_text(encoding="utf-8") == '{"status": "compl'
    assert not (tmp_path / "runs" / "target").exists()
