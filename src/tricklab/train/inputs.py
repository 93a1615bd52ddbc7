"""Data as Keras's `fit`, `evaluate` and `predict` take it, made tensors once per call.

Both `tricklab.train.Trainer` and `tricklab.train.BatchedSeedsTrainer` convert
their data here, when a call starts, never per step, so both accept the same
inputs with the same rules:

- Accepted: NumPy arrays, torch tensors, objects with `__array__` (a pandas
  frame), or anything `torch.as_tensor` takes (nested lists), of any bool,
  integer or float dtype, with at least one sample along the first dimension.
  Strings, objects, ragged lists, complex numbers, scalars and empty arrays are
  refused with a `UserInputError` naming the argument.
- Inputs become the model's floating dtype (float32, unless the model was made
  `.double()`): float64 is rounded to float32; integers and booleans keep their
  values, so uint8 images arrive as 0-255, not divided by 255 (scale them
  first, as Keras users do).
- Targets of `sparse_categorical_crossentropy`, and the `[N]` class labels of
  `categorical_crossentropy`, become int64 class indices (floats holding whole
  numbers are accepted; fractions, NaN, infinities and negatives are refused);
  targets of `mse`, `mae`, `huber`, `binary_crossentropy` and the one-hot or
  probability rows of `categorical_crossentropy` become the model's floating
  dtype; for any other loss, float targets become that dtype and integer ones
  are kept as given.
- A float32 CPU tensor, or a native-order float32 NumPy array, is used as it
  is, without a copy (NumPy shares its memory with the tensor).
- `x` and `y` (and the two parts of `validation_data`) must have the same
  number of samples; `validation_data` is a pair `(x_val, y_val)`.
- `validation_split` in [0, 1) holds out the last samples, as Keras does,
  taken before any shuffling: training keeps the first
  `int(N * (1 - validation_split))`; `validation_data` overrides it.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from tricklab.errors import UserInputError, shown_value
from tricklab.train.losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
)

ArrayLike = Any
"""What `fit`, `evaluate` and `predict` take as data: a torch tensor, a NumPy array, an
object with `__array__` (a pandas frame), or anything `torch.as_tensor` takes (nested lists)."""

Pair = tuple[torch.Tensor, torch.Tensor]
"""Inputs and targets, converted."""

INDEX_TARGET_LOSSES = (SparseCategoricalCrossentropy,)
"""Losses whose targets are class indices, made int64 (what `F.cross_entropy` indexes with)."""

FLOAT_TARGET_LOSSES = (
    MeanSquaredError, MeanAbsoluteError, Huber, BinaryCrossentropy, CategoricalCrossentropy,
)
"""Losses whose targets are numbers compared with the output, made the model's float dtype."""

ACCEPTED_DATA = "numbers (bool, integer or float) as a NumPy array, a torch tensor or nested lists"
"""What a one-line data error says is accepted."""


def float_dtype(parameters: Iterable[torch.Tensor]) -> torch.dtype:
    """The floating dtype a model computes in: that of its first float parameter (else float32).

    Args:
        parameters: The model's parameters, e.g. `model.parameters()`.
    """
    return next((p.dtype for p in parameters if p.is_floating_point()), torch.float32)


def fit_data(
    x: ArrayLike,
    y: ArrayLike,
    validation_data: Any,
    validation_split: Any,
    loss: Loss,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, Pair | None]:
    """`fit`'s training data and validation pair, converted and on `device`.

    Args:
        x: Inputs, first dimension the samples.
        y: Targets, same first dimension.
        validation_data: `(x_val, y_val)` or `None`; it overrides `validation_split`.
        validation_split: Fraction in [0, 1) of the last samples held out (0: none).
        loss: The loss, which decides the targets' dtype.
        dtype: The model's floating dtype.
        device: Where the model is.

    Returns:
        `(x, y, validation_data)`, the last `None` without validation.

    Raises:
        UserInputError: On anything the module docstring says is refused.
    """
    check_validation_split(validation_split)
    x, y = data_pair(x, y, loss, dtype, device)
    if validation_data is not None:
        return x, y, validation_pair(validation_data, loss, dtype, device)
    if validation_split:
        return split_off_last(x, y, validation_split)
    return x, y, None


def data_pair(
    x: ArrayLike,
    y: ArrayLike,
    loss: Loss,
    dtype: torch.dtype,
    device: torch.device | None,
    names: tuple[str, str] = ("x", "y"),
) -> Pair:
    """`x` and `y` as tensors of the dtypes the module docstring gives, on `device`.

    Args:
        x: Inputs.
        y: Targets.
        loss: The loss, which decides the targets' dtype.
        dtype: The model's floating dtype.
        device: Where they go; `None` leaves them where they are.
        names: The arguments' names, for messages. Defaults to `("x", "y")`.

    Raises:
        UserInputError: Naming the argument on anything refused.
    """
    x, y = as_tensor(x, names[0]), as_tensor(y, names[1])
    if x.shape[0] != y.shape[0]:
        raise UserInputError(
            f"{names[0]} has {x.shape[0]} samples and {names[1]} has {y.shape[0]}; "
            "accepted: the same number of samples (first dimension) in both"
        )
    return to_inputs(x, dtype, device), to_targets(y, names[1], loss, dtype, device)


def validation_pair(
    validation_data: Any, loss: Loss, dtype: torch.dtype, device: torch.device
) -> Pair:
    """`validation_data` converted like `fit`'s `x` and `y`, on `device`.

    Raises:
        UserInputError: When it is not a pair, or on data `data_pair` refuses.
    """
    if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
        kind = (
            f"a {type(validation_data).__name__} of {len(validation_data)}"
            if isinstance(validation_data, tuple | list)
            else shown_value(validation_data)
        )
        raise UserInputError(
            f"validation_data: {kind}; accepted: a pair (x_val, y_val) "
            "(Keras's sample weights are not supported)"
        )
    return data_pair(*validation_data, loss, dtype, device,
                     ("validation_data[0]", "validation_data[1]"))


