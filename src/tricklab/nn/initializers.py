"""Weight initializers with Keras 3 names, defaults and formulas, for PyTorch tensor layouts.

An initializer is a small configurable object: `init(tensor)` fills `tensor` in
place (under `torch.no_grad()`, from the global torch RNG, so
`torch.manual_seed` makes it reproducible) and returns it. The fan-based
family lives in `tricklab.nn.variance_scaling`; both register here, in
`initializers`.

Fans follow Keras's meaning on PyTorch's layouts: a Linear weight is
`(out, in)` and a convolution weight `(out, in, *kernel)`, so
`fan_in = in * prod(kernel)` and `fan_out = out * prod(kernel)`, the same
numbers Keras computes on its `(in, out)` and `(*kernel, in, out)` kernels.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated, Any

import torch
from pydantic import Field, SkipValidation

from tricklab.config import Configurable, validate_config
from tricklab.errors import UserInputError
from tricklab.nn.base import RegistryRef
from tricklab.registry import Registry


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    """Return `(fan_in, fan_out)` of a weight in PyTorch layout.

    Args:
        shape: `()` (fans 1), `(n,)` (fans n, as Keras), `(out, in)` or `(out, in, *kernel)`.
    """
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return int(shape[0]), int(shape[0])
    receptive_field = math.prod(shape[2:])
    return int(shape[1]) * receptive_field, int(shape[0]) * receptive_field


class Initializer(Configurable, ABC):
    """Base class: a configured way of filling a tensor.

    Subclasses store their hyperparameters, call `super().__init__()` (which
    validates them against the typed signature) and implement `_fill`.
    """

    def __init__(self) -> None:
        validate_config(type(self), self._config, type(self).__name__)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        """Fill `tensor` in place without recording gradients and return it.

        A tensor on the `meta` device is returned as it is.

        Args:
            tensor: The weight to fill, in PyTorch layout.
        """
        if tensor.is_meta:
            # A meta tensor (a memory estimate, `tricklab.nn.footprint`) has a shape
            # and no values: nothing to draw, and a data-dependent fill (a QR
            # factorisation, `.item()`) could not run on it.
            return tensor
        with torch.no_grad():
            return self._fill(tensor)

    @abstractmethod
    def _fill(self, tensor: torch.Tensor) -> torch.Tensor:
        """Fill `tensor` in place (gradients already off) and return it."""

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self._config.items())
        return f"{type(self).__name__}({arguments})"


initializers: Registry[Initializer] = Registry("initializer", base=Initializer)

InitializerSpec = Annotated[
    str | dict[str, Any] | Initializer, RegistryRef(initializers), SkipValidation
]
"""A recipe's initializer: a name, `{name: {config}}`, or an `Initializer` instance."""


