"""Datasets as in-memory tensors: IDX files, where to find or fetch them, splits and scaling.

`load_dataset` is the entry point (its parameters are a recipe's `data:`
section); `datasets` is the registry behind `tricklab list datasets`; `splits`
holds the kinds of task a dataset can be split into (`data.split`); `fetch`
backs `tricklab data fetch NAME`; `locate` and `read_idx` are the layers below.
"""

from tricklab.data.datasets import INPUT_SHAPES, DatasetSplits, Split, datasets, load_dataset
from tricklab.data.idx import read_idx
from tricklab.data.sources import fetch, locate
from tricklab.data.splits import FashionMnistTaskAB, TaskSplit, resolve_split, splits

__all__ = [
    "INPUT_SHAPES", "DatasetSplits", "FashionMnistTaskAB", "Split", "TaskSplit", "datasets",
    "fetch", "load_dataset", "locate", "read_idx", "resolve_split", "splits"]
