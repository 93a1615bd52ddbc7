"""Every metric against an independent float64 NumPy reference, whole and batch by batch."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from tricklab.errors import UserInputError
from tricklab.train.metrics import (
    EpochMetrics,
    Metric,
    SummedMetric,
    higher_is_better,
    metric_name,
    metrics,
)

DIRECTIONS = {
    "accuracy": True, "top_k_accuracy": True, "precision": True, "recall": True, "auc": True,
    "mae": False, "mse": False, "rmse": False,
}
"""Whether higher is better, for every registered metric (Keras 3: "up" or "down")."""

KERAS_DEFAULTS = {
    "accuracy": {"threshold": 0.5},
    "top_k_accuracy": {"k": 5},
    "precision": {"thresholds": 0.5, "class_id": None},
    "recall": {"thresholds": 0.5, "class_id": None},
    "auc": {},
    "mae": {}, "mse": {}, "rmse": {},
}

# --- independent references (float64 NumPy) ---------------------------------------------------


def _classes(output: np.ndarray, target: np.ndarray, threshold: float = 0.5):
    """Predicted and actual classes: argmax for several columns, threshold for one."""
    if output.shape[1] > 1:
        actual = target.argmax(axis=1) if target.ndim == 2 else target.astype(int)
        return output.argmax(axis=1), actual
    return (output[:, 0] > threshold).astype(int), (target.reshape(-1) != 0).astype(int)


def _per_class(output, target, config, kind):
    predicted, actual = _classes(output, target, config.get("thresholds", 0.5))
    labels = [1] if output.shape[1] == 1 else list(range(output.shape[1]))
    scores, present = [], []
    for label in labels:
        tp = np.sum((predicted == label) & (actual == label))
        fp = np.sum((predicted == label) & (actual != label))
        fn = np.sum((predicted != label) & (actual == label))
        denominator = tp + (fp if kind == "precision" else fn)
        scores.append(tp / denominator if denominator else 0.0)
        present.append(tp + fp + fn > 0)
    if config.get("class_id") is not None:
        return scores[config["class_id"]]
    chosen = [score for score, seen in zip(scores, present, strict=True) if seen]
    return float(np.mean(chosen)) if chosen else 0.0


def _pairwise_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(a positive outscores a negative), ties one half, over every pair."""
    pos, neg = scores[positive][:, None], scores[~positive][None, :]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def reference(name: str, output: np.ndarray, target: np.ndarray, config: dict) -> float:
    """The metric over probabilities `output`, from its published definition."""
    if name == "accuracy":
        predicted, actual = _classes(output, target, config.get("threshold", 0.5))
        return float(np.mean(predicted == actual))
    if name == "top_k_accuracy":
        actual = target.argmax(axis=1) if target.ndim == 2 else target
        own = output[np.arange(len(output)), actual]
        higher = (output > own[:, None]).sum(axis=1)  # ties with the label do not push it out
        return float(np.mean(higher < config.get("k", 5)))
    if name in ("precision", "recall"):
        return _per_class(output, target, config, name)
    if name == "auc":
        return _pairwise_auc(output.reshape(-1), target.reshape(-1) != 0)
    error = output.reshape(len(output), -1) - target.reshape(len(output), -1)
    if name == "mae":
        return float(np.abs(error).mean())
    mse = float((error**2).mean())
    return math.sqrt(mse) if name == "rmse" else mse


# --- tasks: logits, the activation they lack, and targets ------------------------------------


def task(kind: str, samples: int = 97, seed: int = 0):
    """`(logits, activation, targets)` of a softmax, sigmoid or regression problem, float64."""
    generator = torch.Generator().manual_seed(seed)
    if kind in ("softmax", "one_hot"):
        target = torch.randint(0, 6, (samples,), generator=generator)
        # Informative scores, so no metric sits at a trivial value.
        logits = torch.randn(samples, 6, generator=generator, dtype=torch.float64)
        logits[torch.arange(samples), target] += 1.0
        if kind == "one_hot":
            target = torch.nn.functional.one_hot(target, 6).double()
        return logits, "softmax", target
    if kind == "sigmoid":
        target = torch.randint(0, 2, (samples,), generator=generator).double()
        logits = torch.randn(samples, 1, generator=generator, dtype=torch.float64) + target[:, None]
        logits[:7] = logits[7:14]  # tied scores
        target[:7] = 1 - target[7:14]  # ... across both classes
        return logits, "sigmoid", target
    if kind == "regression_wide":
        output = torch.randn(samples, 3, generator=generator, dtype=torch.float64)
        return output, None, output + torch.randn(samples, 3, generator=generator,
                                                  dtype=torch.float64)
    output = torch.randn(samples, 1, generator=generator, dtype=torch.float64)
    return output, None, 3 * torch.randn(samples, generator=generator, dtype=torch.float64)


