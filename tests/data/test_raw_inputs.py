"""New raw inputs prepared as training prepared them, on data nobody here wrote.

The check that matters: a file given to `read_inputs` comes out exactly as the
same rows, images or arrays came out of the dataset when they were its test
part (`test_path`, `x_test`), through the `Preprocessing` stored as JSON and
read back. Then every mismatch is one line naming the file and what differs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_diabetes, load_digits, load_wine

from tricklab.data import DatasetSplits, Preprocessing, load_dataset
from tricklab.data.preprocessing import PREPROCESSING_FILE
from tricklab.data.raw_inputs import read_inputs
from tricklab.errors import UserInputError


def stored(data: DatasetSplits, folder: Path) -> Preprocessing:
    """The dataset's preprocessing written as JSON and read back, as a prediction sees it."""
    folder.mkdir(exist_ok=True)
    data.preprocessing().save(folder)
    document = json.loads((folder / PREPROCESSING_FILE).read_text())
    assert document["format"] == "tricklab-preprocessing"  # plain JSON, nothing pickled
    loaded = Preprocessing.load(folder)
    assert loaded is not None
    return loaded


def diabetes_tables(folder: Path) -> tuple[Path, Path, pd.DataFrame]:
    """Diabetes with `sex` as text, split into a training and a test file."""
    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame["sex"] = frame["sex"].map({1.0: "female", 2.0: "male"})
    train, test = folder / "train.csv", folder / "test.parquet"
    frame.iloc[:350].to_csv(train, index=False)
    frame.iloc[350:].to_parquet(test, index=False)
    return train, test, frame.iloc[350:].reset_index(drop=True)


def test_a_table_is_prepared_as_its_test_part_was(tmp_path: Path) -> None:
    train, test, rows = diabetes_tables(tmp_path)
    data = load_dataset("csv", path=str(train), target="target", test_path=str(test))
    preprocessing = stored(data, tmp_path / "model")
    assert preprocessing.kind == "table" and preprocessing.task == "regression"
    assert [c.name for c in preprocessing.columns][:3] == ["age", "sex", "bmi"]
    assert preprocessing.columns[1].categories == ["female", "male"]
    raw = read_inputs(preprocessing, str(test))
    assert torch.allclose(raw.x, data.test.x, atol=1e-6)
    assert np.allclose(raw.labels, data.test.y.numpy())
    assert raw.ids.tolist() == list(range(len(rows)))
    # Without the target, in another column order, as a DataFrame: the same inputs, no labels.
    shuffled = rows.drop(columns="target")[list(reversed(rows.columns[:-1]))]
    unlabelled = read_inputs(preprocessing, shuffled)
    assert torch.allclose(unlabelled.x, data.test.x, atol=1e-6) and unlabelled.labels is None


def test_gaps_under_missing_mean_are_prepared_as_the_test_part_was(tmp_path: Path) -> None:
    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame["sex"] = frame["sex"].map({1.0: "female", 2.0: "male"})
    frame.loc[frame.index[::9], "bmi"] = np.nan
    frame.loc[frame.index[4::7], "sex"] = None
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    frame.iloc[:350].to_csv(train, index=False)
    frame.iloc[350:].to_csv(test, index=False)
    data = load_dataset("csv", path=str(train), target="target", test_path=str(test),
                        missing="mean")
    raw = read_inputs(stored(data, tmp_path / "model"), str(test))
    assert torch.equal(raw.x, data.test.x)
    sex = raw.x[:, 1:3]
    empty = torch.tensor(frame["sex"].iloc[350:].isna().to_numpy())
    assert sex[empty].abs().sum() == 0 and torch.all(sex[~empty].sum(1) == 1)


