"""Resolving a recipe records what `auto` chose, read from the files' headers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tricklab.recipe import recipe_from_dict


def resolved_scale(data: dict) -> str:
    recipe = recipe_from_dict({"name": "r", "data": data, "model": {"layers": [
        "flatten", {"dense": {"units": 2, "activation": "softmax"}}]}, "train": {"optimizer": "sgd"}})
    return recipe.data["scale"]


@pytest.mark.parametrize(("dtype", "given", "chosen"), [
    (np.uint8, "auto", "unit"), (np.float32, "auto", "standardize"),
    (np.int64, "auto", "standardize"), (np.uint8, "none", "none"),
])
def test_numpy_scale_auto_is_decided_from_the_dtype_in_the_header(tmp_path: Path, dtype, given,
                                                                   chosen) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((6, 3), dtype=dtype), y=np.array([0, 1] * 3))
    assert resolved_scale({"dataset": "numpy", "path": str(path), "scale": given}) == chosen


def test_image_folder_scale_auto_is_unit(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / name / "1.png")
    assert resolved_scale({"dataset": "image_folder", "path": str(tmp_path)}) == "unit"
    assert resolved_scale({"dataset": "image_folder", "path": str(tmp_path),
                           "scale": "standardize"}) == "standardize"
