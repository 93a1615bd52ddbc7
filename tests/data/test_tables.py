"""The `csv` dataset on real tables nobody here wrote: scikit-learn's breast cancer, wine, diabetes.

Each test writes the table with pandas to a CSV, TSV or Parquet file under
`tmp_path`, as a user would, and reads it back through the registry.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from tricklab.data import INPUT_SHAPES, DatasetSplits, datasets, load_dataset
from tricklab.errors import UserInputError
from tricklab.recipe import recipe_from_dict
from tricklab.run import train_recipe


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False)
    return path


def cancer(folder: Path, suffix: str = ".csv") -> Path:
    """Breast cancer: 569 rows, 30 float features, integer target 0 (malignant) / 1 (benign)."""
    return write(load_breast_cancer(as_frame=True).frame, folder / f"cancer{suffix}")


def diabetes_frame() -> pd.DataFrame:
    """Diabetes in its raw units, with `sex` (coded 1/2 by scikit-learn) as text."""
    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame["sex"] = frame["sex"].map({1.0: "female", 2.0: "male"})
    return frame


def test_csv_tsv_and_parquet_give_the_same_standardized_split(tmp_path: Path) -> None:
    loaded = [load_dataset("csv", path=str(cancer(tmp_path, suffix)), target="target")
              for suffix in (".csv", ".tsv", ".parquet")]
    data = loaded[0]
    # 569 rows: 20% test (114), 10% of the remaining 455 for validation (46).
    assert (len(data.train), len(data.val), len(data.test)) == (409, 46, 114)
    assert data.input_shape == (30,) and data.class_names == ["0", "1"]
    assert data.train.y.dtype == torch.int64 and data.scale == "standardize"
    std, mean = torch.std_mean(data.train.x, dim=0, correction=0)
    assert torch.allclose(mean, torch.zeros(30), atol=1e-5)
    assert torch.allclose(std, torch.ones(30), atol=1e-4)
    for other in loaded[1:]:
        for part in ("train", "val", "test"):
            assert torch.allclose(getattr(data, part).x, getattr(other, part).x, atol=1e-6)
            assert torch.equal(getattr(data, part).y, getattr(other, part).y)
    target = load_breast_cancer().target
    full = np.bincount(target)
    test = np.bincount(data.test.y.numpy(), minlength=2)
    assert np.all(np.abs(test - len(data.test) * full / len(target)) <= 1)
    assert INPUT_SHAPES["csv"]({"dataset": "csv", "path": str(tmp_path / "cancer.csv"),
                                "target": "target"}) == (30,)


def test_wine_string_target_is_stratified_and_named_by_its_values(tmp_path: Path) -> None:
    bunch = load_wine(as_frame=True)
    frame = bunch.data.copy()
    frame["cultivar"] = np.asarray(bunch.target_names)[bunch.target]
    path = write(frame, tmp_path / "wine.csv")
    data = load_dataset("csv", path=str(path), target="cultivar", validation=0.2, data_seed=2)
    assert data.class_names == ["class_0", "class_1", "class_2"] and data.input_shape == (13,)
    full = np.bincount(bunch.target)
    for part in (data.test, data.val):
        counts = np.bincount(part.y.numpy(), minlength=3)
        share = len(part) * (full - (0 if part is data.test else np.bincount(
            data.test.y.numpy(), minlength=3))) / (
            len(bunch.target) - (0 if part is data.test else len(data.test)))
        assert np.all(np.abs(counts - share) <= 1)
    again = load_dataset("csv", path=str(path), target="cultivar", validation=0.2, data_seed=2)
    assert torch.equal(data.train.x, again.train.x) and torch.equal(data.val.y, again.val.y)
    kept = load_dataset("csv", path=str(path), target="cultivar", classes=["class_2", "class_0"],
                        features=["alcohol", "proline"], scale="none")
    assert kept.class_names == ["class_2", "class_0"] and kept.input_shape == (2,)
    assert float(kept.train.x[:, 1].max()) <= float(bunch.data["proline"].max())


def test_the_shape_is_read_once_per_version_of_the_file(tmp_path: Path) -> None:
    frame = diabetes_frame()
    path = write(frame, tmp_path / "diabetes.csv")
    options = {"path": str(path), "target": "target"}
    assert INPUT_SHAPES["csv"](options) == (11,)
    frame["sex"] = frame["sex"].where(frame.index % 7 != 0, "third")
    write(frame, path)  # a third category: one more feature
    assert INPUT_SHAPES["csv"](options) == (12,)
    assert INPUT_SHAPES["csv"]({**options, "features": ["age", "sex"]}) == (4,)


def test_diabetes_sex_is_one_hot_with_training_vocabulary(tmp_path: Path) -> None:
    frame = diabetes_frame()
    path = write(frame, tmp_path / "diabetes.csv")
    data = load_dataset("csv", path=str(path), target="target")
    # auto: float target -> regression; 9 numeric features + 2 categories of sex.
    assert data.class_names == [] and data.train.y.dtype == torch.float32
    assert data.input_shape == (11,)
    assert INPUT_SHAPES["csv"]({"path": str(path), "target": "target"}) == (11,)
    sex = data.train.x[:, 1:3]  # sex is the second column: its block is columns 1 and 2
    assert set(sex.flatten().tolist()) == {0.0, 1.0} and torch.all(sex.sum(1) == 1)
    assert data.mean[1:3].tolist() == [0.0, 0.0] and data.std[1:3].tolist() == [1.0, 1.0]
    # Numeric columns are standardized, the one-hot ones kept 0/1.
    assert abs(float(data.train.x[:, 0].mean())) < 1e-5
    explicit = load_dataset("csv", path=str(path), target="target", categorical=["sex"])
    assert torch.equal(explicit.train.x, data.train.x)


def test_unseen_category_in_the_test_file_is_all_zeros(tmp_path: Path) -> None:
    frame = diabetes_frame()
    train = write(frame.iloc[:400], tmp_path / "train.csv")
    held = frame.iloc[400:].copy()
    held.loc[held.index[:3], "sex"] = "unknown"
    test = write(held, tmp_path / "test.parquet")
    data = load_dataset("csv", path=str(train), target="target", test_path=str(test),
                        validation=0)
    assert data.val is None and len(data.train) == 400 and len(data.test) == 42
    assert data.test.x[:3, 1:3].abs().sum() == 0
    assert torch.all(data.test.x[3:, 1:3].sum(1) == 1)
    assert torch.allclose(data.test.y, torch.tensor(held["target"].to_numpy(), dtype=torch.float32))


BMI_GAPS = np.arange(3, 442, 20)
REGION_GAPS = np.arange(7, 442, 11)


def mixed_frame() -> pd.DataFrame:
    """Diabetes with an `id` feature, text, boolean and integer columns interleaved, and gaps.

    `sex` is text; `smoker` a boolean and `visits` an integer, both drawn from a fixed seed;
    `region` text and `bmi` a number, each with missing cells (`REGION_GAPS`, `BMI_GAPS`).
    """
    frame = diabetes_frame()
    rng = np.random.default_rng(7)
    rows = len(frame)
    frame.insert(0, "id", np.arange(rows))
    frame.insert(3, "smoker", rng.random(rows) < 0.3)
    frame.insert(5, "region", rng.choice(["north", "south", "east", "west-coast"], rows))
    frame.insert(6, "visits", rng.integers(0, 12, rows))
    frame.loc[BMI_GAPS, "bmi"] = np.nan
    frame.loc[REGION_GAPS, "region"] = None
    return frame


def reference(frame: pd.DataFrame, target: str, categorical: list[str], train: np.ndarray,
              rows: np.ndarray) -> tuple[np.ndarray, list[list[str] | None]]:
    """`rows` encoded cell by cell in float64, with `train`'s vocabularies and means, then float32."""
    features = [name for name in frame.columns if name != target]
    vocabularies: list[list[str] | None] = []
    encoded = []
    for name in features:
        column = frame[name].to_numpy(dtype=object)
        if name in categorical:
            vocabulary = sorted({str(value) for value in column[train] if not pd.isna(value)})
            vocabularies.append(vocabulary)
            encoded.append([[float(not pd.isna(value) and str(value) == category)
                             for category in vocabulary] for value in column[rows]])
        else:
            vocabularies.append(None)
            known = [float(value) for value in column[train] if not pd.isna(value)]
            fill = math.fsum(known) / len(known)
            encoded.append([[fill if pd.isna(value) else float(value)] for value in column[rows]])
    return np.concatenate([np.array(block, dtype=np.float64) for block in encoded],
                          axis=1).astype(np.float32), vocabularies


