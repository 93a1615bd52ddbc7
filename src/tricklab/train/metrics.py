"""Metrics of whole epochs, computed on the device and read once per epoch.

A metric scores a set of samples at once (`Metric.compute`). Most are
`SummedMetric`s: functions of a few sums over the samples (hits; absolute or
squared errors; true and false positives and false negatives per class), and
the sums of disjoint batches add up, so an epoch can be scored batch by batch
without keeping its outputs. Others need every output of the epoch at once:
`auc` ranks all the scores.

`EpochMetrics` scores one pass over data (a training epoch, an evaluation):
each step's detached outputs are copied into one buffer and the metrics score
the buffer when read, with no step waiting on the host. Outputs too wide to
buffer are scored step by step instead, by adding up the `SummedMetric`s' sums.

Each metric says whether a higher value is better (Keras 3 metrics' direction,
"up" or "down"), and `higher_is_better` answers for any logged or reported name
(`val_mae`, `test_auc`, `loss`) from the registry, as studies rank by it.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated

import pydantic
import torch

from tricklab.config import Configurable
from tricklab.registry import Registry

Fraction = Annotated[float, pydantic.Field(ge=0, le=1)]
AtLeastOne = Annotated[int, pydantic.Field(ge=1)]
ClassId = Annotated[int, pydantic.Field(ge=0)]

SPLIT_PREFIXES = ("train_", "val_", "test_")
"""Prefixes of a split's final scores in `result.json` and of validation logs."""

LOSS_NAMES = frozenset({"loss", "regularization_loss"})
"""Logged names that are losses, lower being better."""

_ACTIVATIONS = {"softmax": lambda z: torch.softmax(z, dim=-1), "sigmoid": torch.sigmoid}


class Metric(Configurable, ABC):
    """Base class: a score of a set of samples, read once per epoch.

    `activation` tells whether the output still lacks the model's final
    activation: the trainer hands over the logits when the loss fused the
    final softmax or sigmoid, and a metric that needs probabilities applies it.
    """

    higher_is_better: bool = True
    """Whether larger values are better (Keras 3's metric direction, "up" or "down")."""

    @abstractmethod
    def compute(
        self, output: torch.Tensor, target: torch.Tensor, activation: str | None
    ) -> torch.Tensor:
        """The metric over every sample of `output`, a 0-d float64 tensor on its device.

        Args:
            output: The model's outputs `[N, ...]`, or the input of its final activation.
            target: The targets `[N, ...]`.
            activation: The final activation `output` has not been through
                (`"softmax"` or `"sigmoid"`, when the loss fused it), or `None`.
        """


class SummedMetric(Metric):
    """A metric that is a function of sums over the samples, so batches can be scored apart."""

    @abstractmethod
    def statistics(
        self, output: torch.Tensor, target: torch.Tensor, activation: str | None
    ) -> torch.Tensor:
        """The sums the metric is made of, over the batch: a 1-d float64 tensor.

        Those of disjoint batches add up to those of their union. Uses only
        operations `torch.vmap` batches, so seeds trained together are scored
        in one call.

        Args:
            output: The model's outputs `[N, ...]`, or the input of its final activation.
            target: The targets `[N, ...]`.
            activation: The final activation `output` has not been through, or `None`.
        """

    @abstractmethod
    def result(self, totals: torch.Tensor, count: int) -> torch.Tensor:
        """The metric from `statistics` summed over `count` samples (a 0-d tensor)."""

    def compute(
        self, output: torch.Tensor, target: torch.Tensor, activation: str | None
    ) -> torch.Tensor:
        return self.result(self.statistics(output, target, activation), output.shape[0])


class MeanMetric(SummedMetric):
    """A metric that is the mean of one value per sample."""

    @abstractmethod
    def per_sample(
        self, output: torch.Tensor, target: torch.Tensor, activation: str | None
    ) -> torch.Tensor:
        """One value per sample, `[N]`."""

    def statistics(
        self, output: torch.Tensor, target: torch.Tensor, activation: str | None
    ) -> torch.Tensor:
        return self.per_sample(output, target, activation).sum(dim=0, keepdim=True,
                                                               dtype=torch.float64)

    def result(self, totals: torch.Tensor, count: int) -> torch.Tensor:
        return totals[0] / count


metrics: Registry[Metric] = Registry("metric", base=Metric)


# --- classification ----------------------------------------------------------------------


