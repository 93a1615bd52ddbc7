"""`model_best/`: a run's best epoch's model, as Keras's `ModelCheckpoint(save_best_only=True)`.

A run watches `train.best_monitor` (`val_loss` by default, Keras's default)
with a `tricklab.train.best_weights.BestWeights` callback, which copies the
weights in memory whenever the value improves. When training ends (finished,
stopped early, diverged or interrupted) `write_best` writes them once into
`model_best/`, in `model/`'s format (`tricklab.transfer.save_model`, without
the optimizer state, plus `preprocessing.json`), so `tricklab.load_model` and
`tricklab predict --best` read it as they read `model/`; `result.json`'s
`best` names the epoch (see `best_section`). A resumed run finds the best so
far in its checkpoint's history, and its weights on disk (see
`tricklab.train.best_weights`).

Seeds that a study trains together as one batched model keep no weights per
epoch: their `best` is found in their history and says that no `model_best/`
was written (`replayed_best`).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from tricklab.data import DatasetSplits
from tricklab.nn import Sequential
from tricklab.recipe import Recipe
from tricklab.train.best_weights import BestWeights
from tricklab.transfer import save_model

BEST_DIR = "model_best"
"""The best epoch's model, beside `model/` in the run directory."""

BATCHED_NOTE = (
    "seeds trained together as one batched model keep no weights per epoch, so no "
    "model_best/ was written; `tricklab study --no-batch-seeds` trains each seed on its own"
)
"""Why a batched seed's run has no `model_best/`, in its `result.json`'s `best`."""


def watched(recipe: Recipe, validation: bool) -> str:
    """The history key a run's best epoch is judged by.

    `train.best_monitor`, except that `val_loss` (the default) in a run without
    validation data watches the training `loss`: Keras would warn at every epoch
    and keep nothing, and such a run has no other measure of every epoch.

    Args:
        recipe: A resolved recipe.
        validation: Whether the run has validation data.
    """
    monitor = recipe.train.best_monitor
    return "loss" if monitor == "val_loss" and not validation else monitor


def best_keeper(recipe: Recipe, validation: bool) -> BestWeights:
    """The callback that keeps a run's best weights.

    Where the recipe's early stopping watches the same key, its `mode`,
    `min_delta` and `start_from_epoch` apply too, so that `model_best/` holds
    the epoch whose weights `restore_best_weights` puts back.

    Args:
        recipe: A resolved recipe.
        validation: Whether the run has validation data.
    """
    monitor = watched(recipe, validation)
    for entry in recipe.train.callbacks:
        config = entry.get("early_stopping") if isinstance(entry, dict) else None
        if isinstance(config, dict) and config.get("monitor", "val_loss") == monitor:
            return BestWeights(
                monitor, config.get("mode", "auto"), config.get("min_delta", 0.0),
                config.get("start_from_epoch", 0),
            )
    return BestWeights(monitor)


def write_best(
    run_dir: Path, keeper: BestWeights, model: Sequential, splits: DatasetSplits
) -> dict[str, Any]:
    """Write the best epoch's model into `run_dir/model_best/`; return `result.json`'s `best`.

    The model is saved holding the best weights, then given its own back. A
    run with no best epoch (no finite value of the monitor) has no
    `model_best/`: one left by an earlier process of the run is removed.

    Args:
        run_dir: The run directory.
        keeper: The run's `BestWeights`, after training.
        model: The trained model (its architecture is saved; its weights are left as they are).
        splits: The run's data, whose preprocessing is saved with the model.
    """
    folder = run_dir / BEST_DIR
    if keeper.weights is None:
        if folder.is_dir():
            shutil.rmtree(folder)
        return best_section(keeper, saved=False)
    final = {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}
    model.load_state_dict(keeper.weights)
    try:
        save_model(model, folder)
        splits.preprocessing().save(folder)
    finally:
        model.load_state_dict(final)
    return best_section(keeper, saved=True)


def replayed_best(keeper: BestWeights, history: dict[str, list[float]]) -> dict[str, Any]:
    """`result.json`'s `best` of a run found from its history alone (no weights were kept).

    Args:
        keeper: A fresh `BestWeights` for the run (`best_keeper`).
        history: The run's per-epoch history.
    """
    for epoch in range(len(history.get("loss", []))):
        keeper.observe(epoch, {key: values[epoch] for key, values in history.items()
                               if epoch < len(values)})
    return best_section(keeper, saved=False, note=BATCHED_NOTE)


def best_section(keeper: BestWeights, saved: bool, note: str | None = None) -> dict[str, Any]:
    """`result.json`'s `best`: `epoch` (1-based), `monitor`, `value`, `metrics`, `saved`.

    `metrics` is the best epoch's row of `history.csv` (without `lr` and
    `time_s`); `saved` says whether `model_best/` holds its weights, and `note`
    why not. Without a best epoch, `epoch` and `value` are `None`.

    Args:
        keeper: The run's `BestWeights`.
        saved: Whether `model_best/` was written.
        note: Why it was not. Defaults to `None`: no epoch had a finite value, or
            a resumed run found the best epoch's weights nowhere.
    """
    found = keeper.best_epoch is not None
    if note is None:
        note = (f"the weights of epoch {keeper.best_epoch} were not on disk when the run "
                "resumed (it was killed before it kept them)" if found
                else f"no epoch had a finite {keeper.monitor}")
    section: dict[str, Any] = {
        "epoch": keeper.best_epoch,
        "monitor": keeper.monitor,
        "value": keeper.best if found else None,
        "metrics": {key: value if math.isfinite(value) else None
                    for key, value in keeper.best_logs.items()},
        "saved": saved,
    }
    if note is not None and not saved:
        section["note"] = note
    return section


def missing_best(run_dir: Path) -> str:
    """Why `run_dir` has no `model_best/`, in one line, for `predict --best`.

    Args:
        run_dir: A run directory without `model_best/`.
    """
    try:
        best = json.loads((run_dir / "result.json").read_text(encoding="utf-8")).get("best")
    except (OSError, ValueError, AttributeError):
        best = None  # no readable result: the general reason
    if isinstance(best, dict) and best.get("note"):
        reason = str(best["note"])
    elif isinstance(best, dict) and best.get("saved"):
        reason = f"it was removed after the run saved epoch {best.get('epoch')}'s model there"
    else:
        reason = "the run has no best epoch yet, or was trained by a tricklab that kept none"
    return (f"--best: {run_dir / BEST_DIR} not found ({reason}); without --best, predict uses "
            "the final model in model/")

