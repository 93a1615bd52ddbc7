"""Recurrent layers with Keras names, defaults and formulas: SimpleRNN, LSTM and GRU.

A sample is a sequence of shape `(timesteps, features)`, batched `[N, T, F]`
as in Keras (batch first). Each layer runs one of PyTorch's fused recurrent
kernels (`torch.rnn_tanh`, `torch.rnn_relu`, `torch.lstm`, `torch.gru`;
cuDNN on a GPU), the ones `torch.nn.RNN`, `torch.nn.LSTM` and `torch.nn.GRU`
call, so a step costs what it costs there.

Weights are held in PyTorch's layout: `weight_ih` `(gates·units, in)` is
Keras's `kernel` `(in, gates·units)` transposed and `weight_hh`
`(gates·units, units)` its `recurrent_kernel` `(units, gates·units)`
transposed. Initializers fill them as Keras fills its kernels (the fans are
the same numbers, and `orthogonal` on the PyTorch layout is Keras's draw
transposed: `weight_hhᵀ · weight_hh = I`, the whole recurrent kernel being
one semi-orthogonal matrix, not one orthogonal matrix per gate), and
constraints get Keras's axes (`axis=0`, the default, is the vector of
incoming weights of each unit of each gate).

Keras's `dropout` is supported (one mask per sample, shared by all time
steps: Gal & Ghahramani 2016); `recurrent_dropout`, masking, `go_backwards`, `stateful`,
`return_state` and `unroll` are not.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from tricklab.errors import UserInputError
from tricklab.nn.base import Layer, Projection, Shape, layers
from tricklab.nn.constraints import ConstraintSpec, constraints
from tricklab.nn.dropout import Rate
from tricklab.nn.initializers import InitializerSpec, initializers
from tricklab.nn.regularizers import Regularizer, RegularizerSpec, regularizers

SEQUENCE_RANK = 2
"""Rank of a per-sample sequence, `(timesteps, features)`."""

KERNEL_KERAS_LAYOUT = (1, 0)
"""Where each axis of Keras's `(in, gates·units)` kernels lives in PyTorch's `(gates·units, in)`."""

_SIMPLE_KERNELS = {"tanh": torch.rnn_tanh, "relu": torch.rnn_relu}


def _keep_for_backward() -> bool:
    """The fused kernels' `train` flag: whether gradients are being recorded.

    With one layer and no dropout between layers, `train` only decides whether
    the kernel keeps what backward needs (cuDNN refuses backward otherwise).
    Tying it to autograd rather than to `module.training`, as `torch.nn.LSTM`
    does, lets gradients flow in eval mode on a GPU too, and spares that memory
    under `torch.no_grad()` in training mode.
    """
    return torch.is_grad_enabled()


class _Recurrent(Layer, ABC):
    """What SimpleRNN, LSTM and GRU share: weights, regularizers, constraints, dropout, output.

    Subclasses set `gates` and `recipe_name`, may override `_initial_bias`
    (the bias as Keras initializes it), and implement `_scan`, the fused kernel.
    """

    gates: ClassVar[int]
    recipe_name: ClassVar[str]

    def __init__(
        self,
        *,
        units: int,
        use_bias: bool,
        kernel_initializer: InitializerSpec,
        recurrent_initializer: InitializerSpec,
        bias_initializer: InitializerSpec,
        kernel_regularizer: RegularizerSpec | None,
        recurrent_regularizer: RegularizerSpec | None,
        bias_regularizer: RegularizerSpec | None,
        kernel_constraint: ConstraintSpec | None,
        recurrent_constraint: ConstraintSpec | None,
        bias_constraint: ConstraintSpec | None,
        dropout: float,
        return_sequences: bool,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.units = units
        self.use_bias = use_bias
        self.dropout = dropout
        self.return_sequences = return_sequences
        self.kernel_initializer = initializers.get(kernel_initializer, f"{name}.kernel_initializer")
        self.recurrent_initializer = initializers.get(
            recurrent_initializer, f"{name}.recurrent_initializer"
        )
        self.bias_initializer = initializers.get(bias_initializer, f"{name}.bias_initializer")
        self._regularizers = {
            weight: regularizers.get(spec, f"{name}.{field}")
            for weight, field, spec in (
                ("weight_ih", "kernel_regularizer", kernel_regularizer),
                ("weight_hh", "recurrent_regularizer", recurrent_regularizer),
                # As in Keras, a bias regularizer or constraint is ignored without a bias.
                ("bias", "bias_regularizer", bias_regularizer if use_bias else None),
            )
            if spec is not None
        }
        self._constraints = {
            weight: (constraints.get(spec, f"{name}.{field}"), layout, f"{name}.{field}")
            for weight, field, spec, layout in (
                ("weight_ih", "kernel_constraint", kernel_constraint, KERNEL_KERAS_LAYOUT),
                ("weight_hh", "recurrent_constraint", recurrent_constraint, KERNEL_KERAS_LAYOUT),
                ("bias", "bias_constraint", bias_constraint if use_bias else None, None),
            )
            if spec is not None
        }
        self._projections: dict[str, Projection] = {}

    def _check_sequence(self, input_shape: Shape) -> None:
        if len(input_shape) != SEQUENCE_RANK:
            raise UserInputError(
                f"{self.recipe_name} expects samples of shape (timesteps, features), "
                f"got {tuple(input_shape)}"
            )

    def build(self, input_shape: Shape) -> None:
        """Create `weight_ih` `(gates·units, features)`, `weight_hh` `(gates·units, units)`, `bias`.

        Args:
            input_shape: Shape of one input sample, `(timesteps, features)`.

        Raises:
            UserInputError: When the samples are not sequences `(timesteps, features)`.
        """
        self._check_sequence(input_shape)
        rows = self.gates * self.units
        self.weight_ih = nn.Parameter(self.kernel_initializer(torch.empty(rows, input_shape[-1])))
        self.weight_hh = nn.Parameter(self.recurrent_initializer(torch.empty(rows, self.units)))
        self.bias = nn.Parameter(self._initial_bias()) if self.use_bias else None
        self._projections = {
            weight: constraint.bind(getattr(self, weight).ndim, layout, path)
            for weight, (constraint, layout, path) in self._constraints.items()
        }
        super().build(input_shape)

    def _initial_bias(self) -> torch.Tensor:
        """The bias `(gates·units,)` as Keras initializes it."""
        return self.bias_initializer(torch.empty(self.gates * self.units))

    def weight_regularizers(self) -> dict[str, Regularizer]:
        """`weight_ih`, `weight_hh` and `bias` mapped to their regularizers, where set."""
        return dict(self._regularizers)

    def weight_constraints(self) -> dict[str, Projection]:
        """`weight_ih`, `weight_hh` and `bias` mapped to their constraints, on Keras's axes."""
        return dict(self._projections)

    def _deterministic_itself(self) -> bool:
        return self.dropout == 0

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        self._check_sequence(input_shape)
        return (input_shape[0], self.units) if self.return_sequences else (self.units,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout > 0:
            # Variational dropout: one mask per sample, broadcast over the time steps.
            x = x * F.dropout(x.new_ones(x.shape[0], 1, x.shape[2]), self.dropout)
        outputs, last = self._scan(x, x.new_zeros(1, x.shape[0], self.units))
        return outputs if self.return_sequences else last

    @abstractmethod
    def _scan(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the fused kernel from the zero state `h0` `[1, N, units]`.

        Returns every step's output `[N, T, units]` and the last one's `[N, units]`.
        """

    def _fused_weights(self) -> list[torch.Tensor]:
        """`[w_ih, w_hh, b_ih, b_hh]` as PyTorch's kernels take them, or `[w_ih, w_hh]`."""
        if self.bias is None:
            return [self.weight_ih, self.weight_hh]
        # Keras has one bias where PyTorch adds two: the recurrent one is held at zero.
        # Made here rather than kept as a buffer: `count_params` would count a buffer
        # as a non-trainable weight, which Keras's layer does not have.
        return [self.weight_ih, self.weight_hh, self.bias, torch.zeros_like(self.bias)]


@layers.register(
    "simple_rnn",
    description="Fully connected recurrent layer, h_t = activation(W·x_t + U·h_(t-1) + b).",
    reference="Elman 1990",
    keras_name="SimpleRNN",
)
class SimpleRNN(_Recurrent):
    """Fully connected recurrent layer (Elman 1990; Keras `SimpleRNN`).

    From `h_0 = 0`, for each time step `t`:
    `h_t = activation(W_ih · x_t + W_hh · h_{t−1} + b)`.
    The output is every `h_t`, `(timesteps, units)` per sample, with
    `return_sequences`, else the last one, `(units,)`.

    Weights: `weight_ih` `(units, features)` and `weight_hh` `(units, units)` are
    Keras's `kernel` and `recurrent_kernel` transposed, `bias` `(units,)` is
    Keras's bias; `units · (features + units + 1)` parameters, as in Keras.
    PyTorch's kernel adds a second bias, which is held at zero.

    With `dropout`, in training, a fraction of the input features is zeroed
    and the rest scaled by `1 / (1 − dropout)`, with one mask per sample shared
    by all time steps (Gal & Ghahramani 2016), as Keras does.

    PyTorch equivalent: `torch.nn.RNN(features, units, nonlinearity=activation,
    batch_first=True)` with `bias_hh_l0` fixed at zero, taking `output`
    (`return_sequences`) or `output[:, -1]`.

    Args:
        units: Size of the state and of the output, > 0.
        activation: `"tanh"` or `"relu"`, the two PyTorch fuses. Defaults to `"tanh"`.
        use_bias: Whether to add a bias vector. Defaults to `True`.
        kernel_initializer: Initializer of `weight_ih`. Defaults to `"glorot_uniform"`.
        recurrent_initializer: Initializer of `weight_hh`. Defaults to `"orthogonal"`.
        bias_initializer: Initializer of `bias`. Defaults to `"zeros"`.
        kernel_regularizer: Penalty on `weight_ih` added to the loss. Defaults to `None`.
        recurrent_regularizer: Penalty on `weight_hh` added to the loss. Defaults to `None`.
        bias_regularizer: Penalty on `bias` added to the loss. Defaults to `None`.
        kernel_constraint: Projection of `weight_ih` after each step, with Keras's
            axes. Defaults to `None`.
        recurrent_constraint: Projection of `weight_hh` after each step, with
            Keras's axes. Defaults to `None`.
        bias_constraint: Projection of `bias` after each step. Defaults to `None`.
        dropout: Fraction of the input features dropped in training, in [0, 1).
            Defaults to `0.0`.
        return_sequences: Whether to output every step's state, not only the
            last one. Defaults to `False`.
    """

    gates = 1
    recipe_name = "simple_rnn"

    def __init__(
        self,
        units: Annotated[int, Field(gt=0)],
        activation: Literal["tanh", "relu"] = "tanh",
        use_bias: bool = True,
        kernel_initializer: InitializerSpec = "glorot_uniform",
        recurrent_initializer: InitializerSpec = "orthogonal",
        bias_initializer: InitializerSpec = "zeros",
        kernel_regularizer: RegularizerSpec | None = None,
        recurrent_regularizer: RegularizerSpec | None = None,
        bias_regularizer: RegularizerSpec | None = None,
        kernel_constraint: ConstraintSpec | None = None,
        recurrent_constraint: ConstraintSpec | None = None,
        bias_constraint: ConstraintSpec | None = None,
        dropout: Rate = 0.0,
        return_sequences: bool = False,
    ) -> None:
        super().__init__(
            units=units, use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
            dropout=dropout, return_sequences=return_sequences,
        )
        self.activation = activation

    def _scan(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, last = _SIMPLE_KERNELS[self.activation](
            x, h0, self._fused_weights(), self.use_bias,
            1, 0.0, _keep_for_backward(), False, True,
        )
        return outputs, last[0]


@layers.register(
    "lstm",
    description="Long short-term memory layer: gated cell state with a forget gate.",
    reference="Hochreiter & Schmidhuber 1997; Gers et al. 2000",
    keras_name="LSTM",
)
class LSTM(_Recurrent):
    """Long short-term memory layer (Hochreiter & Schmidhuber 1997; Keras `LSTM`).

    From `h_0 = c_0 = 0`, for each time step `t` (σ the logistic sigmoid,
    `W_·` the gate blocks of `weight_ih`, `U_·` those of `weight_hh`):

        i_t = σ(W_i · x_t + U_i · h_{t−1} + b_i)        input gate
        f_t = σ(W_f · x_t + U_f · h_{t−1} + b_f)        forget gate (Gers et al. 2000)
        g_t = tanh(W_g · x_t + U_g · h_{t−1} + b_g)     candidate cell
        o_t = σ(W_o · x_t + U_o · h_{t−1} + b_o)        output gate
        c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
        h_t = o_t ⊙ tanh(c_t)

    The output is every `h_t`, `(timesteps, units)` per sample, with
    `return_sequences`, else the last one, `(units,)`. Keras's fixed
    `activation="tanh"` and `recurrent_activation="sigmoid"` are the ones
    PyTorch fuses, so they are not arguments.

    Weights: `weight_ih` `(4·units, features)` and `weight_hh` `(4·units, units)`
    are Keras's `kernel` and `recurrent_kernel` transposed, `bias` `(4·units,)`
    is Keras's bias; the gate blocks are in the order i, f, g, o in both.
    `4 · units · (features + units + 1)` parameters, as in Keras. PyTorch's
    kernel adds a second bias, which is held at zero. With `unit_forget_bias`
    the forget gate's bias starts at 1 (Jozefowicz et al. 2015), the other
    blocks drawn from `bias_initializer`, as Keras does.

    With `dropout`, in training, a fraction of the input features is zeroed
    and the rest scaled by `1 / (1 − dropout)`, with one mask per sample shared
    by all time steps and gates (Gal & Ghahramani 2016), as Keras does.

    PyTorch equivalent: `torch.nn.LSTM(features, units, batch_first=True)`
    with `bias_hh_l0` fixed at zero, taking `output` (`return_sequences`) or
    `output[:, -1]`.

    Args:
        units: Size of the state and of the output, > 0.
        use_bias: Whether to add a bias vector. Defaults to `True`.
        kernel_initializer: Initializer of `weight_ih`. Defaults to `"glorot_uniform"`.
        recurrent_initializer: Initializer of `weight_hh`. Defaults to `"orthogonal"`.
        bias_initializer: Initializer of `bias` (but its forget block with
            `unit_forget_bias`). Defaults to `"zeros"`.
        unit_forget_bias: Whether the forget gate's bias starts at 1. Defaults to `True`.
        kernel_regularizer: Penalty on `weight_ih` added to the loss. Defaults to `None`.
        recurrent_regularizer: Penalty on `weight_hh` added to the loss. Defaults to `None`.
        bias_regularizer: Penalty on `bias` added to the loss. Defaults to `None`.
        kernel_constraint: Projection of `weight_ih` after each step, with Keras's
            axes. Defaults to `None`.
        recurrent_constraint: Projection of `weight_hh` after each step, with
            Keras's axes. Defaults to `None`.
        bias_constraint: Projection of `bias` after each step. Defaults to `None`.
        dropout: Fraction of the input features dropped in training, in [0, 1).
            Defaults to `0.0`.
        return_sequences: Whether to output every step's state, not only the
            last one. Defaults to `False`.
    """

    gates = 4
    recipe_name = "lstm"

    def __init__(
        self,
        units: Annotated[int, Field(gt=0)],
        use_bias: bool = True,
        kernel_initializer: InitializerSpec = "glorot_uniform",
        recurrent_initializer: InitializerSpec = "orthogonal",
        bias_initializer: InitializerSpec = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: RegularizerSpec | None = None,
        recurrent_regularizer: RegularizerSpec | None = None,
        bias_regularizer: RegularizerSpec | None = None,
        kernel_constraint: ConstraintSpec | None = None,
        recurrent_constraint: ConstraintSpec | None = None,
        bias_constraint: ConstraintSpec | None = None,
        dropout: Rate = 0.0,
        return_sequences: bool = False,
    ) -> None:
        super().__init__(
            units=units, use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
            dropout=dropout, return_sequences=return_sequences,
        )
        self.unit_forget_bias = unit_forget_bias

    def _initial_bias(self) -> torch.Tensor:
        if not self.unit_forget_bias:
            return super()._initial_bias()
        # Keras draws the input block and the (cell, output) blocks as two separate
        # tensors, which matters to initializers that depend on the shape.
        return torch.cat([
            self.bias_initializer(torch.empty(self.units)),
            torch.ones(self.units),
            self.bias_initializer(torch.empty(2 * self.units)),
        ])

    def _scan(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, last, _ = torch.lstm(
            x, (h0, torch.zeros_like(h0)), self._fused_weights(), self.use_bias,
            1, 0.0, _keep_for_backward(), False, True,
        )
        return outputs, last[0]


@layers.register(
    "gru",
    description="Gated recurrent unit layer: update and reset gates, reset after the matmul.",
    reference="Cho et al. 2014",
    keras_name="GRU",
)
class GRU(_Recurrent):
    """Gated recurrent unit layer (Cho et al. 2014; Keras `GRU`, `reset_after=True`).

    From `h_0 = 0`, for each time step `t` (σ the logistic sigmoid, `W_·` the
    gate blocks of `weight_ih`, `U_·` those of `weight_hh`, `b_·` of the input
    bias `bias[0]`, `b'_·` of the recurrent bias `bias[1]`):

        r_t = σ(W_r · x_t + b_r + U_r · h_{t−1} + b'_r)          reset gate
        z_t = σ(W_z · x_t + b_z + U_z · h_{t−1} + b'_z)          update gate
        n_t = tanh(W_n · x_t + b_n + r_t ⊙ (U_n · h_{t−1} + b'_n))
        h_t = z_t ⊙ h_{t−1} + (1 − z_t) ⊙ n_t

    The reset gate applies after the recurrent matrix product, Keras's default
    `reset_after=True` (the variant cuDNN implements), which needs the second
    bias. The output is every `h_t`, `(timesteps, units)` per sample, with
    `return_sequences`, else the last one, `(units,)`.

    Weights: `weight_ih` `(3·units, features)` and `weight_hh` `(3·units, units)`
    are Keras's `kernel` and `recurrent_kernel` transposed; `bias` `(2, 3·units)`
    is Keras's bias, row 0 the input bias and row 1 the recurrent one
    (PyTorch's `bias_ih_l0` and `bias_hh_l0`). `3 · units · (features + units + 2)`
    parameters, as in Keras. The gate blocks are in PyTorch's order r, z, n;
    Keras's is z, r, h (h is n), so Keras weights map here by swapping the first
    two blocks. Every initializer draws blocks independently or, for
    `orthogonal`, with a distribution that does not depend on their order, so
    the weights start as Keras's do.

    With `dropout`, in training, a fraction of the input features is zeroed
    and the rest scaled by `1 / (1 − dropout)`, with one mask per sample shared
    by all time steps and gates (Gal & Ghahramani 2016), as Keras does.

    PyTorch equivalent: `torch.nn.GRU(features, units, batch_first=True)`,
    taking `output` (`return_sequences`) or `output[:, -1]`.

    Args:
        units: Size of the state and of the output, > 0.
        use_bias: Whether to add the input and recurrent biases. Defaults to `True`.
        kernel_initializer: Initializer of `weight_ih`. Defaults to `"glorot_uniform"`.
        recurrent_initializer: Initializer of `weight_hh`. Defaults to `"orthogonal"`.
        bias_initializer: Initializer of `bias`, drawn as one `(2, 3·units)` tensor
            as in Keras. Defaults to `"zeros"`.
        kernel_regularizer: Penalty on `weight_ih` added to the loss. Defaults to `None`.
        recurrent_regularizer: Penalty on `weight_hh` added to the loss. Defaults to `None`.
        bias_regularizer: Penalty on `bias` added to the loss. Defaults to `None`.
        kernel_constraint: Projection of `weight_ih` after each step, with Keras's
            axes. Defaults to `None`.
        recurrent_constraint: Projection of `weight_hh` after each step, with
            Keras's axes. Defaults to `None`.
        bias_constraint: Projection of `bias` `(2, 3·units)` after each step, with
            Keras's axes (`axis=0` bounds each unit's input and recurrent bias
            together). Defaults to `None`.
        dropout: Fraction of the input features dropped in training, in [0, 1).
            Defaults to `0.0`.
        return_sequences: Whether to output every step's state, not only the
            last one. Defaults to `False`.
    """

    gates = 3
    recipe_name = "gru"

    def __init__(
        self,
        units: Annotated[int, Field(gt=0)],
        use_bias: bool = True,
        kernel_initializer: InitializerSpec = "glorot_uniform",
        recurrent_initializer: InitializerSpec = "orthogonal",
        bias_initializer: InitializerSpec = "zeros",
        kernel_regularizer: RegularizerSpec | None = None,
        recurrent_regularizer: RegularizerSpec | None = None,
        bias_regularizer: RegularizerSpec | None = None,
        kernel_constraint: ConstraintSpec | None = None,
        recurrent_constraint: ConstraintSpec | None = None,
        bias_constraint: ConstraintSpec | None = None,
        dropout: Rate = 0.0,
        return_sequences: bool = False,
    ) -> None:
        super().__init__(
            units=units, use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
            dropout=dropout, return_sequences=return_sequences,
        )

    def _initial_bias(self) -> torch.Tensor:
        # Initializers read PyTorch layouts, `(out, in)`: Keras's `(2, 3·units)` is
        # drawn as its transpose so that fans (and orthogonality) come out as Keras's.
        return self.bias_initializer(torch.empty(self.gates * self.units, 2)).T.contiguous()

    def _fused_weights(self) -> list[torch.Tensor]:
        if self.bias is None:
            return [self.weight_ih, self.weight_hh]
        return [self.weight_ih, self.weight_hh, self.bias[0], self.bias[1]]

    def _scan(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, last = torch.gru(
            x, h0, self._fused_weights(), self.use_bias,
            1, 0.0, _keep_for_backward(), False, True,
        )
        return outputs, last[0]
