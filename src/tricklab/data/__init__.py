"""Datasets as in-memory tensors: IDX files, where to find or fetch them, splits and scaling.

`load_dataset` is the entry point (its parameters are a recipe's `data:`
section); `datasets` is the registry behind `tricklab list datasets`, whose
`adding_problem` is drawn from a seed (`generated`) rather than read, whose
`cifar10` and `cifar100` read CIFAR's official binary archives (`cifar`), and whose
`numpy`, `csv` and `image_folder` read the user's own arrays, tables and image
folders (`arrays`, `tables`, `images`, on the shared `own` checks, splits and
scaling); `splits` holds the kinds of task a dataset can be split into
(`data.split`); `fetch` backs `tricklab data fetch NAME`; `locate` and
`read_idx` are the layers below.
"""

from tricklab.data.arrays import numpy_arrays, sample_shape
from tricklab.data.cifar import cifar10, cifar100
from tricklab.data.datasets import (
    AUTO_OPTIONS,
    INPUT_SHAPES,
    DatasetSplits,
    Split,
    datasets,
    load_dataset,
)
from tricklab.data.generated import adding_problem
from tricklab.data.idx import read_idx
from tricklab.data.images import image_folder
from tricklab.data.own import own_splits
from tricklab.data.preprocessing import Preprocessing
from tricklab.data.sources import fetch, locate
from tricklab.data.splits import FashionMnistTaskAB, TaskSplit, resolve_split, splits
from tricklab.data.tables import csv_table

__all__ = [
    "AUTO_OPTIONS",
    "INPUT_SHAPES",
    "DatasetSplits",
    "FashionMnistTaskAB",
    "Preprocessing",
    "Split",
    "TaskSplit",
    "adding_problem",
    "cifar10",
    "cifar100",
    "csv_table",
    "datasets",
    "fetch",
    "image_folder",
    "load_dataset",
    "locate",
    "numpy_arrays",
    "own_splits",
    "read_idx",
    "resolve_split",
    "sample_shape",
    "splits",
]
