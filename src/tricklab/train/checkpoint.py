"""Epoch-end checkpoints that a killed run resumes from, bit for bit.

Each checkpoint is one file written atomically with `torch.save` and read back
with `torch.load(weights_only=True)`, which refuses to unpickle anything but
tensors and plain Python containers. The newest `keep` files are kept, so a
latest file that is corrupt (a full disk, a bad sector) or that does not fit
the run resuming from it (another architecture written into the same folder,
a damaged optimizer state) falls back to the one before it with a one-line
warning; when none is left, training starts over, with a warning too.

`check_model_state` and `check_optimizer_state` tell whether a saved state
fits a model or an optimizer without touching either, so a misfit leaves the
weights as they were instead of half restored. `check_checkpoint` checks a
whole checkpoint (format, entries, model, RNG, loss scaler, and in the phase
that saved it the optimizer and callback states) against a run's live
objects (`RunObjects`), and `restore_checkpoint` checks, then restores them.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tricklab import atomic

if TYPE_CHECKING:
    from tricklab.train.callbacks import Callback

_NAME = re.compile(r"^epoch_(\d{4,})\.pt$")
# Names listed in a misfit's message before "and N more".
_LISTED = 3
# A cause quoted from an exception is cut to this many characters.
_CAUSE_CHARS = 200
_UNPICKLER = "WeightsUnpickler error:"

CHECKPOINT_FORMAT = 1
"""The version of a checkpoint's layout that this version writes and reads."""

_ENTRY_TYPES: dict[str, type] = {
    "epoch": int, "phase": int, "stop_training": bool, "global_step": int,
    "model": dict, "history": dict, "rng": dict,
}
"""The entries every checkpoint holds, and their types."""


class CheckpointMismatch(ValueError):
    """A readable checkpoint that cannot restore this run; the message says why, in one line."""


