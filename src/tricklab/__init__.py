"""tricklab: train deep neural networks well, and measure what each trick buys.

The main entry points are importable from here; they load lazily (PEP 562) so
that `tricklab --version` and `import tricklab` do not pay for PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Trainer": "tricklab.train",
    "FitResult": "tricklab.train",
    "build_model": "tricklab.nn",
    "format_summary": "tricklab.nn",
    "make_optimizer": "tricklab.optim",
    "load_dataset": "tricklab.data",
    "load_recipe": "tricklab.recipe",
    "train_recipe": "tricklab.run",
    "load_study": "tricklab.recipe.study",
    "run_study": "tricklab.run.study",
    "write_study_report": "tricklab.report.study_report",
    "save_model": "tricklab.transfer",
    "load_model": "tricklab.transfer",
    "save_weights": "tricklab.transfer",
    "load_weights": "tricklab.transfer",
    "predict": "tricklab.transfer",
    "predict_raw": "tricklab.transfer",
    "clone_model": "tricklab.transfer",
    "reuse_layers": "tricklab.transfer",
    "UserInputError": "tricklab.errors",
}

_SUBPACKAGES = ("doctor", "study", "transfer")
"""Reachable as attributes, `tricklab.doctor.watch(model)`, without importing them first."""

__all__ = ["__version__", *_EXPORTS, *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"tricklab.{name}")
    raise AttributeError(f"module 'tricklab' has no attribute {name!r}")
