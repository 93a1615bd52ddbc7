"""Datasets drawn from a seed instead of read from files: the adding problem.

A generated dataset is registered in `datasets` like the image datasets, and its
loader's keyword arguments are the keys of a recipe's `data:` section. The data
depends only on `data_seed` and the sizes, never on the run's `seed`, so the
runs of a study see the same sequences and differ only in their training.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pydantic
import torch

from tricklab.data.datasets import INPUT_SHAPES, DatasetSplits, Split, datasets
from tricklab.data.splits import PositiveInt
from tricklab.errors import UserInputError

ADDING_FEATURES = 2
"""Features of each time step of the adding problem: the value and the marker."""

NonNegativeInt = Annotated[int, pydantic.Field(strict=True, ge=0)]
"""A count that may be 0, or a seed: an integer, never a bool or a float."""

SequenceLength = Annotated[int, pydantic.Field(strict=True, ge=2)]
"""Time steps of a sequence: at least 2, so that each half can hold a marker."""


def adding_sequences(count: int, length: int, generator: torch.Generator) -> Split:
    """Draw `count` sequences of the adding problem.

    Each time step has two features: a value drawn from U(0, 1) and a marker.
    The marker is 1 at exactly two steps, one drawn uniformly from the first half
    `[0, length // 2)` and one from the second half `[length // 2, length)`, and
    0 elsewhere. The target is the sum of the two marked values.

    Args:
        count: Number of sequences.
        length: Time steps per sequence, at least 2.
        generator: CPU generator that draws the values, then the first markers,
            then the second markers.

    Returns:
        Inputs, float32 `[count, length, 2]` (value, marker), and targets, float32 `[count]`.

    Reference:
        Arjovsky, Shah & Bengio (2016), "Unitary Evolution Recurrent Neural
        Networks", ICML, after Hochreiter & Schmidhuber (1997), experiment 4.
    """
    values = torch.rand(count, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (count,), generator=generator)
    second = torch.randint(half, length, (count,), generator=generator)
    rows = torch.arange(count)
    markers = torch.zeros(count, length)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]
    return Split(torch.stack((values, markers), dim=-1), target)


@datasets.register(
    "adding_problem",
    description="Sequences of (value, marker) steps; the target is the sum of the two "
    "marked values (regression, mse; predicting 1 scores 1/6)",
    reference="Hochreiter & Schmidhuber (1997), Neural Computation 9(8), experiment 4; "
    "Le, Jaitly & Hinton (2015), arXiv:1504.00941; Arjovsky, Shah & Bengio (2016), "
    "arXiv:1511.06464",
)
def adding_problem(
    length: SequenceLength = 100,
    train_size: PositiveInt = 10000,
    validation: NonNegativeInt = 1000,
    test_size: PositiveInt = 1000,
    data_seed: NonNegativeInt = 0,
) -> DatasetSplits:
    """The adding problem: remember two marked values of a long sequence and add them.

    Each sample is a sequence of `length` steps of two features, a value drawn
    from U(0, 1) and a marker that is 1 at exactly two steps, one uniformly in
    the first half of the sequence and one uniformly in the second half, and 0
    elsewhere (see `adding_sequences`). The target is the sum of the two marked
    values, a float32 of shape `[N]` that the `mse` loss compares with the
    output of a final `dense: {units: 1}`. Predicting 1 whatever the input gives
    a mean squared error of 1/6 ≈ 0.167, the variance of a sum of two U(0, 1):
    the baseline a network must beat. The first marked value comes at least
    `length - length // 2` steps before the end, so a network must remember it
    across at least half of the sequence.

    Each part is drawn by its own `torch.Generator`, seeded from
    `numpy.random.SeedSequence(data_seed)`'s spawned children, so the parts are
    independent streams and each depends only on `data_seed` and its own size:
    a larger `train_size` leaves the validation and test sequences unchanged.
    The draws run on the CPU, so they are the same on every machine for a given
    PyTorch version.

    Args:
        length: Time steps `T` of each sequence, at least 2 (the papers use 100
            to 750). Defaults to `100`.
        train_size: Training sequences. Defaults to `10000`.
        validation: Validation sequences; 0 means no validation part. Defaults to `1000`.
        test_size: Test sequences. Defaults to `1000`.
        data_seed: Seed of the data, the same for every run `seed`. Defaults to `0`.

    Returns:
        The three parts, with input shape `(length, 2)`, no class names and
        `scale` `"none"` (the inputs are used as drawn).

    Raises:
        UserInputError: Naming `data.<key>` when an option is not an integer in
            its range.

    Reference:
        Hochreiter & Schmidhuber (1997), "Long Short-Term Memory", Neural
        Computation 9(8), experiment 4 (the original, with values in [-1, 1]);
        Le, Jaitly & Hinton (2015), "A Simple Way to Initialize Recurrent Networks
        of Rectified Linear Units", arXiv:1504.00941; Arjovsky, Shah & Bengio
        (2016), "Unitary Evolution Recurrent Neural Networks", ICML (one marker
        in each half).
    """
    options = {"length": (length, 2), "train_size": (train_size, 1),
               "validation": (validation, 0), "test_size": (test_size, 1),
               "data_seed": (data_seed, 0)}
    for key, (value, minimum) in options.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise UserInputError(f"data.{key}: must be an integer >= {minimum}, got {value!r}")
    sizes = {"train": train_size, "val": validation, "test": test_size}
    parts = {}
    for (part, size), seed in zip(
        sizes.items(), np.random.SeedSequence(data_seed).spawn(len(sizes)), strict=True
    ):
        generator = torch.Generator().manual_seed(int(seed.generate_state(1, np.uint64)[0]))
        parts[part] = adding_sequences(size, length, generator) if size else None
    return DatasetSplits(
        name="adding_problem", train=parts["train"], val=parts["val"], test=parts["test"],
        class_names=[], input_shape=(length, ADDING_FEATURES), scale="none",
    )


def _adding_problem_shape(options: dict[str, Any]) -> tuple[int, ...]:
    """`(length, 2)`, from the resolved `data:` options."""
    return (options["length"], ADDING_FEATURES)


INPUT_SHAPES["adding_problem"] = _adding_problem_shape
