"""Loading datasets from the real IDX fixture: splits, scaling, class subsets, errors, registry."""

from __future__ import annotations

import hashlib
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from tricklab.data import DatasetSplits, datasets, load_dataset, read_idx
from tricklab.data.sources import SOURCES, dataset_files
from tricklab.errors import UserInputError

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FASHION_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


@pytest.fixture
def raw(fixture_dir: Path) -> dict[str, np.ndarray]:
    """The fixture's uint8 arrays, read independently of the loader."""
    return {role: read_idx(path) for role, path in dataset_files(fixture_dir).items()}


def test_shapes_types_and_names(fixture_data: Path) -> None:
    data = load_dataset("fashion_mnist", validation=500)
    assert isinstance(data, DatasetSplits) and data.name == "fashion_mnist"
    assert (len(data.train), len(data.val), len(data.test)) == (1500, 500, 500)
    for part in (data.train, data.val, data.test):
        assert part.x.dtype == torch.float32 and part.x.shape[1:] == (28, 28)
        assert part.y.dtype == torch.int64 and part.y.shape == (len(part),)
    assert data.input_shape == (28, 28)
    assert data.num_classes == 10 and data.class_names == FASHION_NAMES


def test_validation_is_the_start_of_the_training_file(
    fixture_data: Path, raw: dict[str, np.ndarray]
) -> None:
    data = load_dataset(validation=300, scale="none")
    np.testing.assert_array_equal(data.val.x.numpy(), raw["train_images"][:300])
    np.testing.assert_array_equal(data.train.x.numpy(), raw["train_images"][300:])
    np.testing.assert_array_equal(data.val.y.numpy(), raw["train_labels"][:300])
    np.testing.assert_array_equal(data.test.y.numpy(), raw["test_labels"])
    assert data.train.x.max() == 255 and data.mean is None and data.std is None


def test_no_validation(fixture_data: Path) -> None:
    data = load_dataset(validation=0)
    assert data.val is None and len(data.train) == 2000


def test_unit_scale(fixture_data: Path, raw: dict[str, np.ndarray]) -> None:
    data = load_dataset(validation=500, scale="unit")
    for part in (data.train, data.val, data.test):
        assert part.x.min() >= 0 and part.x.max() <= 1
    np.testing.assert_allclose(data.test.x.numpy(), raw["test_images"] / 255.0, rtol=1e-6)
    new = torch.from_numpy(raw["test_images"][:5].copy())
    np.testing.assert_allclose(data.scale_inputs(new).numpy(), data.test.x[:5].numpy(), rtol=1e-6)


