"""Training: the `Trainer`, its losses, metrics, callbacks and checkpoints.

Each family's registry lives in its module (`tricklab.train.losses.losses`,
`tricklab.train.metrics.metrics`, `tricklab.train.callbacks.callbacks`).
"""

from tricklab.train.batched import BatchedSeedsTrainer
from tricklab.train.callbacks import Callback, EarlyStopping
from tricklab.train.checkpoint import CheckpointManager
from tricklab.train.losses import Loss
from tricklab.train.metrics import Metric
from tricklab.train.trainer import FitResult, Trainer

__all__ = [
    "BatchedSeedsTrainer",
    "Callback",
    "CheckpointManager",
    "EarlyStopping",
    "FitResult",
    "Loss",
    "Metric",
    "Trainer",
]
