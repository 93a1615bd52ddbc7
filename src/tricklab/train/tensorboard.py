"""TensorBoard event files of a training run, written by the `tensorboard` package's writer.

`TensorBoardLogger` is a trainer callback that writes, as Keras's `TensorBoard`
callback lays them out (so tricklab and Keras runs compare in one TensorBoard):

- `train/`: every epoch's `epoch_loss`, `epoch_<metric>` (`epoch_accuracy`),
  `epoch_regularization_loss` where the model has penalties, and
  `epoch_learning_rate`;
- `validation/`: the same for the validation data (`val_loss` becomes
  `epoch_loss` there), without the learning rate;
- the folder itself: the resolved recipe as text (`recipe`), the final metrics
  of `result.json` as `final/<name>` (`final/test_accuracy`), and, for a run of
  a study, its HParams session (hyperparameters, status), which the HParams
  dashboard lists with those final metrics and the last epoch's values;
- with a probe (`train --doctor`), in `train/`: per layer, histograms of the
  weights and of the gradients of the epoch's last step (`weights/<layer>/<name>`,
  `gradients/<layer>/<name>`; 30 equal bins, counted on the device, one transfer
  for all), of the outputs at the epoch's last probed step (`activations/<layer>`),
  and the median update ratio ‖Δw‖/‖w‖ of its probed steps (`update_ratio/<layer>`).
  The outputs and update ratios are the probe's own numbers: the model is not
  hooked a second time.

Steps are epochs counted from 0, as Keras counts them (`history.csv`'s epoch
`n` is step `n - 1`); the final metrics are at the step after the last epoch.
A resumed run continues the same folders: its writers start with TensorBoard's
`purge_step` at the first epoch it trains again (a new run's at 0), so events a
killed run wrote past its checkpoint are dropped rather than shown twice.

Writers open lazily, at the end of the first epoch (when the run directory
exists), write asynchronously (`SummaryWriter`'s own thread) and flush once
per epoch, so a run in progress can be watched.
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from tricklab.train.callbacks import Callback

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from tricklab.train.trainer import Trainer

HPARAM_TEXT_LIMIT = 120
"""Characters kept of a hyperparameter that is not a number, a bool or a short string."""

HISTOGRAM_BINS = 30
"""Buckets of a weight or gradient histogram: as many as `tf.summary.histogram`'s default."""

_SKIPPED = frozenset({"time_s"})
"""History columns that are not training curves (the epoch's wall time)."""

_RENAMED = {"lr": "learning_rate"}
"""History names that Keras's TensorBoard callback spells otherwise."""

_STATUS = {"completed": "STATUS_SUCCESS", "stopped_early": "STATUS_SUCCESS",
           "diverged": "STATUS_FAILURE", "failed": "STATUS_FAILURE"}
"""A finished run's HParams session status, by the run's status."""


class ProbeReader(Protocol):
    """What the logger reads of a doctor's probe (`tricklab.doctor.Probe`)."""

    def to_dict(self) -> dict[str, Any]:
        """Everything probed so far, as `doctor.json` holds it."""
        ...


def scalar_tag(key: str) -> tuple[str, str]:
    """Where a history column goes: `(writer, tag)`; `val_loss` -> `("validation", "epoch_loss")`.

    Args:
        key: A history column (`loss`, `accuracy`, `val_loss`, `lr`, ...).
    """
    writer = "train"
    if key.startswith("val_"):
        writer, key = "validation", key[len("val_"):]
    return writer, f"epoch_{_RENAMED.get(key, key)}"


def hparam_value(value: Any) -> bool | int | float | str | None:
    """A hyperparameter as the HParams plugin takes it: a bool, a number or a string.

    Lists and mappings become compact JSON, cut to `HPARAM_TEXT_LIMIT`
    characters; `None` stays `None` (the value is left out).
    """
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(value, str) and len(value) > HPARAM_TEXT_LIMIT:
            return value[:HPARAM_TEXT_LIMIT - 3] + "..."
        return value
    return hparam_value(json.dumps(value, separators=(",", ":"), default=str))


def _histogram_rows(tensors: Iterable[torch.Tensor]) -> list[list[float]]:
    """Per tensor: min, max, count, sum, sum of squares, then `HISTOGRAM_BINS` counts.

    Equal bins over [min, max], counted on the tensors' device and read in one
    transfer for all of them (the doctor's way: `torch.histc` and NumPy would
    read each tensor's range, or the whole tensor, on the host).
    """
    rows, sizes = [], []
    for tensor in tensors:
        flat = tensor.detach().reshape(-1)
        low, high = torch.aminmax(flat)
        scale = HISTOGRAM_BINS / (high - low).clamp_min(torch.finfo(flat.dtype).tiny)
        # NaN and Inf become extreme integers, which the clamp puts in the end bins.
        index = (flat - low).mul_(scale).to(torch.int64).clamp_(0, HISTOGRAM_BINS - 1)
        counts = index.new_zeros(HISTOGRAM_BINS).scatter_add_(
            0, index, index.new_ones(1).expand_as(index))
        stats = [low.double(), high.double(), flat.sum(dtype=torch.float64),
                 torch.linalg.vector_norm(flat, dtype=torch.float64).square()]
        rows.append(torch.cat([torch.stack(stats), counts.double()]))
        sizes.append(flat.numel())
    if not rows:
        return []
    device = rows[0].device
    values = torch.stack([row.to(device) for row in rows]).tolist()
    return [[low, high, size, *rest] for size, (low, high, *rest) in zip(sizes, values,
                                                                          strict=True)]


