"""Loading a 200,000-row CSV as a dataset vs `pandas.read_csv` of it alone (target: ratio <= 1.5).

The table is generated into a temporary folder from a fixed seed: 50 numeric
columns (normal values written with 4 decimals), 2 categorical text columns
(6 colours, 30 regions) and an integer target with 5 classes (a noisy argmax of
linear functions of the numbers), 52 features in all, about 80 MB of CSV.
Measured in this run, each with the file in the page cache (it is read once
before anything is timed, and both are called once untimed):

- tricklab: `load_dataset("csv", path=..., target="label")`, everything a
  recipe's `data: {dataset: csv, ...}` does: the pyarrow-engine read, the
  stratified test and validation split, the one-hot encoding of the categories
  with the training vocabularies, standardizing with training statistics, the
  float32 tensors of the three parts and the finiteness check;
- pandas: `pandas.read_csv(path, engine="pyarrow")` of the same file alone.

The two alternate, so drift of the machine affects both alike; printed are the
medians of each and the ratio tricklab / pandas, the median of the ratios of
adjacent pairs (a pair shares the machine's state of the moment, which on a
shared virtual machine moves the read time by ±20 % from one second to the next).

Run: `.venv/bin/python benchmarks/csv_load.py [--rows 200000] [--repeats 9]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv
import torch

from tricklab.data import load_dataset

NUMERIC = 50
COLOURS = ["amber", "blue", "crimson", "green", "ivory", "violet"]
REGIONS = [f"region-{index:02d}" for index in range(30)]
CLASSES = 5


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    """The benchmark's CSV: numbers, two text columns and a 5-class target, from `seed`."""
    rng = np.random.default_rng(seed)
    numbers = np.round(rng.standard_normal((rows, NUMERIC)), 4)
    colour = rng.integers(len(COLOURS), size=rows)
    region = rng.integers(len(REGIONS), size=rows)
    scores = numbers @ rng.standard_normal((NUMERIC, CLASSES)) + rng.standard_normal(
        (rows, CLASSES)) + 0.5 * (colour[:, None] == np.arange(CLASSES))
    columns = {f"x{index:02d}": numbers[:, index] for index in range(NUMERIC)}
    columns["colour"] = np.array(COLOURS)[colour]
    columns["region"] = np.array(REGIONS)[region]
    columns["label"] = scores.argmax(axis=1)
    pyarrow.csv.write_csv(pa.table(columns), path)


def timed(load) -> float:
    start = time.perf_counter()
    load()
    return time.perf_counter() - start


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """The median of `ours[i] / theirs[i]`, times measured alternately in pairs."""
    return statistics.median(mine / other for mine, other in zip(ours, theirs, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.csv"
        write_table(path, args.rows)
        path.read_bytes()  # into the page cache
        splits = load_dataset("csv", path=str(path), target="label")  # warm-up of both
        pd.read_csv(path, engine="pyarrow")
        print(f"torch {torch.__version__}, pandas {pd.__version__}, pyarrow {pa.__version__}, "
              f"threads {torch.get_num_threads()}")
        print(f"{path.stat().st_size / 1e6:.0f} MB CSV, {args.rows} rows, {NUMERIC} numeric + 2 "
              f"categorical columns -> {splits.input_shape[0]} features; parts "
              f"{len(splits.train.y)} / {len(splits.val.y)} / {len(splits.test.y)}")
        del splits
        ours, theirs = [], []
        for _ in range(args.repeats):  # alternated so drift affects both alike
            ours.append(timed(lambda: load_dataset("csv", path=str(path), target="label")))
            theirs.append(timed(lambda: pd.read_csv(path, engine="pyarrow")))
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    ratio = paired_ratio(ours, theirs)
    print(f"pandas.read_csv (pyarrow) : {theirs_s:7.3f} s (median of {args.repeats})")
    print(f"tricklab load_dataset csv : {ours_s:7.3f} s (median of {args.repeats})")
    print(f"ratio tricklab / read_csv = {ratio:.3f}, median of paired ratios  (target <= 1.5: "
          f"{'ok' if ratio <= 1.5 else 'MISSED'})")


if __name__ == "__main__":
    main()
