"""The registry snapshot and the quick check: the live registries' verdicts, without PyTorch."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tricklab.errors import UserInputError
from tricklab.recipe import load_recipe
from tricklab.recipe import snapshot as snapshot_module
from tricklab.recipe.load import read_yaml
from tricklab.recipe.quick_check import quick_check_recipe, quick_check_study
from tricklab.recipe.snapshot import (
    FOLDER,
    Undecided,
    build_document,
    cached_snapshot,
    current_snapshot,
    snapshot_key,
)
from tricklab.recipe.study import load_study
from tricklab.registries import REGISTRIES

from ..conftest import REPOSITORY

SNAPSHOT = snapshot_module._read(json.loads(json.dumps(build_document())))
"""Built once and read back from JSON, as the cache holds it."""

ENTRIES = [(family, info.name) for family, registry in REGISTRIES.items() for info in registry]
VALUES = ["x", "", -1, 0, 1.5, -0.5, 1e-9, 10**9, True, None, [], [1], [3, 3], [0, 0],
          {"a": 1}, "he_normal"]
"""Values of every type and sign, each given to every parameter in turn."""


def verdict(check, *args) -> str | None:
    try:
        check(*args)
    except UserInputError as error:
        return str(error)
    return None


@pytest.mark.parametrize(("family", "name"), ENTRIES, ids=[f"{f}.{n}" for f, n in ENTRIES])
def test_the_snapshot_says_what_the_live_registry_says_or_leaves_it_to_it(family, name):
    live, copied = REGISTRIES[family], SNAPSHOT[family]
    parameters = copied.info(name).accepted
    assert parameters == sorted(copied.info(name).accepted)
    configs = [{}, None, "text", {"no_such_key": 1}, {f"{parameters[0]}x": 1} if parameters else {}]
    configs += [{parameter: value} for parameter in parameters for value in VALUES]
    decided = 0
    for config in configs:
        expected = verdict(live.validate, name, copy.deepcopy(config), f"model.{name}")
        try:
            found = verdict(copied.validate, name, copy.deepcopy(config), f"model.{name}")
        except Undecided:
            assert any(parameter in config for parameter in copied.info(name).weakened)
            continue
        # Never an error the live registry would not raise; its own words when one is found.
        assert found is None or found == expected, config
        decided += found is not None
    unchecked = [p for p in parameters if p in copied.info(name).weakened]
    if len(unchecked) < len(parameters):
        assert decided > 0  # an unknown key at least is always caught


def test_the_snapshot_lists_every_entry_with_its_record():
    for family, registry in REGISTRIES.items():
        copied = SNAPSHOT[family]
        assert copied.names() == registry.names() and copied.family == registry.family
        for info in registry:
            entry = copied.info(info.name)
            assert (entry.description, entry.reference, entry.keras_name) == (
                info.description, info.reference, info.keras_name)
    dense = SNAPSHOT["layers"].info("dense")
    assert dense.refs["kernel_initializer"] == "initializers"
    assert dense.refs["activation"] == "activations"
    assert SNAPSHOT["layers"].info("residual").resolves_itself
    with pytest.raises(UserInputError, match=r"^model\.layers\.0: unknown layer 'dens'; "
                                             r"did you mean 'dense'\?"):
        SNAPSHOT["layers"].info("dens", "model.layers.0")


def mutations() -> list[tuple[str, list[str]]]:
    """Overrides that break a recipe the ways a tired user does: typos, bad values, bad names."""
    return [
        ("unknown top-level key", ["trian.epochs=3"]),
        ("unknown train key", ["train.epoch=3"]),
        ("bad epochs", ["train.epochs=-2"]),
        ("unknown optimizer", ["train.optimizer.name=adamm"]),
        ("bad learning rate", ["train.optimizer.learning_rate=fast"]),
        ("unknown optimizer key", ["train.optimizer.lr=0.1"]),
        ("unknown loss", ["train.loss=cross_entropy"]),
        ("unknown metric", ["train.metrics.0=acc"]),
        ("unknown layer", ["model.layers.0=dens"]),
        ("unknown dataset", ["data.dataset=fashion"]),
        ("unknown dataset option", ["data.validaton=100"]),
        ("unknown schedule", ["train.schedule=one_cycel"]),
        ("bad callback", ["train.callbacks.0={early_stoping: {}}"]),
    ]


RECIPES = sorted(path for path in (REPOSITORY / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_the_quick_check_finds_each_typo_with_the_full_loads_words(path, tmp_path):
    document = read_yaml(path)
    recipe = tmp_path / path.name
    recipe.write_text(yaml.safe_dump(document))
    quick_check_recipe(recipe, [], SNAPSHOT)  # a valid recipe passes
    found = 0
    for what, overrides in mutations():
        try:
            expected = verdict(load_recipe, recipe, overrides)
        except (IndexError, KeyError):
            continue
        if expected is None:  # this recipe has no such field to break
            continue
        actual = verdict(quick_check_recipe, recipe, overrides, SNAPSHOT)
        assert actual == expected, what
        found += 1
    assert found >= 8


STUDIES = sorted((REPOSITORY / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_the_quick_check_of_a_study_finds_a_variants_typo_with_load_studys_words(path):
    quick_check_study(path, snapshot=SNAPSHOT)  # a valid study passes
    for overrides, where in [(["train.optimizer.name=adamm"], "unknown optimizer"),
                             (["train.epochs=0"], "train.epochs"),
                             (["model.layers.0=dens"], "unknown layer")]:
        expected = verdict(load_study, path, None, True, overrides)
        assert expected is not None and where in expected
        assert verdict(quick_check_study, path, None, True, overrides, SNAPSHOT) == expected


def test_bad_files_are_reported_without_a_snapshot(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(UserInputError, match=r"^recipe file not found"):
        quick_check_recipe(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    assert verdict(quick_check_recipe, broken) == verdict(load_recipe, broken)


def test_the_cache_is_written_once_read_back_and_replaced_when_tricklab_changes(
        isolated, monkeypatch, tmp_path):
    folder = isolated / "cache" / FOLDER
    for old in folder.glob("*.json"):
        old.unlink()
    assert cached_snapshot() is None
    current_snapshot()
    written = list(folder.glob("*.json"))
    assert [path.name for path in written] == [f"{snapshot_key()}.json"]
    assert cached_snapshot().registries.keys() == REGISTRIES.keys()
    written[0].write_text("{not json")  # damaged: built again
    assert cached_snapshot() is None
    current_snapshot()
    assert cached_snapshot() is not None
    # Another tricklab (a source file edited): another key, and the old snapshot goes.
    package = tmp_path / "package"
    package.mkdir()
    (package / "module.py").write_text("x = 1\n")
    monkeypatch.setattr(snapshot_module, "_PACKAGE", package)
    key = snapshot_key()
    (package / "module.py").write_text("x = 22\n")
    assert snapshot_key() != key
    current_snapshot()
    assert [path.name for path in folder.glob("*.json")] == [f"{snapshot_key()}.json"]


def test_the_quick_check_imports_nothing_heavy(isolated):
    current_snapshot()
    recipe = isolated / "typo.yaml"
    document = read_yaml(REPOSITORY / "recipes" / "chapter11" / "leaky_relu_he.yaml")
    document["train"]["optimizer"]["name"] = "adamm"
    recipe.write_text(yaml.safe_dump(document))
    code = (
        "import sys\n"
        "from tricklab.errors import UserInputError\n"
        "from tricklab.recipe.quick_check import quick_check_recipe\n"
        "from tricklab.recipe.snapshot import cached_snapshot\n"
        f"try:\n    quick_check_recipe({str(recipe)!r}, [], cached_snapshot())\n"
        "except UserInputError as error:\n    print(error)\n"
        "print(sorted(m for m in ('torch', 'matplotlib', 'pandas', 'numpy', 'PIL') "
        "if m in sys.modules))\n"
    )
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**_environment(), "TRICKLAB_CACHE": str(
                               isolated / "cache")}).stdout.splitlines()
    assert lines == [verdict(load_recipe, recipe), "[]"]


def _environment() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if key != "TRICKLAB_CACHE"}


def test_a_preset_without_a_snapshot_is_left_to_the_full_load(tmp_path):
    recipe = Path(tmp_path / "preset.yaml")
    document = read_yaml(REPOSITORY / "recipes" / "chapter11" / "default_dnn_preset.yaml")
    document["train"]["epochs"] = 0
    recipe.write_text(yaml.safe_dump(document))
    assert verdict(quick_check_recipe, recipe) is None
    assert verdict(quick_check_recipe, recipe, [], SNAPSHOT) == verdict(load_recipe, recipe)