def test_standardize_uses_training_statistics_only(
    fixture_data: Path, raw: dict[str, np.ndarray]
) -> None:
    data = load_dataset(validation=500, scale="standardize")
    train_raw = raw["train_images"][500:].astype(np.float64)
    mean, std = train_raw.mean(axis=0), train_raw.std(axis=0)
    std[std == 0] = 1.0
    assert (train_raw.std(axis=0) == 0).any(), "the fixture should have constant pixels"
    np.testing.assert_allclose(data.train.x.mean(0).numpy(), 0, atol=1e-4)
    for part, images in ((data.val, raw["train_images"][:500]), (data.test, raw["test_images"])):
        expected = (images - mean) / std
        np.testing.assert_allclose(part.x.numpy(), expected, rtol=1e-4, atol=1e-4)
        assert torch.isfinite(part.x).all()
    # Validation statistics differ from the training ones, so its own mean is not zero.
    assert data.val.x.mean(0).abs().max() > 0.05
    np.testing.assert_allclose(data.mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(data.std.numpy(), std, rtol=1e-4)
    new = torch.from_numpy(raw["test_images"][:5].copy())
    np.testing.assert_allclose(data.scale_inputs(new).numpy(), data.test.x[:5].numpy(), rtol=1e-6)


def test_class_subset_is_remapped_in_given_order(
    fixture_data: Path, raw: dict[str, np.ndarray]
) -> None:
    data = load_dataset(validation=500, scale="none", classes=[6, 5])
    assert data.class_names == ["Shirt", "Sandal"] and data.num_classes == 2
    parts = (
        (data.train, raw["train_images"][500:], raw["train_labels"][500:]),
        (data.val, raw["train_images"][:500], raw["train_labels"][:500]),
        (data.test, raw["test_images"], raw["test_labels"]),
    )
    for part, images, labels in parts:
        kept = np.isin(labels, [6, 5])
        np.testing.assert_array_equal(part.x.numpy(), images[kept])
        np.testing.assert_array_equal(part.y.numpy(), np.where(labels[kept] == 6, 0, 1))
        assert set(part.y.tolist()) == {0, 1}


@pytest.mark.parametrize("validation", [-1, 2000, 5000, True])
def test_bad_validation(fixture_data: Path, validation: int) -> None:
    with pytest.raises(UserInputError, match=r"^data\.validation: .*< 2000"):
        load_dataset(validation=validation)


@pytest.mark.parametrize("classes", [[10], [-1], [], [3, 3], ["3"], 3])
def test_bad_classes(fixture_data: Path, classes: object) -> None:
    with pytest.raises(UserInputError, match=r"^data\.classes: .*9 Ankle boot"):
        load_dataset(validation=500, classes=classes)


@pytest.mark.parametrize(("classes", "train_size"), [(None, 1), (None, 1500), ([6, 5], 40)])
def test_train_size_keeps_the_first_training_images(
    fixture_data: Path, classes: list[int] | None, train_size: int
) -> None:
    full = load_dataset(validation=500, scale="none", classes=classes)
    cut = load_dataset(validation=500, scale="none", classes=classes, train_size=train_size)
    assert len(cut.train) == train_size
    np.testing.assert_array_equal(cut.train.x.numpy(), full.train.x[:train_size].numpy())
    np.testing.assert_array_equal(cut.train.y.numpy(), full.train.y[:train_size].numpy())
    np.testing.assert_array_equal(cut.val.y.numpy(), full.val.y.numpy())
    np.testing.assert_array_equal(cut.test.y.numpy(), full.test.y.numpy())


def test_standardize_uses_only_the_kept_training_images(
    fixture_data: Path, raw: dict[str, np.ndarray]
) -> None:
    data = load_dataset(validation=500, scale="standardize", train_size=300)
    kept = raw["train_images"][500:800].astype(np.float64)
    np.testing.assert_allclose(data.mean.numpy(), kept.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(data.train.x.mean(0).numpy(), 0, atol=1e-4)


@pytest.mark.parametrize("train_size", [0, -1, 1501, True, 2.0, "100"])
def test_bad_train_size(fixture_data: Path, train_size: object) -> None:
    with pytest.raises(UserInputError) as caught:
        load_dataset(validation=500, train_size=train_size)
    assert str(caught.value) == (
        "data.train_size: must be an integer with 1 <= train_size <= 1500 (the training "
        f"images of fashion_mnist left after validation, classes and split), got {train_size!r}"
    )


def test_bad_scale(fixture_data: Path) -> None:
    with pytest.raises(UserInputError, match=r"^data\.scale: "):
        load_dataset(validation=500, scale="minmax")


def test_unknown_dataset_suggests_a_name(fixture_data: Path) -> None:
    with pytest.raises(UserInputError, match="did you mean 'fashion_mnist'"):
        load_dataset("fashion_mnst")


def test_labels_not_matching_images(
    isolated: Path, fixture_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = isolated / "data" / "fashion_mnist"
    shutil.copytree(fixture_dir, folder)
    shutil.copy(folder / "t10k-labels-idx1-ubyte.gz", folder / "train-labels-idx1-ubyte.gz")
    monkeypatch.setenv("TRICKLAB_DATA", str(isolated / "data"))
    with pytest.raises(UserInputError, match=r"train-labels-idx1-ubyte\.gz: labels of shape"):
        load_dataset(validation=100)


def test_mnist_from_a_folder_of_its_own(
    isolated: Path, fixture_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(fixture_dir, isolated / "data" / "mnist")
    monkeypatch.setenv("TRICKLAB_DATA", str(isolated / "data"))
    data = datasets.create("mnist", {"validation": 100, "classes": [0, 1]})
    assert data.name == "mnist" and data.class_names == ["0", "1"]


def test_registry_and_recipe_validation(fixture_data: Path) -> None:
    assert datasets.names() == ["adding_problem", "fashion_mnist", "mnist"]
    assert datasets.info("fashion_mnist").keras_name == "fashion_mnist"
    assert "1708.07747" in datasets.info("fashion_mnist").reference
    config = datasets.validate("fashion_mnist", {"validation": 500, "scale": "standardize"}, "data")
    assert config == {
        "validation": 500, "scale": "standardize", "classes": None, "split": None,
        "train_size": None,
    }
    assert datasets.validate("mnist", {"train_size": 100}, "data")["train_size"] == 100
    with pytest.raises(UserInputError, match=r"^data\.scale: "):
        datasets.validate("fashion_mnist", {"scale": "minmax"}, "data")
    with pytest.raises(UserInputError, match=r"^data: unknown key 'root'"):
        datasets.validate("fashion_mnist", {"root": "/tmp"}, "data")
    with pytest.raises(UserInputError, match=r"^data: unknown key 'root' of dataset fashion_mnist"):
        load_dataset(root="/tmp")
    assert len(datasets.create("fashion_mnist", {"validation": 100}).val) == 100


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_full_debian_dataset(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, fixture_dir: Path
) -> None:
    monkeypatch.setattr("tricklab.data.sources.SYSTEM_DATA_DIR", DEBIAN.parent)
    data = load_dataset("fashion_mnist", scale="none")
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    fixture_images = read_idx(fixture_dir / "train-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(data.val.x[:2000].numpy(), fixture_images)
    # Debian recompressed the archives, so the registered hash to compare is the content's.
    for name, expected in SOURCES["fashion_mnist"].content_sha256.items():
        content = zlib.decompress((DEBIAN / f"{name}.gz").read_bytes(), wbits=31)
        assert hashlib.sha256(content).hexdigest() == expected