@metrics.register(
    "accuracy",
    description="Fraction of samples whose predicted class equals the label.",
    keras_name="Accuracy / SparseCategoricalAccuracy / CategoricalAccuracy / BinaryAccuracy",
)
class Accuracy(MeanMetric):
    """Classification accuracy, as Keras's `"accuracy"` string resolves it.

    With several output columns the prediction is the argmax, compared with a
    class index (Keras's SparseCategoricalAccuracy) or with the argmax of a
    one-hot target (CategoricalAccuracy); with one column it is
    `output > threshold` against 0/1 labels (BinaryAccuracy), the threshold
    taken on the logit scale when the output precedes a sigmoid.

    Args:
        threshold: Probability above which a binary prediction is positive. Defaults to `0.5`.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def per_sample(
        self, output: torch.Tensor, target: torch.Tensor, activation: str | None
    ) -> torch.Tensor:
        return _predicted(output, activation, self.threshold) == _actual(target, output)


@metrics.register(
    "top_k_accuracy",
    description="Fraction of samples whose label is among the k highest-scored classes.",
    keras_name="SparseTopKCategoricalAccuracy / TopKCategoricalAccuracy",
)
class TopKAccuracy(MeanMetric):
    """Top-k accuracy: a hit when the label's score is at least the k-th highest score.

    As Keras's `ops.in_top_k`, a label tied with the k-th score counts as a hit.
    The target is a class index, or a one-hot row (its argmax). The output needs
    one score per class; with `k` at or above the number of classes every sample
    is a hit, which `tricklab train` refuses before training. Softmax keeps the
    order, so logits and probabilities score alike.

    Args:
        k: How many of the highest scores count, >= 1. Defaults to `5` (Keras's default).
    """

    def __init__(self, k: AtLeastOne = 5) -> None:
        self.k = k

    def per_sample(
        self, output: torch.Tensor, target: torch.Tensor, activation: str | None
    ) -> torch.Tensor:
        if output.ndim != 2 or output.shape[-1] < 2:
            raise ValueError(
                f"top_k_accuracy needs one score per class, [N, classes]; got output shape "
                f"{list(output.shape)}"
            )
        kth = output.topk(min(self.k, output.shape[-1]), dim=-1).values[:, -1:]
        label = _actual(target, output).unsqueeze(-1)
        return (output.gather(-1, label) >= kth).squeeze(-1)


class _ClassCounts(SummedMetric):
    """True positives, false positives and false negatives of each class, summed.

    One output column is a binary classifier, as Keras's `Precision` and
    `Recall` take it: the positive class is predicted where the probability
    exceeds `thresholds` (on the logit scale when the output precedes the
    sigmoid), labels that are not 0 are positives, and only the positive class
    is counted. Several columns are a single-label classifier (softmax): the
    predicted class is the argmax, as for accuracy, and every class is counted
    one-vs-rest.
    """

    def __init__(self, thresholds: Fraction = 0.5, class_id: ClassId | None = None) -> None:
        self.thresholds = thresholds
        self.class_id = class_id

    def statistics(
        self, output: torch.Tensor, target: torch.Tensor, activation: str | None
    ) -> torch.Tensor:
        predicted = _predicted(output, activation, self.thresholds).unsqueeze(-1)
        actual = _actual(target, output).unsqueeze(-1)
        if output[0].numel() == 1:
            counted = torch.ones(1, dtype=torch.long, device=output.device)  # the positive class
        else:
            counted = torch.arange(output.shape[-1], device=output.device)
        predicted, actual = predicted == counted, actual == counted
        counts = (predicted & actual, predicted & ~actual, ~predicted & actual)
        return torch.cat([c.sum(dim=0, dtype=torch.float64) for c in counts])

    def result(self, totals: torch.Tensor, count: int) -> torch.Tensor:
        true_positives, false_positives, false_negatives = totals.view(3, -1)
        denominator = true_positives + self._missed(false_positives, false_negatives)
        # Keras's divide_no_nan: nothing to divide by scores 0.
        per_class = torch.where(denominator > 0, true_positives / denominator.clamp_min(1), 0.0)
        if self.class_id is not None:
            return per_class[self.class_id]
        present = (true_positives + false_positives + false_negatives) > 0
        return (per_class * present).sum() / present.sum().clamp_min(1)

    @abstractmethod
    def _missed(self, false_positives: torch.Tensor, false_negatives: torch.Tensor) -> torch.Tensor:
        """The denominator's other term: false positives (precision) or negatives (recall)."""


@metrics.register(
    "precision",
    description="Fraction of predicted positives that are right (softmax: macro over classes).",
    keras_name="Precision",
)
class Precision(_ClassCounts):
    """Precision `TP / (TP + FP)`: the fraction of predicted positives that are right.

    One sigmoid output: Keras's binary `Precision`, the positive class predicted
    where the probability exceeds `thresholds`. A softmax output (one column per
    class): Keras's `Precision` would need one-hot targets and threshold each
    column on its own; here, as for accuracy, the prediction is the argmax and
    the precision is macro-averaged: computed for each class one-vs-rest, then
    averaged with equal weight over the classes that occur in the targets or
    the predictions (scikit-learn's `average="macro"`, `zero_division=0`).
    Micro-averaging would equal accuracy for single-label predictions, while the
    macro average shows the classes a model neglects, however rare. A class
    never predicted scores 0 (Keras's `divide_no_nan`).

    Args:
        thresholds: Probability above which one output predicts the positive class
            (Keras's `thresholds`, one value here). Defaults to `0.5`.
        class_id: Report this class alone instead of the macro average (one
            output: 0, its positive class). Defaults to `None`.
    """

    def _missed(self, false_positives: torch.Tensor, false_negatives: torch.Tensor) -> torch.Tensor:
        return false_positives


@metrics.register(
    "recall",
    description="Fraction of actual positives found (softmax: macro over classes).",
    keras_name="Recall",
)
class Recall(_ClassCounts):
    """Recall `TP / (TP + FN)`: the fraction of actual positives that are found.

    One sigmoid output: Keras's binary `Recall`, the positive class predicted
    where the probability exceeds `thresholds`. A softmax output (one column per
    class): the prediction is the argmax, as for accuracy, and the recall is
    macro-averaged over the classes that occur in the targets or the
    predictions (scikit-learn's `average="macro"`, `zero_division=0`), for the
    reasons `Precision` gives: micro-averaged recall of single-label
    predictions is accuracy. A class absent from the targets scores 0.

    Args:
        thresholds: Probability above which one output predicts the positive class
            (Keras's `thresholds`, one value here). Defaults to `0.5`.
        class_id: Report this class alone instead of the macro average (one
            output: 0, its positive class). Defaults to `None`.
    """

    def _missed(self, false_positives: torch.Tensor, false_negatives: torch.Tensor) -> torch.Tensor:
        return false_negatives


@metrics.register(
    "auc",
    description="Area under the ROC curve of one binary output, exact (rank-based).",
    reference="Hanley & McNeil 1982; Mann & Whitney 1947",
    keras_name="AUC",
)
class AUC(Metric):
    """Exact area under the ROC curve of one output: P(score of a positive > a negative's).

    Computed from ranks (the U statistic of Mann & Whitney 1947, "On a test of
    whether one of two random variables is stochastically larger than the
    other", Annals of Mathematical Statistics 18): with average ranks `R`
    over all `N` scores (ties sharing their mean rank), `P` positives and `Q`
    negatives, `AUC = (sum of the positives' R - P (P + 1) / 2) / (P Q)`, a tie
    counting one half. This is the trapezoidal area under the exact ROC curve
    (Hanley & McNeil 1982, "The meaning and use of the area under a receiver
    operating characteristic (ROC) curve", Radiology 143), the value of
    scikit-learn's `roc_auc_score`. Keras's `AUC` instead approximates it with
    200 thresholds evenly spaced on [0, 1], which loses the order of scores
    that fall between two thresholds, as a well-trained sigmoid's crowd near 0
    and 1; studies compare small differences, so the exact area is used.

    The area needs every score at once: `EpochMetrics` keeps the epoch's
    outputs for it (one number per sample). Logits rank as their sigmoid
    probabilities do. Labels that are not 0 are positives, as Keras casts them.
    With only one class present the area is undefined: NaN.
    """

    def compute(
        self, output: torch.Tensor, target: torch.Tensor, activation: str | None
    ) -> torch.Tensor:
        count = output.shape[0]
        if output[0].numel() != 1:
            raise ValueError(
                "auc needs one output per sample (a binary classifier's sigmoid unit); got "
                f"output shape {list(output.shape)}"
            )
        scores = output.reshape(count)
        positive = target.reshape(count) != 0
        order = scores.argsort()
        _, ties = torch.unique_consecutive(scores[order], return_counts=True)
        last = ties.cumsum(0).to(torch.float64)  # 1-based rank of each tie group's last score
        ranks = (last - (ties - 1) / 2).repeat_interleave(ties)
        positives = positive.sum(dtype=torch.float64)
        negatives = count - positives
        rank_sum = ranks[positive[order]].sum()
        return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


# --- regression ----------------------------------------------------------------------------


class ErrorMetric(MeanMetric):
    """A mean over samples of each sample's mean error over its values, as Keras's metrics."""

    def per_sample(
        self, output: torch.Tensor, target: torch.Tensor, activation: str | None
    ) -> torch.Tensor:
        values = _probabilities(output, activation)
        if target.numel() != values.numel():
            raise ValueError(
                f"{metric_name(self)} compares the output, shape {list(values.shape[1:])} per "
                f"sample, value by value with targets of shape {list(target.shape[1:])}"
            )
        error = values - target.to(values.dtype).reshape(values.shape)
        return self._penalty(error).reshape(output.shape[0], -1).mean(dim=1)

    @abstractmethod
    def _penalty(self, error: torch.Tensor) -> torch.Tensor:
        """The error of each value made a cost (absolute or squared)."""


@metrics.register(
    "mae",
    description="Mean absolute error between output and target.",
    keras_name="MeanAbsoluteError",
)
class MeanAbsoluteError(ErrorMetric):
    """Mean absolute error `mean(|output - target|)`; targets reshaped to the output.

    Each sample's mean over its values, averaged over samples (Keras 3's
    `MeanAbsoluteError`); an output preceding a softmax or sigmoid is compared
    as probabilities.
    """

    higher_is_better = False

    def _penalty(self, error: torch.Tensor) -> torch.Tensor:
        return error.abs()


@metrics.register(
    "mse",
    description="Mean squared error between output and target.",
    keras_name="MeanSquaredError",
)
class MeanSquaredError(ErrorMetric):
    """Mean squared error `mean((output - target)²)`; targets reshaped to the output.

    Each sample's mean over its values, averaged over samples (Keras 3's
    `MeanSquaredError`); an output preceding a softmax or sigmoid is compared
    as probabilities.
    """

    higher_is_better = False

    def _penalty(self, error: torch.Tensor) -> torch.Tensor:
        return error.square()


@metrics.register(
    "rmse",
    description="Root of the mean squared error over the whole epoch.",
    keras_name="RootMeanSquaredError",
)
class RootMeanSquaredError(MeanSquaredError):
    """Root mean squared error `sqrt(mean((output - target)²))` over all samples at once.

    The root of the epoch's mean squared error (Keras 3's `RootMeanSquaredError`),
    not a mean of per-batch roots, which would depend on the batch size.
    """

    def result(self, totals: torch.Tensor, count: int) -> torch.Tensor:
        return (totals[0] / count).sqrt()


# --- names and directions --------------------------------------------------------------------


def metric_name(metric: Metric) -> str:
    """The name a metric is logged under: its registry name, or its class name in lower case."""
    registered = (info.name for info in metrics if info.factory is type(metric))
    return next(registered, type(metric).__name__.lower())


def higher_is_better(name: str) -> bool | None:
    """Whether larger values of a logged or reported name are better; `None` when unknown.

    `loss` and `regularization_loss` are lower-is-better; a registered metric's
    name, bare or after a split's prefix (`train_`, `val_`, `test_`), answers
    from its class's `higher_is_better`: `val_mae` and `test_rmse` are
    lower-is-better, `test_auc` and `val_accuracy` higher.

    Args:
        name: A history key or `result.json` metric, e.g. `"val_mae"`.
    """
    stem = name.lower()
    for prefix in SPLIT_PREFIXES:
        if stem.startswith(prefix):
            stem = stem.removeprefix(prefix)
            break
    if stem in LOSS_NAMES:
        return False
    if stem in metrics:
        return bool(metrics.info(stem).factory.higher_is_better)
    return None


# --- scoring a pass ------------------------------------------------------------------------


class EpochMetrics:
    """The metrics of one pass over data (a training epoch or an evaluation).

    Each step's detached outputs are copied into one buffer that covers the
    pass; the metrics score its first `seen` samples against their targets when
    read. Outputs too wide to buffer (above `max_buffer_bytes`) are scored step
    by step instead, by adding up each `SummedMetric`'s statistics: the same
    values up to rounding. A metric that needs every output at once (`auc`, one
    value per sample) keeps them buffered whatever their size.

    With `stacked`, outputs `[S, B, ...]` and targets `[S, N, ...]` carry a
    leading axis of S seeds trained together, and each seed is scored on its own.

    Args:
        metrics: The metrics to compute.
        activation: The final activation the outputs have not been through
            (`"softmax"`, `"sigmoid"` when the loss fused it), or `None`.
        targets: The pass's targets in the order the batches visit them.
        max_buffer_bytes: Largest buffer to allocate. Defaults to `256 MiB`.
        stacked: Whether outputs and targets have a leading seed axis. Defaults to `False`.
    """

    def __init__(
        self,
        metrics: Sequence[Metric],
        activation: str | None,
        targets: torch.Tensor,
        max_buffer_bytes: int = 256 * 2**20,
        stacked: bool = False,
    ) -> None:
        self.metrics = list(metrics)
        self.activation = activation
        self.targets = targets
        self.max_buffer_bytes = max_buffer_bytes
        self.stacked = stacked
        self.outputs: torch.Tensor | None = None
        self.running: list[torch.Tensor | None] = [None for _ in self.metrics]
        self.buffered = True
        self._axis = 1 if stacked else 0
        self._needs_all = not all(isinstance(m, SummedMetric) for m in self.metrics)

    def add(self, output: torch.Tensor, begin: int, target: torch.Tensor) -> None:
        """Record the outputs of the samples `begin : begin + len(output)` (and their targets)."""
        if not self.metrics:
            return
        axis = self._axis
        if self.outputs is None and self.buffered:
            shape = (*output.shape[:axis], self.targets.shape[axis], *output.shape[axis + 1 :])
            size = output.element_size() * math.prod(shape)
            self.buffered = size <= self.max_buffer_bytes or self._needs_all
            if self.buffered:
                self.outputs = output.new_empty(shape)
        if self.outputs is not None:
            self.outputs.narrow(axis, begin, output.shape[axis]).copy_(output)
            return
        for index, metric in enumerate(self.metrics):
            sums = self._statistics(metric, output, target)
            total = self.running[index]
            self.running[index] = sums if total is None else total.add_(sums)

    def values(self, seen: int) -> list[torch.Tensor]:
        """Each metric over the first `seen` samples: 0-d tensors, `[S]` ones when stacked."""
        if self.outputs is None:
            return [self._result(metric, total, seen)
                    for metric, total in zip(self.metrics, self.running, strict=True)]
        outputs = self.outputs.narrow(self._axis, 0, seen)
        targets = self.targets.narrow(self._axis, 0, seen)
        if not self.stacked:
            return [metric.compute(outputs, targets, self.activation) for metric in self.metrics]
        return [
            torch.stack([metric.compute(output, target, self.activation)
                         for output, target in zip(outputs, targets, strict=True)])
            for metric in self.metrics
        ]

    def _statistics(
        self, metric: Metric, output: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        assert isinstance(metric, SummedMetric)  # others are always buffered
        if not self.stacked:
            return metric.statistics(output, target, self.activation)
        per_seed = functools.partial(metric.statistics, activation=self.activation)
        return torch.vmap(per_seed)(output, target)

    def _result(self, metric: Metric, total: torch.Tensor | None, seen: int) -> torch.Tensor:
        assert isinstance(metric, SummedMetric) and total is not None
        if not self.stacked:
            return metric.result(total, seen)
        return torch.stack([metric.result(seed_total, seen) for seed_total in total])


# --- what outputs and targets mean -----------------------------------------------------------


def _probabilities(output: torch.Tensor, activation: str | None) -> torch.Tensor:
    """The output as the model gives it (its final activation applied), in at least float32."""
    if output.dtype in (torch.float16, torch.bfloat16):
        output = output.float()
    apply = _ACTIVATIONS.get(activation or "")
    return apply(output) if apply else output


def _predicted(output: torch.Tensor, activation: str | None, threshold: float) -> torch.Tensor:
    """The predicted class of each sample: argmax of several columns, or one column > threshold."""
    if output.ndim > 1 and output.shape[-1] > 1:
        return output.argmax(dim=-1)
    if activation == "sigmoid":
        # The sigmoid is monotonic: thresholding its input at logit(t) saves applying it.
        threshold = math.log(threshold / (1 - threshold)) if 0 < threshold < 1 else (
            -math.inf if threshold <= 0 else math.inf)
    return (output.reshape(output.shape[0]) > threshold).long()


def _actual(target: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Each sample's class: its index, its one-hot row's argmax, or (one output) label != 0."""
    if output.ndim > 1 and output.shape[-1] > 1:
        if target.ndim == output.ndim:
            return target.argmax(dim=-1)
        return target.long()
    return (target.reshape(output.shape[0]) != 0).long()