TASKS = {
    "accuracy": ["softmax", "one_hot", "sigmoid"],
    "top_k_accuracy": ["softmax", "one_hot"],
    "precision": ["softmax", "one_hot", "sigmoid"],
    "recall": ["softmax", "one_hot", "sigmoid"],
    "auc": ["sigmoid"],
    "mae": ["regression", "regression_wide", "sigmoid", "one_hot"],
    "mse": ["regression", "regression_wide", "sigmoid", "one_hot"],
    "rmse": ["regression", "regression_wide"],
}
"""The problems each metric is tested on (one-hot: targets as rows; sigmoid: ties included;
errors of a softmax or sigmoid: its probabilities compared value by value)."""

CONFIGS = {
    "accuracy": [{}, {"threshold": 0.7}],
    "top_k_accuracy": [{}, {"k": 1}, {"k": 2}],
    "precision": [{}, {"class_id": 0}, {"thresholds": 0.3}],
    "recall": [{}, {"class_id": 0}, {"thresholds": 0.3}],
}

CASES = [
    pytest.param(name, kind, config, id=f"{name}-{kind}-{'-'.join(map(str, config.values()))}")
    for name in metrics.names()
    for kind in TASKS[name]
    for config in CONFIGS.get(name, [{}])
]


def test_every_registered_metric_has_cases_and_a_direction():
    assert set(TASKS) == set(metrics.names()) == set(DIRECTIONS) == set(KERAS_DEFAULTS)


@pytest.mark.parametrize(("name", "kind", "config"), CASES)
def test_metric_matches_numpy_reference_on_probabilities_and_logits(name, kind, config):
    logits, activation, target = task(kind)
    metric = metrics.get({name: config})
    probabilities = logits if activation is None else (
        torch.softmax(logits, -1) if activation == "softmax" else torch.sigmoid(logits))
    expected = reference(name, probabilities.numpy(), target.numpy(), config)
    assert 0 < expected < 1 or name in ("mae", "mse", "rmse")  # not a trivial value
    assert float(metric.compute(probabilities, target, None)) == pytest.approx(expected, rel=1e-12)
    # Fused with the loss, the trainer hands over logits and the activation they lack.
    assert float(metric.compute(logits, target, activation)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("name", "kind", "config"), CASES)
def test_epoch_metrics_buffered_and_batch_by_batch_agree_with_the_reference(name, kind, config):
    logits, activation, target = task(kind, samples=101)
    metric = metrics.get({name: config})
    buffered = EpochMetrics([metric], activation, target)
    streamed = EpochMetrics([metric], activation, target, max_buffer_bytes=0)
    for begin in range(0, 101, 32):  # the last batch is smaller
        batch = slice(begin, begin + 32)
        buffered.add(logits[batch], begin, target[batch])
        streamed.add(logits[batch], begin, target[batch])
        seen = min(begin + 32, 101)
        probabilities = (torch.softmax(logits[:seen], -1) if activation == "softmax"
                         else torch.sigmoid(logits[:seen]) if activation else logits[:seen])
        expected = reference(name, probabilities.numpy(), target[:seen].numpy(), config)
        got = float(buffered.values(seen)[0])
        assert got == pytest.approx(expected, rel=1e-12, nan_ok=True)
        if isinstance(metric, SummedMetric):
            assert float(streamed.values(seen)[0]) == pytest.approx(got, rel=1e-12, nan_ok=True)
    assert buffered.outputs is not None
    # A metric that needs every score keeps them whatever the buffer limit.
    assert (streamed.outputs is None) == isinstance(metric, SummedMetric)


@pytest.mark.parametrize("streamed", [False, True], ids=["buffered", "streamed"])
def test_stacked_seeds_are_each_scored_as_alone(streamed):
    """BatchedSeedsTrainer's form: outputs [S, B, ...] and each seed's own targets [S, N]."""
    chosen = [metrics.get(name) for name in ("accuracy", "top_k_accuracy", "precision",
                                             "recall")]
    seeds = [task("softmax", samples=70, seed=seed) for seed in range(3)]
    logits = torch.stack([seed[0] for seed in seeds])
    targets = torch.stack([seed[2] for seed in seeds])
    limit = 0 if streamed else 256 * 2**20
    stacked = EpochMetrics(chosen, "softmax", targets, max_buffer_bytes=limit, stacked=True)
    for begin in range(0, 70, 32):
        stacked.add(logits[:, begin : begin + 32], begin, targets[:, begin : begin + 32])
    assert (stacked.outputs is None) == streamed
    values = stacked.values(70)
    for index, (seed_logits, _, seed_targets) in enumerate(seeds):
        for metric, seed_values in zip(chosen, values, strict=True):
            alone = metric.compute(seed_logits, seed_targets, "softmax")
            assert float(seed_values[index]) == pytest.approx(float(alone), rel=1e-12)


