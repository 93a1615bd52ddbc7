"""The run directory: `recipe.yaml`, `result.json`, `history.csv`, `checkpoints/`, `plots/`.

Every file is written atomically. `result.json` is written last, so a folder
with checkpoints and no `result.json` is a run that was killed and can resume.

A run's folder comes into being with its first finished epoch: a run that
fails or is stopped before that leaves no folder behind (or exactly the one
that was there), so the corrected command just works. `--overwrite` replaces
only a folder that holds nothing but a run's own files; the old run is set
aside and deleted once the new one has finished its first epoch
(`tricklab.run.replace`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tricklab import atomic
from tricklab.errors import EXIT_INTERRUPTED, SystemRefusedError, TricklabError, UserInputError
from tricklab.run.replace import SetAside, check_replaceable, foreign_entries, recover

RUN_ENTRIES = (
    "recipe.yaml", "result.json", "history.csv", "checkpoints", "plots", "model", "model_best",
    "doctor.json", "lr_find.json", "predictions.json", "predictions.csv",
    "predictions_confusion_matrix.png", "tensorboard",
)
"""What tricklab writes into a run directory (train, doctor, lr-find, predict)."""

_CHECKPOINT = re.compile(r"^epoch_(\d{4,})\.pt$")


class RunInterrupted(TricklabError):
    """Ctrl-C or SIGTERM where the run cannot end as `interrupted` (exit code 130 or 143).

    Before training began or the first epoch ended, nothing was kept; while the
    results were written, the last checkpoint is kept and `--resume` finishes the
    run. The message says which.
    """

    exit_code = EXIT_INTERRUPTED


class RunDirectory:
    """Paths and writers of one run's folder.

    Args:
        path: The folder, e.g. `runs/<name>`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def recipe_path(self) -> Path:
        return self.path / "recipe.yaml"

    @property
    def result_path(self) -> Path:
        return self.path / "result.json"

    @property
    def history_path(self) -> Path:
        return self.path / "history.csv"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    def holds_run(self) -> bool:
        """Whether the folder already holds (part of) a run."""
        return self.path.is_dir() and any(self.path.iterdir())

    def has_progress(self) -> bool:
        """Whether a run here got somewhere: a checkpoint or a result."""
        return self.result_path.is_file() or bool(self.checkpoint_epochs())

    def checkpoint_epochs(self) -> list[int]:
        """Epochs of the checkpoints present, in order."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(int(match.group(1)) for entry in self.checkpoints.iterdir()
                      if (match := _CHECKPOINT.match(entry.name)))

    def check_usable(self, resume: bool, overwrite: bool) -> None:
        """Refuse a folder that holds another run unless told how, and any that is not a run.

        Also finishes what an `--overwrite` killed mid-way left behind (see
        `tricklab.run.replace.recover`).

        Raises:
            UserInputError: When the path cannot be a folder, the folder holds files
                that are not a run's, holds a run and neither `resume` nor `overwrite`
                is set, or `resume` is set and there is nothing to resume.
        """
        folders = (self.path, *self.path.absolute().parents)
        for folder in folders:
            if folder.exists() and not folder.is_dir():
                raise UserInputError(f"--out: {folder} exists and is not a directory")
        # The nearest existing folder is where the run's folder will be made: found
        # read-only now rather than after an epoch of training.
        nearest = next(folder for folder in folders if folder.is_dir())
        if not os.access(nearest, os.W_OK | os.X_OK):
            raise SystemRefusedError(
                f"--out: {nearest}: cannot write there (a read-only filesystem or no permission)"
            )
        if resume and overwrite:
            raise UserInputError("--resume and --overwrite exclude each other; choose one")
        recover(self.path, self.has_progress())
        if self.holds_run():
            foreign = foreign_entries(self.path, RUN_ENTRIES)
            if foreign or not self.recipe_path.is_file():
                shown = ", ".join(foreign[:3]) or "no recipe.yaml"
                raise UserInputError(
                    f"--out: {self.path} is not a tricklab run ({shown}); tricklab writes runs "
                    "only into a new or empty folder or one of its own runs: choose another --out"
                )
        if resume and not self.recipe_path.is_file():
            raise UserInputError(f"--resume: {self.path} holds no run to resume (no recipe.yaml)")
        if overwrite:
            check_replaceable(self.path, "--overwrite", RUN_ENTRIES, "run")
        elif self.holds_run() and not resume:
            raise UserInputError(
                f"{self.path} already holds a run; pass --resume to continue it, "
                "--overwrite to replace it, or --out DIR to train elsewhere"
            )

    def stored_recipe(self) -> dict[str, Any]:
        """The resolved recipe written when the run started.

        Raises:
            UserInputError: When the stored file cannot be read as a recipe.
        """
        from tricklab.recipe.load import read_yaml

        stored = read_yaml(self.recipe_path)
        if not isinstance(stored, dict) or not isinstance(stored.get("train"), dict):
            raise UserInputError(
                f"{self.recipe_path}: not a run's resolved recipe (a mapping with name, data, "
                "model and train); the file was left as it is"
            )
        return stored

    def epochs_done(self) -> int:
        """Epochs this run has trained: its result's count, else its newest checkpoint's.

        Raises:
            UserInputError: When `result.json` cannot be parsed.
        """
        if self.result_path.is_file():
            try:
                result = json.loads(self.result_path.read_text(encoding="utf-8"))
                return int(result["epochs_run"])
            except (ValueError, TypeError, KeyError, UnicodeDecodeError):
                raise UserInputError(
                    f"{self.result_path}: not a run's result (JSON with epochs_run); "
                    "the file was left as it is"
                ) from None
        return max(self.checkpoint_epochs(), default=0)

    @contextlib.contextmanager
    def starting(self, overwrite: bool, resume: bool) -> Iterator[SetAside | None]:
        """Within the block a run starts; if it fails before any progress, undo its traces.

        With `overwrite`, the old folder is set aside first; the block calls
        `discard()` on what it yields once the new run has finished an epoch,
        and a failure before then puts the old folder back. A new run that fails
        before its first checkpoint leaves the folder as it was before (absent,
        or empty).

        Args:
            overwrite: Set the old run aside (it was checked by `check_usable`).
            resume: The run continues in place; its folder is never removed.
        """
        existed = self.path.exists()
        aside = SetAside(self.path) if overwrite else None
        try:
            yield aside
        except BaseException:
            if not resume and not self.has_progress():
                if self.path.is_dir():
                    shutil.rmtree(self.path)
                if existed and aside is None:
                    self.path.mkdir()
                if aside is not None:
                    aside.restore()
            raise
        if aside is not None:
            aside.discard()

    def write_recipe(self, recipe: dict[str, Any]) -> None:
        atomic.write_text(self.recipe_path, yaml.safe_dump(recipe, sort_keys=False))

    def write_history(self, history: dict[str, list[float]]) -> None:
        """One row per epoch, 1-based `epoch` first, then every logged key."""
        keys = list(history)
        rows = max((len(values) for values in history.values()), default=0)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["epoch", *keys])
        for row in range(rows):
            values = [history[key][row] if row < len(history[key]) else "" for key in keys]
            writer.writerow([row + 1, *values])
        atomic.write_text(self.history_path, buffer.getvalue())

    def write_result(self, result: dict[str, Any]) -> None:
        atomic.write_json(self.result_path, result)