def test_a_class_target_becomes_the_runs_class_indices(tmp_path: Path) -> None:
    frame = load_wine(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    frame.iloc[::2].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[1::2].to_csv(tmp_path / "test.csv", index=False)
    data = load_dataset("csv", path=str(tmp_path / "train.csv"), target="target",
                        test_path=str(tmp_path / "test.csv"))
    preprocessing = stored(data, tmp_path / "model")
    raw = read_inputs(preprocessing, str(tmp_path / "test.csv"))
    assert data.class_names == ["barbera", "barolo", "grignolino"]
    assert np.array_equal(raw.labels, data.test.y.numpy())
    assert torch.allclose(raw.x, data.test.x, atol=1e-6)
    other = frame.iloc[1::2].reset_index(drop=True)
    other.loc[[3, 8], "target"] = "nebbiolo"
    assert refused(preprocessing, other).endswith(
        "column 'target' has the label 'nebbiolo' (sample 3), not a class of the run; its "
        "classes: barbera, barolo, grignolino")
    assert "has the label '7' (sample 0), not a class" in refused(
        preprocessing, other.assign(target=7))


@pytest.mark.parametrize(("dtype", "scale"), [(np.uint8, "unit"), (np.float64, "standardize")])
def test_arrays_are_prepared_as_their_test_part_was(tmp_path: Path, dtype: Any, scale: str
                                                    ) -> None:
    digits = load_digits()
    x = (digits.images * 15).astype(dtype)
    path = tmp_path / "digits.npz"
    np.savez(path, x=x[:1200], y=digits.target[:1200], x_test=x[1200:], y_test=digits.target[1200:])
    data = load_dataset("numpy", path=str(path))
    preprocessing = stored(data, tmp_path / "model")
    assert (preprocessing.kind, preprocessing.scale) == ("arrays", scale)
    np.savez(tmp_path / "new.npz", x=x[1200:], y=digits.target[1200:])
    raw = read_inputs(preprocessing, str(tmp_path / "new.npz"))
    assert torch.allclose(raw.x, data.test.x, atol=1e-6)
    assert np.array_equal(raw.labels, data.test.y.numpy())
    assert torch.allclose(read_inputs(preprocessing, x[1200:]).x, data.test.x, atol=1e-6)


def digits_folder(root: Path, indices: range) -> Path:
    digits = load_digits()
    pixels = np.minimum(digits.images * 16, 255).astype(np.uint8)
    for index in indices:
        folder = root / str(digits.target[index])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[index]).save(folder / f"{index:04d}.png")
    return root


def test_an_image_folder_is_prepared_as_its_test_part_was(isolated: Path) -> None:
    train = digits_folder(isolated / "train", range(0, 1400))
    test = digits_folder(isolated / "test", range(1400, 1797))
    data = load_dataset("image_folder", path=str(train), test_path=str(test),
                        color_mode="grayscale", image_size=[16, 16])
    preprocessing = stored(data, isolated / "model")
    assert (preprocessing.kind, preprocessing.image_size) == ("images", (16, 16))
    raw = read_inputs(preprocessing, str(test))  # class subfolders: labelled
    assert torch.equal(raw.x, data.test.x) and np.array_equal(raw.labels, data.test.y.numpy())
    target = load_digits().target
    first = {label: next(i for i in range(1400, 1797) if target[i] == label) for label in (0, 3)}
    assert raw.ids[0] == f"0/{first[0]:04d}.png"
    # The images of one class folder given directly: no labels, named by file.
    flat = read_inputs(preprocessing, str(test / "3"))
    assert flat.labels is None and flat.ids[0] == f"{first[3]:04d}.png"
    assert torch.equal(flat.x[0], raw.x[raw.ids.index(f"3/{first[3]:04d}.png")])


def test_the_built_in_images_take_png_files(fixture_data: Path, tmp_path: Path) -> None:
    data = load_dataset("fashion_mnist", validation=100, train_size=200)
    preprocessing = stored(data, tmp_path / "model")
    pixels = (data.test.x[:3] * 255).round().to(torch.uint8).numpy()
    files = []
    for index, image in enumerate(pixels):
        files.append(tmp_path / f"{index}.png")
        Image.fromarray(image).save(files[-1])
    raw = read_inputs(preprocessing, files)
    assert torch.allclose(raw.x, data.test.x[:3], atol=1e-6)