def test_stacked_auc_and_errors_are_per_seed():
    logits = torch.stack([task("sigmoid", seed=seed)[0] for seed in range(2)])
    targets = torch.stack([task("sigmoid", seed=seed)[2] for seed in range(2)])
    chosen = [metrics.get("auc"), metrics.get("rmse")]
    stacked = EpochMetrics(chosen, "sigmoid", targets, max_buffer_bytes=0, stacked=True)
    stacked.add(logits, 0, targets)
    auc, rmse = stacked.values(97)
    for seed in range(2):
        probabilities = torch.sigmoid(logits[seed]).numpy()
        assert float(auc[seed]) == pytest.approx(
            reference("auc", probabilities, targets[seed].numpy(), {}), rel=1e-12)
        assert float(rmse[seed]) == pytest.approx(
            reference("rmse", probabilities, targets[seed].numpy(), {}), rel=1e-12)


# --- what each metric means ------------------------------------------------------------------


def test_accuracy_multiclass_logits_and_probabilities_agree():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.1, 0.2], [5.0, 0.0, 0.0]])
    target = torch.tensor([0, 1, 0, 1])
    accuracy = metrics.get("accuracy")
    assert float(accuracy.compute(logits, target, "softmax")) == 0.5
    assert float(accuracy.compute(torch.softmax(logits, -1), target, None)) == 0.5
    # one-hot rows are compared by their argmax (Keras's CategoricalAccuracy)
    one_hot = torch.nn.functional.one_hot(target, 3).float()
    assert float(accuracy.compute(logits, one_hot, "softmax")) == 0.5


def test_accuracy_binary_threshold_on_both_scales():
    probabilities = torch.tensor([[0.9], [0.4], [0.6], [0.1]])
    target = torch.tensor([1, 1, 0, 0])
    accuracy = metrics.get({"accuracy": {"threshold": 0.5}})
    assert float(accuracy.compute(probabilities, target, None)) == 0.5
    assert float(accuracy.compute(torch.logit(probabilities), target, "sigmoid")) == 0.5
    strict = metrics.get({"accuracy": {"threshold": 0.95}})
    assert float(strict.compute(probabilities, target, None)) == 0.5  # all predicted 0
    assert float(strict.compute(torch.logit(probabilities), target, "sigmoid")) == 0.5