def _add_histogram(
    writer: SummaryWriter, tag: str, step: int, counts: list[float], low: float, high: float,
    total: float, sum_: float, squares: float,
) -> None:
    """Equal-width bins over [low, high] as a TensorBoard histogram (its buckets' right edges)."""
    bins = len(counts)
    limits = [low + (high - low) * (index + 1) / bins for index in range(bins)]
    writer.add_histogram_raw(tag, min=low, max=high, num=total, sum=sum_, sum_squares=squares,
                             bucket_limits=limits, bucket_counts=counts, global_step=step)


def layer_names(model: torch.nn.Module) -> dict[str, str]:
    """A readable name per module path: `1` -> `1_Dense`, the index first so they sort in order."""
    return {name: f"{name}_{type(module).__name__}" for name, module in model.named_modules()
            if name}


class TensorBoardLogger(Callback):
    """Write a run's curves, final metrics, recipe and (with a probe) histograms for TensorBoard.

    A callback that only observes: checkpoints leave it out, so a run may be
    resumed with or without it. Entered as a context manager around training,
    it closes its writers whatever happens.

    Args:
        log_dir: The folder of the event files, e.g. `runs/<name>/tensorboard`.
        recipe_text: The resolved recipe (YAML), shown in TensorBoard's Text tab.
            Defaults to `None` (not shown).
        probe: The doctor's probe of the trained model: with it, histograms and
            update ratios are logged each epoch. Defaults to `None`.
    """

    checkpointed = False

    def __init__(
        self, log_dir: str | Path, recipe_text: str | None = None,
        probe: ProbeReader | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.recipe_text = recipe_text
        self.probe = probe
        self.first_epoch: int | None = None
        self._writers: dict[str, SummaryWriter] = {}
        self._opened = False
        self._logged: set[int] = set()
        self._probed_to = -1

    # Writers.

    def _writer(self, name: str) -> SummaryWriter:
        """The writer of `train`, `validation` or the folder itself (`""`), opened once."""
        if not self._opened:
            self._open()
        writer = self._writers.get(name)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter

            _quiet_writer_threads()

            # Every file starts a session at its first epoch, a new run's too: TensorBoard's
            # Python loader takes only a second start for a restart, which drops what a
            # killed run wrote from there on.
            writer = SummaryWriter(str(self.log_dir / name), purge_step=self.first_epoch or 0)
            self._writers[name] = writer
        return writer

    def _open(self) -> None:
        self._opened = True
        if self.recipe_text is not None and not self.log_dir.exists():
            # In Markdown's code block, so TensorBoard shows the YAML as it is.
            self._writer("").add_text("recipe", f"```yaml\n{self.recipe_text}```", 0)

    def flush(self) -> None:
        """Hand what is written so far to the files."""
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        """Flush and close every writer."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # The trainer's hooks.

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.first_epoch is None:  # a later phase's fit goes on from there
            self.first_epoch = len(trainer.history.get("loss", []))
            if self.first_epoch and not self.log_dir.exists():
                # Resumed where no events were written: the epochs before come from the history.
                for epoch in range(self.first_epoch):
                    self.log_epoch(epoch, {k: v[epoch] for k, v in trainer.history.items()
                                           if epoch < len(v)})

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        self.log_epoch(epoch, logs)
        if self.probe is not None:
            self._log_health(trainer.model, epoch)
        self.flush()

    def log_epoch(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Write one epoch's history values (0-based `epoch`), once per epoch.

        Args:
            epoch: The epoch, counted from 0.
            logs: Its values by history column (`loss`, `val_accuracy`, `lr`, ...).
        """
        if epoch in self._logged:
            return
        self._logged.add(epoch)
        for key, value in logs.items():
            if key in _SKIPPED or not isinstance(value, int | float):
                continue
            writer, tag = scalar_tag(key)
            self._writer(writer).add_scalar(tag, value, epoch)

    @torch.no_grad()
    def _log_health(self, model: torch.nn.Module, epoch: int) -> None:
        """Histograms of weights, last gradients and probed outputs; the probe's update ratios."""
        writer = self._writer("train")
        names = layer_names(model)
        tensors: dict[str, torch.Tensor] = {}
        for name, parameter in model.named_parameters():
            module, _, short = name.rpartition(".")
            tag = f"{names.get(module, module or 'model')}/{short}"
            for kind, values in (("weights", parameter), ("gradients", parameter.grad)):
                if values is not None and values.numel():
                    tensors[f"{kind}/{tag}"] = values
        for tag, row in zip(tensors, _histogram_rows(tensors.values()), strict=True):
            low, high, total, sum_, squares, *counts = row
            # NaN or Inf has no histogram (the run is diverging: the doctor says where).
            if math.isfinite(low) and math.isfinite(high):
                _add_histogram(writer, tag, epoch, counts, low, high, total, sum_, squares)
        probed = self.probe.to_dict()
        samples = [s for s in probed["samples"] if s["step"] > self._probed_to]
        if not samples:
            return
        self._probed_to = samples[-1]["step"]
        for layer in probed["layers"]:
            tag = names.get(layer["name"], layer["name"])
            rows = [sample["layers"][layer["index"]] for sample in samples]
            ratios = [row["update_ratio"] for row in rows if row["update_ratio"] is not None]
            if ratios:
                writer.add_scalar(f"update_ratio/{tag}", statistics.median(ratios), epoch)
            shown = next((row for row in reversed(rows) if row["act_hist"] is not None), None)
            if shown is None or shown["act_mean"] is None or shown["act_std"] is None:
                continue  # never probed, or NaN/Inf outputs: nothing to draw
            histogram, mean, std = shown["act_hist"], shown["act_mean"], shown["act_std"]
            total = sum(histogram["counts"])
            _add_histogram(writer, f"activations/{tag}", epoch, histogram["counts"],
                           histogram["low"], histogram["high"], total, mean * total,
                           total * (std * std + mean * mean))

    # The end of a run.

    def finish(
        self, result: Mapping[str, Any], hparams: Mapping[str, Any] | None = None
    ) -> None:
        """Log what the run left: epochs not logged yet, its final metrics, its HParams session.

        Then close the writers.

        Args:
            result: The content of the run's `result.json` (`history`, `metrics`,
                `status`, `epochs_run`, `wall_time_s`).
            hparams: The run's hyperparameters, for TensorBoard's HParams dashboard
                (a study's variant, seed and the fields its variants differ in);
                values that are not numbers, bools or strings are shown as JSON.
                Defaults to `None` (no HParams session).
        """
        status = str(result.get("status", "completed"))
        history = result.get("history") or {}
        epochs = max((len(values) for values in history.values()), default=0)
        # An epoch that diverged ends training before the callbacks see it.
        for epoch in range(self.first_epoch or 0, epochs):
            self.log_epoch(epoch, {key: values[epoch] for key, values in history.items()
                                   if epoch < len(values)})
        if status != "interrupted":  # a resumed run logs its own ending
            step = int(result.get("epochs_run") or epochs)
            root = self._writer("")
            for key, value in (result.get("metrics") or {}).items():
                if isinstance(value, int | float) and math.isfinite(value):
                    root.add_scalar(f"final/{key}", value, step)
            if hparams is not None:
                self._add_session(root, hparams, status, step,
                                  float(result.get("wall_time_s") or 0.0))
        self.close()

    def _add_session(
        self, writer: SummaryWriter, hparams: Mapping[str, Any], status: str, step: int,
        seconds: float,
    ) -> None:
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb

        values = {key: shown for key, value in hparams.items()
                  if (shown := hparam_value(value)) is not None}
        end = time.time()
        writer.file_writer.add_summary(hparams_pb(values, start_time_secs=end - seconds), step)
        ending = plugin_data_pb2.HParamsPluginData(session_end_info=plugin_data_pb2.SessionEndInfo(
            status=api_pb2.Status.Value(_STATUS.get(status, "STATUS_UNKNOWN")),
            end_time_secs=end,
        ))
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary()
        summary.value.add(tag=metadata.SESSION_END_INFO_TAG, tensor=metadata.NULL_TENSOR,
                          metadata=metadata.create_summary_metadata(ending))
        writer.file_writer.add_summary(summary, step)


def log_finished_run(
    log_dir: str | Path, result: Mapping[str, Any], recipe_text: str | None = None,
    hparams: Mapping[str, Any] | None = None,
) -> None:
    """Write the events of a run that trained without a logger (a batched seed), all at once.

    Args:
        log_dir: The folder of the event files.
        result: The content of its `result.json`.
        recipe_text: The resolved recipe (YAML). Defaults to `None`.
        hparams: Its hyperparameters (see `TensorBoardLogger.finish`). Defaults to `None`.
    """
    with TensorBoardLogger(log_dir, recipe_text) as logger:
        logger.first_epoch = 0
        logger.finish(result, hparams)


def _quiet_writer_threads() -> None:
    """Stop Python printing the traceback of a TensorBoard writer thread's error (once set).

    TensorBoard's writer thread hands its error (a full disk, say) to the thread
    that writes next, where the run reports it in one line; the thread's own
    traceback on stderr would only repeat it.
    """
    if getattr(threading.excepthook, "_tricklab_quiet", False):
        return
    default = threading.excepthook

    def excepthook(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ != "_AsyncWriterThread":
            default(args)

    excepthook._tricklab_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = excepthook
