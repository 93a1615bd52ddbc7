"""Loading datasets from the real IDX fixture: splits, scaling, class subsets, errors, registry."""

from __future__ import annotations

import hashlib
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tricklab.cli.main import main
from tricklab.data import DatasetSplits, Split, datasets, load_dataset, read_idx
from tricklab.data.datasets import check_finite
from tricklab.data.sources import FILES, SOURCES, dataset_files
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
    assert datasets.names() == ["adding_problem", "cifar10", "cifar100", "csv", "fashion_mnist",
                                "image_folder", "mnist", "numpy"]
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


def float_copy(
    fixture_dir: Path, root: Path, edit: Callable[[dict[str, np.ndarray]], None] = lambda _: None
) -> Path:
    """Write the fixture into `root/fashion_mnist` with float32 images (IDX type 0x0D).

    `edit` changes the float images (`train_images`, `test_images`) in place
    before they are written, e.g. to put a NaN at a known sample and pixel.
    """
    arrays = {role: read_idx(path) for role, path in dataset_files(fixture_dir).items()}
    for role in ("train_images", "test_images"):
        arrays[role] = arrays[role].astype(np.float32)
    edit(arrays)
    folder = root / "fashion_mnist"
    folder.mkdir(parents=True)
    for role, array in arrays.items():
        code = 0x0D if array.dtype == np.float32 else 0x08
        header = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
        (folder / FILES[role]).write_bytes(header + array.astype(array.dtype.newbyteorder(">")).tobytes())
    return root


def set_value(role: str, index: tuple[int, ...], value: float):
    def edit(arrays: dict[str, np.ndarray]) -> None:
        arrays[role][index] = value
    return edit


@pytest.mark.parametrize(("role", "index", "value", "options", "expected"), [
    ("test_images", (17, 3, 4), np.nan, {"validation": 500},
     "data: fashion_mnist test split: sample 17 holds NaN (inputs, position [3, 4]); "
     "clean or drop it"),
    # The training file's first 500 images are the validation split.
    ("train_images", (100, 0, 27), np.inf, {"validation": 500},
     "data: fashion_mnist val split: sample 100 holds inf (inputs, position [0, 27]); "
     "clean or drop it"),
    # Found before `standardize` spreads the bad pixel into every sample through the mean.
    ("train_images", (700, 27, 0), -np.inf, {"validation": 500, "scale": "standardize"},
     "data: fashion_mnist train split: sample 200 holds -inf (inputs, position [27, 0]); "
     "clean or drop it"),
])
def test_non_finite_pixels_are_refused_naming_the_split_and_sample(
    isolated: Path, fixture_dir: Path, monkeypatch: pytest.MonkeyPatch, role: str,
    index: tuple[int, ...], value: float, options: dict, expected: str,
) -> None:
    monkeypatch.setenv("TRICKLAB_DATA", str(
        float_copy(fixture_dir, isolated / "data", set_value(role, index, value))))
    with pytest.raises(UserInputError) as caught:
        load_dataset("fashion_mnist", **options)
    assert str(caught.value) == expected


def test_a_bad_image_of_a_dropped_class_is_not_in_any_split(
    isolated: Path, fixture_dir: Path, monkeypatch: pytest.MonkeyPatch,
    raw: dict[str, np.ndarray],
) -> None:
    labels = raw["test_labels"]
    dropped = int(np.flatnonzero(labels != 0)[0])
    kept_before = int((labels[:dropped] == 0).sum())
    monkeypatch.setenv("TRICKLAB_DATA", str(
        float_copy(fixture_dir, isolated / "data",
                   set_value("test_images", (dropped, 1, 1), np.nan))))
    data = load_dataset("fashion_mnist", validation=500, classes=[0])
    assert len(data.test) == (labels == 0).sum()
    # The same image inside the kept class: its index is counted within the split.
    first_kept = int(np.flatnonzero(labels == 0)[kept_before])
    shutil.rmtree(isolated / "data")
    monkeypatch.setenv("TRICKLAB_DATA", str(
        float_copy(fixture_dir, isolated / "data",
                   set_value("test_images", (first_kept, 1, 1), np.nan))))
    with pytest.raises(UserInputError, match=rf"test split: sample {kept_before} holds NaN"):
        load_dataset("fashion_mnist", validation=500, classes=[0])


