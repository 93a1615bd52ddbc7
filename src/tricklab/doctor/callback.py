"""The bridge from tricklab's Trainer to a probe: each batch's loss, for spikes and NaN."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tricklab.train.callbacks import Callback

if TYPE_CHECKING:
    from tricklab.doctor.probes import Probe
    from tricklab.train.trainer import Trainer


class DoctorCallback(Callback):
    """Hand every batch's loss to a probe; the probe's hooks see everything else.

    The loss goes over as a tensor, so no step waits for the device. The callback
    only observes, so checkpoints leave it out (`checkpointed = False`): a run can
    be resumed with or without the doctor.

    Args:
        probe: The probe watching the trainer's model (`tricklab.doctor.watch`).
    """

    checkpointed = False

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def on_batch_end(self, trainer: Trainer, step: int) -> None:
        """Record the loss of the batch just trained."""
        self.probe.record_loss(trainer.batch_loss)