def test_encoding_matches_a_cell_by_cell_reference(tmp_path: Path) -> None:
    frame = mixed_frame()
    path = write(frame, tmp_path / "mixed.csv")
    data = load_dataset("csv", path=str(path), target="target", missing="mean", scale="none")
    # id, age, sex (2), smoker, bmi, region (4), visits, bp, s1..s6 -> 18 features.
    assert data.input_shape == (18,)
    train = data.train.x[:, 0].numpy().astype(np.int64)  # the id feature names each row
    columns = data.raw_inputs["columns"]
    for part in (data.train, data.val, data.test):
        rows = part.x[:, 0].numpy().astype(np.int64)
        filled = np.isin(rows, BMI_GAPS)
        assert filled.any() and np.isin(rows, REGION_GAPS).any()  # gaps in every part
        expected, vocabularies = reference(frame, "target", ["sex", "region"], train, rows)
        assert [column.categories for column in columns] == vocabularies
        # Bit for bit, but for the filled cells: the reference sums exactly, pandas pairwise.
        assert np.array_equal(part.x.numpy()[~filled], expected[~filled])
        np.testing.assert_allclose(part.x.numpy()[filled], expected[filled], rtol=1e-6)
        assert np.array_equal(part.y.numpy(), frame["target"].to_numpy(np.float32)[rows])
    region, empty = data.train.x[:, 6:10], torch.from_numpy(np.isin(train, REGION_GAPS))
    assert region[empty].abs().sum() == 0 and torch.all(region[~empty].sum(1) == 1)
    standardized = load_dataset("csv", path=str(path), target="target", missing="mean")
    one_hot = np.zeros(18, dtype=bool)
    one_hot[[2, 3, 6, 7, 8, 9]] = True
    raw = data.train.x.numpy().astype(np.float64)
    np.testing.assert_allclose(standardized.mean.numpy()[~one_hot], raw.mean(0)[~one_hot],
                               rtol=1e-6)
    np.testing.assert_allclose(standardized.std.numpy()[~one_hot], raw.std(0)[~one_hot],
                               rtol=1e-6)
    assert standardized.mean[one_hot].tolist() == [0.0] * 6
    assert standardized.std[one_hot].tolist() == [1.0] * 6
    assert torch.equal(standardized.train.x, (data.train.x - standardized.mean) / standardized.std)