@initializers.register("zeros", description="All zeros.", keras_name="Zeros")
class Zeros(Initializer):
    """Fill with 0 (Keras `Zeros`); the default bias initializer.

    PyTorch equivalent: `torch.nn.init.zeros_(w)`.
    """

    def _fill(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.zero_()


@initializers.register("ones", description="All ones.", keras_name="Ones")
class Ones(Initializer):
    """Fill with 1 (Keras `Ones`).

    PyTorch equivalent: `torch.nn.init.ones_(w)`.
    """

    def _fill(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.fill_(1.0)


@initializers.register("constant", description="One constant value.", keras_name="Constant")
class Constant(Initializer):
    """Fill with one value (Keras `Constant`).

    PyTorch equivalent: `torch.nn.init.constant_(w, value)`.

    Args:
        value: The value. Defaults to `0.0`.
    """

    def __init__(self, value: float = 0.0) -> None:
        self.value = value
        super().__init__()

    def _fill(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.fill_(self.value)


@initializers.register(
    "random_normal", description="Normal N(mean, stddev²).", keras_name="RandomNormal"
)
class RandomNormal(Initializer):
    """Draw from N(mean, stddev²) (Keras `RandomNormal`).

    PyTorch equivalent: `torch.nn.init.normal_(w, mean, stddev)`.

    Args:
        mean: Mean. Defaults to `0.0`.
        stddev: Standard deviation. Defaults to `0.05`.
    """

    def __init__(self, mean: float = 0.0, stddev: Annotated[float, Field(ge=0)] = 0.05) -> None:
        self.mean = mean
        self.stddev = stddev
        super().__init__()

    def _fill(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.normal_(self.mean, self.stddev)


@initializers.register(
    "truncated_normal",
    description="Normal N(mean, stddev²) redrawn beyond 2 stddev.",
    keras_name="TruncatedNormal",
)
class TruncatedNormal(Initializer):
    """Draw from N(mean, stddev²) cut at mean ± 2·stddev (Keras `TruncatedNormal`).

    The cut makes the actual standard deviation about 0.88·stddev; the
    fan-based normals compensate for that, this one does not (as in Keras).

    PyTorch equivalent: `torch.nn.init.trunc_normal_(w, mean, stddev, mean - 2 * stddev,
    mean + 2 * stddev)`.

    Args:
        mean: Mean before truncation. Defaults to `0.0`.
        stddev: Standard deviation before truncation. Defaults to `0.05`.
    """

    def __init__(self, mean: float = 0.0, stddev: Annotated[float, Field(ge=0)] = 0.05) -> None:
        self.mean = mean
        self.stddev = stddev
        super().__init__()

    def _fill(self, tensor: torch.Tensor) -> torch.Tensor:
        half_width = 2.0 * self.stddev
        return torch.nn.init.trunc_normal_(
            tensor, self.mean, self.stddev, self.mean - half_width, self.mean + half_width
        )


@initializers.register(
    "random_uniform", description="Uniform on [minval, maxval).", keras_name="RandomUniform"
)
class RandomUniform(Initializer):
    """Draw from U[minval, maxval) (Keras `RandomUniform`).

    PyTorch equivalent: `torch.nn.init.uniform_(w, minval, maxval)`.

    Args:
        minval: Lower bound. Defaults to `-0.05`.
        maxval: Upper bound, not below `minval`. Defaults to `0.05`.
    """

    def __init__(self, minval: float = -0.05, maxval: float = 0.05) -> None:
        self.minval = minval
        self.maxval = maxval
        super().__init__()
        if minval > maxval:
            raise UserInputError(
                f"RandomUniform: minval ({minval}) must not exceed maxval ({maxval})"
            )

    def _fill(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.uniform_(self.minval, self.maxval)


@initializers.register(
    "orthogonal",
    description="Random orthogonal matrix times gain.",
    reference="Saxe et al. 2014",
    keras_name="Orthogonal",
)
class Orthogonal(Initializer):
    """Random (semi-)orthogonal weight times `gain` (Keras `Orthogonal`; Saxe et al. 2014).

    The weight is viewed as a `(rows, cols)` matrix with `rows = shape[0]`
    (output units) and `cols` the product of the rest. A Gaussian matrix of
    shape `(max, min)` is QR-factorised, `Q` is made unique by the signs of
    `diag(R)`, and transposed when `rows < cols`; so `W·Wᵀ = gain²·I` when
    `rows <= cols`, otherwise `Wᵀ·W = gain²·I`. This is Keras's distribution on
    the transposed (PyTorch) layout.

    PyTorch equivalent: `torch.nn.init.orthogonal_(w, gain)`.

    Args:
        gain: Multiplicative factor. Defaults to `1.0`.

    Raises:
        UserInputError: When called on a tensor of fewer than two dimensions.
    """

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = gain
        super().__init__()

    def _fill(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.ndim < 2:
            raise UserInputError(
                f"Orthogonal: needs a tensor of at least 2 dimensions (got shape "
                f"{tuple(tensor.shape)})"
            )
        rows = tensor.shape[0]
        cols = tensor.numel() // rows
        gaussian = torch.randn(
            (max(rows, cols), min(rows, cols)), dtype=tensor.dtype, device=tensor.device
        )
        q, r = torch.linalg.qr(gaussian)
        q *= torch.sign(torch.diagonal(r))
        if rows < cols:
            q = q.T
        return tensor.copy_(q.reshape(tensor.shape)).mul_(self.gain)