class CheckpointManager:
    """Writes and finds `epoch_NNNN.pt` files in one folder.

    Args:
        directory: Folder holding the checkpoints (created on the first save).
        keep: How many of the newest checkpoints to keep. Defaults to `2`.
    """

    def __init__(self, directory: str | Path, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.directory = Path(directory)
        self.keep = keep

    def paths(self) -> list[Path]:
        """Checkpoint files present, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [
            (int(match.group(1)), path)
            for path in self.directory.iterdir()
            if (match := _NAME.match(path.name))
        ]
        return [path for _, path in sorted(found)]

    def save(self, epoch: int, state: dict[str, Any]) -> Path:
        """Atomically write the state reached after `epoch` (1-based count) and prune old files."""
        path = self.directory / f"epoch_{epoch:04d}.pt"
        atomic.write_with(path, lambda file: torch.save(state, file))
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(
        self, accept: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any] | None:
        """Return the newest checkpoint that is readable and that `accept` takes.

        Files are tried newest first. One that cannot be read, is not a mapping,
        or that `accept` refuses is skipped with a one-line `RuntimeWarning`
        naming it and the cause; when every file is skipped, the last warning
        says that training starts over.

        Args:
            accept: Called with each readable checkpoint, newest first; it
                restores the checkpoint into the run, or raises (best a
                `CheckpointMismatch`) without having changed anything, to
                have the previous file tried. Defaults to `None` (any readable
                checkpoint is taken).

        Returns:
            The checkpoint taken, or `None` when there is none.
        """
        paths = self.paths()
        for index in range(len(paths) - 1, -1, -1):
            path = paths[index]
            next_step = (
                "falling back to the previous one" if index
                else "no earlier checkpoint is left: training starts over"
            )
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:  # any failure to read means "corrupt": try the previous one
                _warn(f"checkpoint {path} is unreadable ({_cause(error)}); {next_step}")
                continue
            try:
                if not isinstance(state, dict):
                    raise CheckpointMismatch(
                        f"it holds a {type(state).__name__}, not a checkpoint's mapping"
                    )
                if accept is not None:
                    accept(state)
            except Exception as error:  # whatever the content, a misfit is not a traceback
                cause = str(error) if isinstance(error, CheckpointMismatch) else _cause(error)
                _warn(f"checkpoint {path} does not fit this run ({cause}); {next_step}")
                continue
            return state
        return None


@dataclass
class RunObjects:
    """The live objects of a run that a checkpoint restores into.

    Args:
        model: The model, whose weights are restored.
        optimizer: The optimizer of the current phase.
        generator: The CPU generator that shuffles batches.
        phase: The current training phase (0 for the first).
        callbacks: The callbacks whose states are checkpointed, in order.
        device: The model's device; its generator is restored on a GPU.
        scaler: The float16 loss scaler, `None` without one. Defaults to `None`.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    phase: int
    callbacks: Sequence[Callback]
    device: torch.device
    scaler: torch.amp.GradScaler | None = None


def random_states(generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """A checkpoint's `rng` entry: the states of every generator a resumed run draws from.

    The global and the shuffling generators', and on a GPU that device's
    (dropout masks are drawn there).

    Args:
        generator: The CPU generator that shuffles batches.
        device: The model's device.
    """
    states = {"global": torch.get_rng_state(), "shuffle": generator.get_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def check_checkpoint(state: dict[str, Any], run: RunObjects) -> bool:
    """Check that `state` fits `run` without changing anything; return whether it is this phase's.

    Only a checkpoint of the run's own phase restores the optimizer and
    callback states (another phase's optimizer may train other parameters),
    so only then are they checked.

    Args:
        state: A checkpoint, as read from its file.
        run: The live objects it would restore into.

    Raises:
        CheckpointMismatch: Naming the first thing that does not fit.
    """
    _check_entries(state)
    check_model_state(state["model"], run.model)
    if not all(isinstance(key, str) and isinstance(values, list)
               for key, values in state["history"].items()):
        raise CheckpointMismatch("history: not a mapping of names to lists")
    rng = state["rng"]
    check_tensor_like(rng.get("global"), torch.get_rng_state(), "rng.global")
    check_tensor_like(rng.get("shuffle"), run.generator.get_state(), "rng.shuffle")
    if "cuda" in rng and run.device.type == "cuda":
        check_tensor_like(rng["cuda"], torch.cuda.get_rng_state(run.device), "rng.cuda")
    scaler = state.get("grad_scaler")
    if run.scaler is not None and scaler is not None and (
        not isinstance(scaler, dict) or set(scaler) != set(run.scaler.state_dict())
    ):
        raise CheckpointMismatch("grad_scaler: not the state of a float16 loss scaler")
    same_phase = state.get("phase", 0) == run.phase
    if same_phase:
        check_optimizer_state(state.get("optimizer"), run.optimizer)
        _check_callback_states(state.get("callbacks"), run.callbacks)
    return same_phase


def restore_checkpoint(state: dict[str, Any], run: RunObjects) -> None:
    """Restore `state` into `run`'s objects, or raise `CheckpointMismatch` leaving them untouched.

    Everything is checked (`check_checkpoint`) before anything is restored. Of
    the restoring itself only the callbacks' and the loss scaler's
    `load_state_dict` can still refuse (what their states hold is their own
    business), so they go first, then the optimizer, whose own load checks
    before it changes anything; on a failure they are put back, before the
    model's weights are touched. Then the weights and the random states. The
    history, step count and stop flag are the caller's to take from `state`.

    Args:
        state: A checkpoint, as read from its file.
        run: The live objects to restore into.

    Raises:
        CheckpointMismatch: Naming what does not fit or does not load.
    """
    same_phase = check_checkpoint(state, run)
    checkpointed = list(run.callbacks) if same_phase else []
    scaler = run.scaler if "grad_scaler" in state else None
    before = [callback.state_dict() for callback in checkpointed]
    scaler_before = scaler.state_dict() if scaler is not None else None
    loading = ""
    try:
        saved_states = state["callbacks"] if same_phase else []
        for callback, saved in zip(checkpointed, saved_states, strict=True):
            loading = f"callback {type(callback).__name__}"
            callback.load_state_dict(saved)
        if scaler is not None:
            loading = "float16 loss scaler"
            scaler.load_state_dict(state["grad_scaler"])
        if same_phase:
            # Last: the optimizer's own load checks before it changes anything.
            loading = "optimizer"
            run.optimizer.load_state_dict(state["optimizer"])
    except Exception as error:
        for callback, saved in zip(checkpointed, before, strict=True):
            callback.load_state_dict(saved)
        if scaler is not None:
            scaler.load_state_dict(scaler_before)
        first = str(error).splitlines()[0] if str(error) else ""
        raise CheckpointMismatch(
            f"the state of the {loading} does not load ({type(error).__name__}: {first})"
        ) from None
    run.model.load_state_dict(state["model"])
    torch.set_rng_state(state["rng"]["global"])
    if "cuda" in state["rng"] and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["rng"]["cuda"], run.device)
    run.generator.set_state(state["rng"]["shuffle"])


def check_model_state(saved: object, model: nn.Module, where: str = "model") -> None:
    """Check that `saved` would load into `model` with `load_state_dict`, without loading it.

    The keys must be exactly the model's, and each value a tensor of the same
    shape and kind of dtype (float, complex, integer or bool) as the model's.

    Args:
        saved: What the checkpoint holds for the model.
        model: The model to restore.
        where: The checkpoint's key, for messages. Defaults to `"model"`.

    Raises:
        CheckpointMismatch: Naming the missing or unexpected keys, or the first
            tensor of another shape or type.
    """
    if not isinstance(saved, Mapping):
        raise CheckpointMismatch(f"{where}: a {type(saved).__name__}, not a state dict")
    own = model.state_dict()
    missing = [key for key in own if key not in saved]
    unexpected = [key for key in saved if key not in own]
    if missing or unexpected:
        parts = [f"{label} keys {_names(keys)}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise CheckpointMismatch(f"{where}: {'; '.join(parts)}")
    for key, tensor in own.items():
        _check_tensor(saved[key], tensor, f"{where}.{key}")


def check_optimizer_state(
    saved: object, optimizer: torch.optim.Optimizer, where: str = "optimizer"
) -> None:
    """Check that `saved` would load into `optimizer` and fit its parameters, without loading it.

    `Optimizer.load_state_dict` checks only the number of parameter groups and
    their sizes; a moment of another shape would load and fail at the next
    step. So each tensor of a parameter's state with at least one dimension
    must have that parameter's shape (every optimizer of tricklab and of
    PyTorch keeps element-wise states, plus scalar step counts).

    Args:
        saved: What the checkpoint holds for the optimizer.
        optimizer: The optimizer to restore.
        where: The checkpoint's key, for messages. Defaults to `"optimizer"`.

    Raises:
        CheckpointMismatch: Naming what does not fit.
    """
    if not isinstance(saved, Mapping) or not isinstance(saved.get("state"), Mapping) or (
        not isinstance(saved.get("param_groups"), list)
    ):
        raise CheckpointMismatch(
            f"{where}: not an optimizer's state dict (a mapping of 'state' and 'param_groups')"
        )
    groups = optimizer.param_groups
    if len(saved["param_groups"]) != len(groups):
        raise CheckpointMismatch(
            f"{where}: {len(saved['param_groups'])} parameter groups in the checkpoint, "
            f"{len(groups)} in the optimizer"
        )
    params: dict[Any, torch.Tensor] = {}
    for number, (saved_group, group) in enumerate(zip(saved["param_groups"], groups, strict=True)):
        ids = saved_group.get("params") if isinstance(saved_group, Mapping) else None
        if not isinstance(ids, list) or len(ids) != len(group["params"]):
            found = len(ids) if isinstance(ids, list) else "no list of"
            raise CheckpointMismatch(
                f"{where}: parameter group {number} has {found} parameters in the "
                f"checkpoint, {len(group['params'])} in the optimizer"
            )
        params.update(zip(ids, group["params"], strict=True))
    for key, entries in saved["state"].items():
        if key not in params:
            raise CheckpointMismatch(f"{where}: state of parameter {key!r}, which no group holds")
        if not isinstance(entries, Mapping):
            raise CheckpointMismatch(
                f"{where}.state.{key}: a {type(entries).__name__}, not a mapping"
            )
        param = params[key]
        for name, value in entries.items():
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != param.shape:
                raise CheckpointMismatch(
                    f"{where}.state.{key}.{name}: shape {list(value.shape)} in the checkpoint, "
                    f"the parameter's is {list(param.shape)}"
                )


def check_tensor_like(saved: object, own: torch.Tensor, where: str) -> None:
    """Check that `saved` is a tensor of `own`'s shape and dtype, e.g. a generator's state.

    Raises:
        CheckpointMismatch: Naming `where`.
    """
    _check_tensor(saved, own, where)
    if saved.dtype != own.dtype:  # type: ignore[union-attr]
        raise CheckpointMismatch(
            f"{where}: dtype {saved.dtype} in the checkpoint, {own.dtype} expected"  # type: ignore[union-attr]
        )


def _check_entries(state: dict[str, Any]) -> None:
    """Check the format, and the entries every checkpoint holds: their types and ranges."""
    if state.get("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
        raise CheckpointMismatch(
            f"format {state.get('format')!r}, this version reads {CHECKPOINT_FORMAT}"
        )
    for key, kind in _ENTRY_TYPES.items():
        if key == "phase" and key not in state:
            continue  # checkpoints from before phases existed: phase 0
        if key not in state:
            raise CheckpointMismatch(f"no '{key}' entry")
        value = state[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CheckpointMismatch(f"{key}: a {type(value).__name__}, not {kind.__name__}")
    if state["epoch"] < 0 or state["global_step"] < 0:
        raise CheckpointMismatch(
            f"negative epoch {state['epoch']} or step {state['global_step']}"
        )


def _check_callback_states(saved: object, callbacks: Sequence[Callback]) -> None:
    """Check that `saved` holds one mapping per checkpointed callback."""
    if not isinstance(saved, list) or len(saved) != len(callbacks):
        count = len(saved) if isinstance(saved, list) else "no list of"
        raise CheckpointMismatch(
            f"callbacks: {count} callback states in the checkpoint, "
            f"{len(callbacks)} callbacks to restore in the run"
        )
    # What a callback's state holds is its own business: `restore_checkpoint`
    # tries its `load_state_dict` and puts the callbacks back on failure.
    for callback, entry in zip(callbacks, saved, strict=True):
        if not isinstance(entry, dict):
            raise CheckpointMismatch(
                f"callbacks: the state of {type(callback).__name__} is a "
                f"{type(entry).__name__}, not a mapping"
            )


def _check_tensor(saved: object, own: torch.Tensor, where: str) -> None:
    if not isinstance(saved, torch.Tensor):
        raise CheckpointMismatch(f"{where}: a {type(saved).__name__}, not a tensor")
    if saved.shape != own.shape:
        raise CheckpointMismatch(
            f"{where}: shape {list(saved.shape)} in the checkpoint, {list(own.shape)} in the run"
        )
    if _kind(saved.dtype) != _kind(own.dtype):
        raise CheckpointMismatch(
            f"{where}: dtype {saved.dtype} in the checkpoint, {own.dtype} in the run"
        )


def _kind(dtype: torch.dtype) -> str:
    """Float, complex, bool or integer: a float64 weight fits a float32 one, an integer does not."""
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "float"
    return "bool" if dtype == torch.bool else "integer"


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED])
    return shown + (f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else "")


def _cause(error: BaseException) -> str:
    """`Type: first sentence of the message`, short: a warning stays one line."""
    text = str(error)
    # torch's safe unpickler wraps what it refused in paragraphs of advice.
    text = text.split(_UNPICKLER, 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    sentence = lines[0].split(". ")[0].rstrip(".") if lines else ""
    text = f"{type(error).__name__}: {sentence}" if sentence else type(error).__name__
    return text if len(text) <= _CAUSE_CHARS else text[: _CAUSE_CHARS - 3] + "..."


def _warn(message: str) -> None:
    # stacklevel 3: the warning points at whoever asked for the checkpoint.
    warnings.warn(message, RuntimeWarning, stacklevel=3)