def prediction_inputs(x: ArrayLike, dtype: torch.dtype) -> torch.Tensor:
    """`predict`'s inputs in `dtype`, left on their device (each batch moves in turn).

    Raises:
        UserInputError: Naming `x`, on inputs `fit` refuses.
    """
    return to_inputs(as_tensor(x, "x"), dtype, None)


def to_inputs(x: torch.Tensor, dtype: torch.dtype, device: torch.device | None) -> torch.Tensor:
    """Inputs in the model's float dtype; `.to` returns `x` itself when nothing changes."""
    return x.to(device=device, dtype=dtype)


def to_targets(
    y: torch.Tensor, name: str, loss: Loss, dtype: torch.dtype, device: torch.device | None
) -> torch.Tensor:
    """Targets in the dtype `loss` computes with (see the module docstring)."""
    if isinstance(loss, INDEX_TARGET_LOSSES) or (
        isinstance(loss, CategoricalCrossentropy) and y.ndim == 1
    ):
        return _class_indices(y, name, type(loss).__name__).to(device)
    if isinstance(loss, FLOAT_TARGET_LOSSES) or y.is_floating_point():
        return y.to(device=device, dtype=dtype)
    # Another loss's integer targets may be indices or counts: its own business.
    return y.to(device)


def as_tensor(value: ArrayLike, name: str) -> torch.Tensor:
    """`value` as a tensor of numbers, sharing its memory where it can; dtype as given.

    Raises:
        UserInputError: Naming `name`, when `value` is not numbers or has no samples.
    """
    if isinstance(value, torch.Tensor):
        tensor = value
    elif isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        tensor = _from_numpy(np.asarray(value), name)
    else:
        try:
            tensor = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise UserInputError(
                f"{name}: {shown_value(value)} is not an array of numbers ({reason}); "
                f"accepted: {ACCEPTED_DATA}"
            ) from None
    if tensor.is_complex():
        raise UserInputError(f"{name}: complex numbers; accepted: {ACCEPTED_DATA}")
    if tensor.dim() == 0 or tensor.shape[0] == 0:
        raise UserInputError(
            f"{name}: {'a scalar' if tensor.dim() == 0 else 'no samples'} "
            f"(shape {list(tensor.shape)}); accepted: one or more samples along the first dimension"
        )
    return tensor


def check_validation_split(validation_split: Any) -> None:
    """Refuse a `validation_split` that is not a number in [0, 1).

    Raises:
        UserInputError: Naming `validation_split` and what is accepted.
    """
    number = isinstance(validation_split, numbers.Real) and not isinstance(validation_split, bool)
    if not number or not 0 <= validation_split < 1:
        raise UserInputError(
            f"validation_split: {shown_value(validation_split)}; "
            "accepted: a fraction in [0, 1) (0: no validation split)"
        )


def split_off_last(
    x: torch.Tensor, y: torch.Tensor, validation_split: float
) -> tuple[torch.Tensor, torch.Tensor, Pair]:
    """Keras's split: the first `int(N * (1 - split))` samples train, the rest validate.

    Keras computes the split point as `int(math.floor(batch_dim * (1.0 - validation_split)))`
    (`keras.src.trainers.data_adapters.data_adapter_utils.train_validation_split`), so
    1797 samples at 0.2 keep 1437 and validate on 360. Slices are views: no copy.

    Raises:
        UserInputError: When either side would be empty.
    """
    count = x.shape[0]
    split_at = math.floor(count * (1.0 - validation_split))
    if split_at in (0, count):
        raise UserInputError(
            f"validation_split: {validation_split} of {count} samples leaves {split_at} "
            f"for training and {count - split_at} for validation; accepted: a fraction "
            "that leaves at least one sample on each side"
        )
    return x[:split_at], y[:split_at], (x[split_at:], y[split_at:])


def _from_numpy(array: np.ndarray, name: str) -> torch.Tensor:
    """A tensor sharing `array`'s memory, or one copy where torch cannot share it."""
    if array.dtype.kind not in "biuf":
        raise UserInputError(
            f"{name}: a NumPy array of dtype {array.dtype} "
            f"({'strings or mixed objects' if array.dtype.kind in 'OUS' else 'not numbers'}); "
            f"accepted: {ACCEPTED_DATA}"
        )
    try:
        with warnings.catch_warnings():
            # A read-only array (a memory map, np.frombuffer) is shared as it is: the
            # trainer only reads its data, so torch's warning about writes does not apply.
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            return torch.from_numpy(array)
    except (TypeError, ValueError):
        # Non-native byte order, negative strides or long double: one native copy.
        native = np.float64 if array.dtype.kind == "f" else array.dtype.newbyteorder("=")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=native))


def _class_indices(y: torch.Tensor, name: str, loss: str) -> torch.Tensor:
    """`y` as int64 class indices, refusing fractions, NaN, infinities and negatives."""
    bad = y < 0 if y.dtype != torch.bool else torch.zeros_like(y)
    if y.is_floating_point():
        bad |= ~torch.isfinite(y) | (y != y.trunc())
    # One read on the host per call, never per step.
    if bool(bad.any()):
        flat = int(bad.reshape(-1).nonzero()[0])
        sample = flat // (y.numel() // y.shape[0])
        raise UserInputError(
            f"{name}: sample {sample} has target {y.reshape(-1)[flat].item()!r}; "
            f"{loss} takes class indices, whole numbers >= 0"
        )
    return y.to(torch.int64)
