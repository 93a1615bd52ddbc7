"""The doctor on recipes: the chapter's demonstration gets the chapter's verdicts."""

from __future__ import annotations

import json

import pytest

from tricklab.recipe import load_recipe, recipe_from_dict
from tricklab.run import train_recipe
from tricklab.run.doctor import doctor_recipe

from ..conftest import REPOSITORY, TINY_RECIPE

EXPECTED = {
    "deep_sigmoid_normal": {"vanishing_gradients", "saturation"},
    "deep_relu_large_init": {"exploding_gradients"},
    "deep_elu_he": set(),
    "deep_elu_he_batch_norm": set(),
    "deep_selu_lecun": set(),
    "dead_relu": {"dead_units"},
}


def test_every_doctor_recipe_has_an_expected_verdict():
    assert {path.stem for path in (REPOSITORY / "recipes" / "doctor").glob("*.yaml")} == set(
        EXPECTED
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_doctor_finds_what_the_chapter_says(name, fixture_data, tmp_path):
    recipe = load_recipe(REPOSITORY / "recipes" / "doctor" / f"{name}.yaml",
                         ["data.validation=0"])
    outcome = doctor_recipe(recipe, out=tmp_path / "doctor", steps=300, progress="none")
    report = json.loads((tmp_path / "doctor" / "doctor.json").read_text())
    kinds = {finding["kind"] for finding in report["findings"]}
    assert kinds == EXPECTED[name], report["findings"]
    assert report["verdict"] == ("healthy" if not EXPECTED[name] else "unhealthy")
    assert outcome.diagnosis.verdict == report["verdict"]
    assert outcome.steps >= 300
    assert len(report["probes"]["samples"]) >= 50
    for finding in report["findings"]:
        assert finding["layers"] and finding["evidence"] and finding["remedies"]
    plots = {p.name for p in (tmp_path / "doctor" / "plots").iterdir()}
    # With every unit of a layer dead, no weight gets a gradient: no heatmap to draw.
    expected = {"doctor_depth.png", "doctor_units.png"} | (
        set() if name == "dead_relu" else {"doctor_heatmap.png"})
    assert plots == expected
    assert (tmp_path / "doctor" / "recipe.yaml").is_file()


def test_train_with_the_doctor_writes_doctor_json_and_resumes_without_it(
    fixture_data, tmp_path
):
    recipe = recipe_from_dict({**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "epochs": 2}})
    plain = train_recipe(recipe, out=tmp_path / "plain", progress="none")
    probed = train_recipe(recipe, out=tmp_path / "probed", progress="none", doctor=True)
    # Probes only observe: the run's numbers do not change.
    assert probed.result["metrics"] == plain.result["metrics"]
    report = json.loads((tmp_path / "probed" / "doctor.json").read_text())
    assert report["verdict"] in ("healthy", "unhealthy")
    assert report["probes"]["steps"] == 2 * 47  # 1500 training images in batches of 32
    assert (tmp_path / "probed" / "plots" / "doctor_depth.png").is_file()
    assert not (tmp_path / "plain" / "doctor.json").exists()
    longer = recipe_from_dict({**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "epochs": 3}})
    resumed = train_recipe(longer, out=tmp_path / "plain", resume=True, progress="none",
                           doctor=True)
    assert resumed.result["epochs_run"] == 3
    assert json.loads((tmp_path / "plain" / "doctor.json").read_text())["probes"]["steps"] == 47


def test_the_doctor_probes_an_autoencoder_on_its_reconstruction_loss(fixture_data, tmp_path):
    recipe = load_recipe(REPOSITORY / "recipes" / "autoencoders" / "dense.yaml",
                         ["data.validation=0"])
    outcome = doctor_recipe(recipe, out=tmp_path / "doctor", steps=40, progress="none")
    report = json.loads((tmp_path / "doctor" / "doctor.json").read_text())
    assert outcome.steps >= 40
    # The four weight layers of the 784-100-30-100-784 network are probed.
    assert [layer["activation"] for layer in report["probes"]["layers"]] == [
        "selu", "selu", "selu", "sigmoid"]
    assert len(report["probes"]["samples"]) >= 10