def test_top_k_counts_a_label_tied_with_the_kth_score_as_a_hit():
    """Keras's in_top_k: the label's score at least the k-th highest."""
    output = torch.tensor([[0.4, 0.3, 0.3], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    top_1 = metrics.get({"top_k_accuracy": {"k": 1}})
    top_2 = metrics.get({"top_k_accuracy": {"k": 2}})
    assert float(top_1.compute(output, torch.tensor([1, 0, 0]), None)) == pytest.approx(1 / 3)
    assert float(top_2.compute(output, torch.tensor([2, 2, 0]), None)) == pytest.approx(2 / 3)
    # k at or above the classes: every sample (tricklab train refuses it before training)
    assert float(metrics.get("top_k_accuracy").compute(output, torch.tensor([1, 2, 0]), None)) \
        == 1.0
    with pytest.raises(ValueError, match="one score per class"):
        top_1.compute(torch.rand(4, 1), torch.zeros(4), None)


def test_precision_and_recall_are_scikit_learns_macro_average_for_softmax_outputs():
    logits, _, target = task("softmax", samples=300, seed=4)
    predicted = logits.argmax(1).numpy()
    for name, score in (("precision", precision_score), ("recall", recall_score)):
        expected = score(target.numpy(), predicted, average="macro", zero_division=0)
        assert float(metrics.get(name).compute(logits, target, "softmax")) == pytest.approx(
            expected, rel=1e-12)
        per_class = score(target.numpy(), predicted, average=None, zero_division=0)
        one = metrics.get({name: {"class_id": 3}})
        assert float(one.compute(logits, target, "softmax")) == pytest.approx(per_class[3])
    # A class absent from the targets and the predictions does not dilute the average.
    output = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    labels = torch.tensor([0, 1, 1])
    assert float(metrics.get("precision").compute(output, labels, None)) == pytest.approx(
        (1 / 2 + 1) / 2)
    assert float(metrics.get("recall").compute(output, labels, None)) == pytest.approx(
        (1 + 1 / 2) / 2)


def test_binary_precision_and_recall_are_kerass_with_divide_no_nan():
    logits, _, target = task("sigmoid", samples=200, seed=5)
    predicted = (torch.sigmoid(logits[:, 0]) > 0.5).numpy()
    assert float(metrics.get("precision").compute(logits, target, "sigmoid")) == pytest.approx(
        precision_score(target.numpy(), predicted), rel=1e-12)
    assert float(metrics.get("recall").compute(logits, target, "sigmoid")) == pytest.approx(
        recall_score(target.numpy(), predicted), rel=1e-12)
    never = torch.full((4, 1), -3.0)  # nothing predicted positive: precision 0, not NaN
    assert float(metrics.get("precision").compute(never, torch.tensor([1, 0, 1, 0]),
                                                  "sigmoid")) == 0.0


def test_auc_is_exact_as_scikit_learns_with_ties_and_nan_with_one_class():
    logits, _, target = task("sigmoid", samples=500, seed=6)
    logits = logits.round(decimals=1)  # many ties
    expected = roc_auc_score(target.numpy(), logits[:, 0].numpy())
    auc = metrics.get("auc")
    assert float(auc.compute(logits, target, "sigmoid")) == pytest.approx(expected, rel=1e-12)
    assert float(auc.compute(torch.sigmoid(logits), target, None)) == pytest.approx(
        expected, rel=1e-12)
    assert math.isnan(float(auc.compute(logits, torch.ones(500), "sigmoid")))
    with pytest.raises(ValueError, match="one output per sample"):
        auc.compute(torch.rand(4, 3), torch.zeros(4), None)


def test_rmse_is_the_root_of_the_epochs_mse_not_a_mean_of_batch_roots():
    output = torch.tensor([[0.0], [0.0], [0.0], [0.0]], dtype=torch.float64)
    target = torch.tensor([1.0, 1.0, 3.0, 3.0], dtype=torch.float64)
    scores = EpochMetrics([metrics.get("rmse")], None, target, max_buffer_bytes=0)
    scores.add(output[:2], 0, target[:2])
    scores.add(output[2:], 2, target[2:])
    assert float(scores.values(4)[0]) == pytest.approx(math.sqrt(5))  # not (1 + 3) / 2


def test_errors_compare_probabilities_of_a_fused_sigmoid():
    logits = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    mae = metrics.get("mae").compute(logits, torch.tensor([1.0, 1.0]), "sigmoid")
    assert float(mae) == pytest.approx((0.5 + 1 - 1 / (1 + math.exp(-2))) / 2)
    with pytest.raises(ValueError, match="value by value"):
        metrics.get("mae").compute(torch.rand(4, 10), torch.arange(4), None)


def test_half_precision_outputs_are_scored_in_float32_at_least():
    output = torch.full((3, 1), 1000.5)
    target = torch.zeros(3)
    assert float(metrics.get("mae").compute(output.bfloat16(), target, None)) == 1000.0
    assert float(metrics.get("mae").compute(output.to(torch.float64), target, None)) == 1000.5


# --- names, directions, configurations -------------------------------------------------------


@pytest.mark.parametrize("name", metrics.names())
def test_each_metric_says_whether_higher_is_better(name):
    assert metrics.info(name).factory.higher_is_better is DIRECTIONS[name]
    for key in (name, f"val_{name}", f"test_{name}", f"train_{name}"):
        assert higher_is_better(key) is DIRECTIONS[name]


@pytest.mark.parametrize(("key", "expected"), [
    ("loss", False), ("val_loss", False), ("test_loss", False), ("regularization_loss", False),
    ("Val_MAE", False), ("lr", None), ("val_custom_score", None), ("validation_mae", None),
])
def test_higher_is_better_of_logged_names(key, expected):
    assert higher_is_better(key) is expected


@pytest.mark.parametrize("name", metrics.names())
def test_metric_config_round_trip_defaults_and_name(name):
    metric = metrics.get(name)
    assert isinstance(metric, Metric)
    assert metric.get_config() == KERAS_DEFAULTS[name]
    assert type(metric).from_config(metric.get_config()).get_config() == metric.get_config()
    assert metric_name(metric) == name  # an instance logs under its registry name


@pytest.mark.parametrize(("spec", "field"), [
    ({"top_k_accuracy": {"k": 0}}, "k"),
    ({"precision": {"thresholds": 1.5}}, "thresholds"),
    ({"recall": {"class_id": -1}}, "class_id"),
])
def test_out_of_range_options_are_one_line_naming_the_field(spec, field):
    with pytest.raises(UserInputError) as raised:
        metrics.get(spec, "train.metrics.0")
    assert str(raised.value).startswith(f"train.metrics.0.{next(iter(spec))}.{field}: ")