def refused(preprocessing: Preprocessing, source: Any) -> str:
    with pytest.raises(UserInputError) as raised:
        read_inputs(preprocessing, source)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_table_mismatches_are_one_line(tmp_path: Path) -> None:
    train, _, rows = diabetes_tables(tmp_path)
    preprocessing = stored(load_dataset("csv", path=str(train), target="target"),
                           tmp_path / "model")

    def table(frame: pd.DataFrame) -> str:
        path = tmp_path / "new.csv"
        frame.to_csv(path, index=False)
        return str(path)

    assert re.search(r"no column 'bmi'; expected the training features age, sex, bmi",
                     refused(preprocessing, table(rows.drop(columns="bmi"))))
    assert "unknown column 'extra'" in refused(preprocessing, table(rows.assign(extra=1)))
    unseen = rows.copy()
    unseen.loc[4, "sex"] = "other"
    assert refused(preprocessing, table(unseen)).endswith(
        "column 'sex' has the category 'other' at line 6 (line 1 is the header), which the "
        "training data never had; known: female, male")
    gap = rows.copy()
    gap.loc[2, "bmi"] = np.nan
    assert "column 'bmi' has a missing value at line 4" in refused(preprocessing, table(gap))
    text = rows.astype({"age": object})
    text.loc[0, "age"] = "old"
    assert "column 'age' holds text ('old')" in refused(preprocessing, table(text))
    # Several problems: the first column in the training order is named, whatever its kind.
    text.loc[4, "sex"] = "other"
    assert "column 'age' holds text" in refused(preprocessing, table(text))
    unseen = unseen.astype({"bmi": object})
    unseen.loc[1, "bmi"] = "heavy"
    gap.loc[1, "sex"] = "other"
    assert "column 'sex' has the category 'other'" in refused(preprocessing, table(unseen))
    assert "column 'sex' has the category 'other' at line 3" in refused(preprocessing, table(gap))
    assert "no such file or folder" in refused(preprocessing, str(tmp_path / "absent.csv"))
    assert "trained on table" in refused(preprocessing, str(tmp_path))
    assert "has extension '.json'; expected a .csv" in refused(preprocessing, str(tmp_path / "model" /
                                                                PREPROCESSING_FILE))


def test_image_and_array_mismatches_are_one_line(isolated: Path) -> None:
    train = digits_folder(isolated / "train", range(0, 300))
    preprocessing = stored(load_dataset("image_folder", path=str(train)), isolated / "model")
    broken = isolated / "new" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"not a png")
    assert re.search(r"--input .*new: cannot read image .*broken\.png", refused(preprocessing,
                                                                         str(broken.parent)))
    unknown = digits_folder(isolated / "other", range(0, 20))
    (unknown / "3").rename(unknown / "three")
    assert "class folder 'three' is not a class of the run" in refused(preprocessing,
                                                                       str(unknown))
    assert "shape [5, 8, 8]; expected numbers of shape [N, 8, 8, 3]" in refused(
        preprocessing, np.zeros((5, 8, 8)))
    np.savez(isolated / "short.npz", x=np.zeros((4, 8, 8, 3), np.uint8), y=np.zeros(3, int))
    assert "4 inputs but 3 labels" in refused(preprocessing, str(isolated / "short.npz"))
    np.savez(isolated / "objects.npz", x=np.array([{}, {}], dtype=object))
    assert "holds Python objects" in refused(preprocessing, str(isolated / "objects.npz"))
    assert "is a table, but the run was trained on images" in refused(
        preprocessing, pd.DataFrame({"a": [1]}))


def test_a_damaged_preprocessing_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / PREPROCESSING_FILE).write_text('{"format": "tricklab-preprocessing"}')
    with pytest.raises(UserInputError, match="preprocessing version None"):
        Preprocessing.load(tmp_path)
    document = {"format": "tricklab-preprocessing", "version": 1, "dataset": "numpy",
                "kind": "arrays", "input_shape": [2], "scale": "standardize",
                "class_names": [], "mean": [0.0, 1.0, 2.0], "std": [1.0, 1.0, 1.0]}
    (tmp_path / PREPROCESSING_FILE).write_text(json.dumps(document))
    with pytest.raises(UserInputError, match=r"damaged preprocessing file \('mean' has shape"):
        Preprocessing.load(tmp_path)
    (tmp_path / PREPROCESSING_FILE).write_text("{")
    with pytest.raises(UserInputError, match="cannot be read as JSON"):
        Preprocessing.load(tmp_path)
    assert Preprocessing.load(tmp_path / "absent") is None