def test_integer_target_with_many_values_is_regression(tmp_path: Path) -> None:
    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame["target"] = frame["target"].astype(int)  # 214 distinct values > 20
    frame["sex"] = frame["sex"].astype(int)  # written as 1 and 2, not 1.0 and 2.0
    path = write(frame, tmp_path / "int.csv")
    data = load_dataset("csv", path=str(path), target="target")
    assert data.class_names == [] and data.train.y.dtype == torch.float32
    sex = load_dataset("csv", path=str(path), target="sex")  # integer 1/2: 2 values
    assert sex.class_names == ["1", "2"]


def with_gaps(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    frame = load_breast_cancer(as_frame=True).frame
    frame.loc[5, "mean radius"] = np.nan
    frame.loc[9, "worst area"] = np.nan
    return write(frame, tmp_path / "gaps.csv"), frame


def test_missing_values_drop_or_mean(tmp_path: Path) -> None:
    path, frame = with_gaps(tmp_path)
    dropped = load_dataset("csv", path=str(path), target="target", missing="drop")
    assert len(dropped.train) + len(dropped.val) + len(dropped.test) == 567
    filled = load_dataset("csv", path=str(path), target="target", missing="mean", scale="none")
    assert len(filled.train) + len(filled.val) + len(filled.test) == 569
    column = list(frame.columns).index("mean radius")
    everything = torch.cat([filled.train.x, filled.val.x, filled.test.x])[:, column]
    assert torch.isfinite(everything).all()
    # The filled value is the training part's mean of the column.
    mean = float(filled.train.x[:, column].mean())
    raw = set(frame["mean radius"].dropna().astype(np.float32).tolist())
    assert any(abs(value - mean) < 1e-3 for value in everything.tolist() if value not in raw)


def bad_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_bad_inputs_are_one_line(tmp_path: Path) -> None:
    path = str(cancer(tmp_path))
    gaps = str(with_gaps(tmp_path)[0])
    diabetes = str(write(diabetes_frame(), tmp_path / "diabetes.csv"))
    empty = bad_file(tmp_path, "empty.csv", "")
    header = bad_file(tmp_path, "header.csv", "a,b,label\n")
    single = str(write(load_wine(as_frame=True).frame.assign(target="red"), tmp_path / "one.csv"))
    absent = str(tmp_path / "absent.csv")
    columns = ", ".join(load_breast_cancer(as_frame=True).frame.columns)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"path": absent, "target": "y"},
         f"data.path: file not found: {absent}; expected a .csv, .tsv or .parquet table with "
         "a header row"),
        ({"path": path, "target": "label"},
         f"data file {path}: no target column 'label' (data.target); columns: {columns}"),
        ({"path": path, "target": "target", "features": ["mean radius", "radius"]},
         f"data.features: no column 'radius' in {path}; columns: {columns}"),
        ({"path": diabetes, "target": "target", "categorical": []},
         f"data file {diabetes}: column 'sex' holds text ('male') but is not in "
         "data.categorical, which was given explicitly so auto-detection is off; add it to "
         "data.categorical or leave it out of data.features"),
        ({"path": gaps, "target": "target"},
         f"data file {gaps}: column 'mean radius' has a missing value at line 7 (line 1 is "
         "the header); set data.missing: drop or mean, or fill it in the file"),
        ({"path": single, "target": "target"},
         f"data file {single}: column 'target' holds a single class ('red'); a classification "
         "needs at least 2 (for numeric targets set task: regression)"),
        ({"path": empty, "target": "label"},
         f"data file {empty}: is empty; expected a header and data rows"),
        ({"path": header, "target": "label"},
         f"data file {header}: is empty (columns: a, b, label); expected data rows"),
        ({"path": str(tmp_path / "t.xlsx"), "target": "y"},
         f"data.path: {tmp_path / 't.xlsx'} has extension '.xlsx'; expected .csv, .tsv or "
         ".parquet"),
    ]
    for options, message in cases:
        for load in (lambda options=options: load_dataset("csv", **options),
                     lambda options=options: INPUT_SHAPES["csv"](options)):
            with pytest.raises(UserInputError) as caught:
                load()
            assert str(caught.value) == message
            assert "\n" not in str(caught.value)


