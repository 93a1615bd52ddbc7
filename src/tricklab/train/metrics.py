"""Per-sample metrics summed on the device, read once per epoch.

A metric returns the SUM of its per-sample values over a batch as a 0-d tensor;
the trainer adds those sums up without leaving the device and divides by the
number of samples at the end of the epoch, so no step waits on the host.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from tricklab.config import Configurable
from tricklab.registry import Registry


class Metric(Configurable, ABC):
    """Base class of an epoch-averaged metric."""

    @abstractmethod
    def batch_sum(self, output: torch.Tensor, target: torch.Tensor, logits: bool) -> torch.Tensor:
        """Sum of the metric over the batch.

        Args:
            output: The model's output, or its pre-activation logits when `logits` is true.
            target: The labels.
            logits: Whether `output` precedes the final softmax/sigmoid.
        """


metrics: Registry[Metric] = Registry("metric", base=Metric)


@metrics.register(
    "accuracy",
    description="Fraction of samples whose predicted class equals the label.",
    keras_name="Accuracy / SparseCategoricalAccuracy / BinaryAccuracy",
)
class Accuracy(Metric):
    """Classification accuracy, as Keras's `"accuracy"` string resolves it.

    With several output columns the prediction is the argmax (Keras's
    SparseCategoricalAccuracy); with one column it is `output > threshold`
    (Keras's BinaryAccuracy), the threshold taken on the logit scale (0) when
    the trainer passes logits.

    Args:
        threshold: Probability above which a binary prediction is positive. Defaults to `0.5`.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self._logit_threshold = float(torch.logit(torch.tensor(threshold, dtype=torch.float64)))

    def batch_sum(self, output: torch.Tensor, target: torch.Tensor, logits: bool) -> torch.Tensor:
        if output.ndim > 1 and output.shape[-1] > 1:
            return (output.argmax(dim=-1) == target).sum()
        threshold = self._logit_threshold if logits else self.threshold
        predicted = output.reshape(target.shape) > threshold
        return (predicted == target.bool()).sum()


class EpochMetrics:
    """Training metrics of one epoch, computed at a cost of one small copy per step.

    Each step's detached outputs are copied into one buffer that covers the
    epoch; the metrics score the buffer against the epoch's targets when read.
    Outputs too wide to buffer (above `max_buffer_bytes`) are scored step by
    step instead.

    Args:
        metrics: The metrics to compute.
        logits: Whether the outputs are logits (the loss fused the final activation).
        targets: The epoch's targets in the order the batches visit them.
        max_buffer_bytes: Largest buffer to allocate. Defaults to `256 MiB`.
    """

    def __init__(
        self,
        metrics: Sequence[Metric],
        logits: bool,
        targets: torch.Tensor,
        max_buffer_bytes: int = 256 * 2**20,
    ) -> None:
        self.metrics = metrics
        self.logits = logits
        self.targets = targets
        self.max_buffer_bytes = max_buffer_bytes
        self.outputs: torch.Tensor | None = None
        self.running = [
            torch.zeros((), dtype=torch.float64, device=targets.device) for _ in metrics
        ]
        self.buffered = True

    def add(self, output: torch.Tensor, begin: int, target: torch.Tensor) -> None:
        """Record the outputs of the samples `begin : begin + len(output)`."""
        if not self.metrics:
            return
        if self.outputs is None and self.buffered:
            shape = (self.targets.shape[0], *output.shape[1:])
            size = output.element_size() * math.prod(shape)
            self.buffered = size <= self.max_buffer_bytes
            if self.buffered:
                self.outputs = output.new_empty(shape)
        if self.outputs is not None:
            self.outputs[begin : begin + output.shape[0]].copy_(output)
            return
        for metric, total in zip(self.metrics, self.running, strict=True):
            total.add_(metric.batch_sum(output, target, self.logits))

    def sums(self, seen: int) -> list[torch.Tensor]:
        """Each metric summed over the first `seen` samples."""
        if self.outputs is None:
            return self.running
        outputs, targets = self.outputs[:seen], self.targets[:seen]
        return [metric.batch_sum(outputs, targets, self.logits) for metric in self.metrics]