def test_only_non_finite_values_are_refused_not_huge_ones(
    isolated: Path, fixture_dir: Path, monkeypatch: pytest.MonkeyPatch,
    raw: dict[str, np.ndarray],
) -> None:
    def huge(arrays: dict[str, np.ndarray]) -> None:
        # Finite values whose float32 sum overflows: the one-pass sum alone would refuse them.
        arrays["test_images"][:3] = 3e38

    monkeypatch.setenv("TRICKLAB_DATA", str(float_copy(fixture_dir, isolated / "data", huge)))
    data = load_dataset("fashion_mnist", validation=500, scale="none")
    np.testing.assert_array_equal(data.train.x.numpy(), raw["train_images"][500:])
    assert torch.isinf(data.test.x.sum()) and torch.isfinite(data.test.x).all()

    def huge_and_nan(arrays: dict[str, np.ndarray]) -> None:
        huge(arrays)
        arrays["test_images"][5, 9, 8] = np.nan

    shutil.rmtree(isolated / "data")
    float_copy(fixture_dir, isolated / "data", huge_and_nan)
    with pytest.raises(UserInputError, match=r"test split: sample 5 holds NaN .*\[9, 8\]"):
        load_dataset("fashion_mnist", validation=500, scale="none")


def test_user_registered_datasets_are_checked_too(
    monkeypatch: pytest.MonkeyPatch, fixture_dir: Path,
) -> None:
    """Float targets too: a regression dataset whose test target 3 is NaN."""
    images = torch.from_numpy(read_idx(fixture_dir / "t10k-images-idx3-ubyte.gz").copy())
    x = images[:50].float().div_(255)
    target = x.mean(dim=(1, 2))
    target[3] = float("nan")
    monkeypatch.setattr(datasets, "_entries", dict(datasets._entries))

    @datasets.register("brightness", description="mean brightness of 50 fixture images")
    def brightness() -> DatasetSplits:
        return DatasetSplits(
            name="brightness", train=Split(x[:30], target[:30]), val=None,
            test=Split(x[30:], target[30:]), class_names=[], input_shape=(28, 28), scale="unit",
        )

    message = "data: brightness train split: sample 3 holds NaN (targets); clean or drop it"
    with pytest.raises(UserInputError) as caught:
        load_dataset("brightness")
    assert str(caught.value) == message
    with pytest.raises(UserInputError) as caught:
        datasets.create("brightness")
    assert str(caught.value) == message
    # The inputs as targets (an autoencoder's) are checked once, as inputs.
    x[10, 2, 2] = float("nan")
    reconstruction = DatasetSplits(
        name="brightness", train=Split(x, x), val=None, test=Split(x[:1], x[:1]),
        class_names=[], input_shape=(28, 28), scale="unit",
    )
    with pytest.raises(UserInputError) as caught:
        check_finite(reconstruction)
    assert str(caught.value) == (
        "data: brightness train split: sample 10 holds NaN (inputs, position [2, 2]); "
        "clean or drop it"
    )


def test_train_with_nan_data_exits_2_before_creating_the_run(
    isolated: Path, fixture_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TRICKLAB_DATA", str(
        float_copy(fixture_dir, isolated / "data", set_value("train_images", (42, 14, 14), np.nan))))
    recipe = isolated / "recipe.yaml"
    recipe.write_text(
        "name: nan-data\n"
        "data: {dataset: fashion_mnist, validation: 500}\n"
        "model: {layers: [flatten, {dense: {units: 10, activation: softmax}}]}\n"
        "train: {optimizer: {name: sgd, learning_rate: 0.01}, epochs: 1}\n"
    )
    out = isolated / "runs" / "nan-data"
    assert main(["train", str(recipe), "--out", str(out), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "error: data: fashion_mnist val split: sample 42 holds NaN (inputs, position [14, 14]); "
        "clean or drop it\n"
    )
    assert not out.exists() and not (isolated / "runs").exists()