def test_missing_value_in_parquet_counts_rows(tmp_path: Path) -> None:
    frame = load_breast_cancer(as_frame=True).frame
    frame.loc[3, "target"] = np.nan
    path = str(write(frame, tmp_path / "gap.parquet"))
    message = (f"data file {path}: column 'target' has a missing value at row 4; set "
               "data.missing: drop, or fill it in the file")
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}$"):
        load_dataset("csv", path=path, target="target", missing="mean")


def test_registry_entry_and_recipe_defaults(tmp_path: Path) -> None:
    info = datasets.info("csv")
    assert "parquet" in info.description.lower() and "pandas" in info.reference
    path = str(cancer(tmp_path))
    assert datasets.validate("csv", {"path": path, "target": "target"}, "data") == {
        "path": path, "target": "target", "test_path": None, "features": None,
        "categorical": None, "task": "auto", "missing": "error", "validation": 0.1,
        "test_fraction": 0.2, "train_size": None, "classes": None, "scale": "standardize",
        "data_seed": 0,
    }
    with pytest.raises(UserInputError, match=re.escape("data.missing")):
        datasets.validate("csv", {"path": path, "target": "target", "missing": "zero"}, "data")


def recipe(path: Path, target: str, layers: list[Any], loss: str, epochs: int,
           **train: Any) -> dict[str, Any]:
    return {
        "name": path.stem, "seed": 1,
        "data": {"dataset": "csv", "path": str(path), "target": target},
        "model": {"layers": layers},
        "train": {"loss": loss, "optimizer": {"name": "adam", "learning_rate": 1e-3},
                  "batch_size": 32, "epochs": epochs, **train},
    }


def test_breast_cancer_end_to_end_reaches_90_percent(tmp_path: Path) -> None:
    doc = recipe(cancer(tmp_path), "target", [
        {"dense": {"units": 32, "activation": "relu"}},
        {"dense": {"units": 2, "activation": "softmax"}},
    ], "sparse_categorical_crossentropy", 20, metrics=["accuracy"])
    outcome = train_recipe(recipe_from_dict(doc), out=tmp_path / "run", progress="none")
    accuracy = outcome.result["metrics"]["test_accuracy"]
    print(f"breast cancer test accuracy {accuracy:.4f}")
    assert accuracy > 0.9
    assert outcome.result["dataset"] == {"name": "csv", "train": 409, "val": 46, "test": 114}
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "completed"


def test_diabetes_end_to_end_beats_the_training_mean(tmp_path: Path) -> None:
    path = write(diabetes_frame(), tmp_path / "diabetes.csv")
    doc = recipe(path, "target", [{"dense": {"units": 64, "activation": "relu"}},
                                  {"dense": {"units": 1}}], "mse", 150, metrics=["mae"])
    doc["train"]["optimizer"]["learning_rate"] = 0.01  # targets near 150 need a faster start
    outcome = train_recipe(recipe_from_dict(doc), out=tmp_path / "run", progress="none")
    data: DatasetSplits = load_dataset("csv", path=str(path), target="target")
    baseline = float((data.test.y - data.train.y.mean()).abs().mean())
    mae = outcome.result["metrics"]["test_mae"]
    print(f"diabetes test MAE {mae:.1f}, predicting the training mean {baseline:.1f}")
    assert mae < 0.8 * baseline
