"""Keras's `model.summary()`: its rows, its table, and the rows worked out without PyTorch.

`tricklab.nn.summarize` reads the rows off a built model; `summarize_layers`
works them out from a resolved layer list (as `tricklab.nn.resolve_layers`
gives it) with the rules of `tricklab.layer_shapes`, one per layer, so that
`tricklab summary` answers without importing PyTorch. Both print through
`format_summary_table`. Where a rule is unsure, `summarize_layers` returns
`None`: the caller then builds the model, which gives the exact answer or the
exact error. This module imports no layer package (docs/DESIGN.md, "Layers of
the house"), so `tricklab.nn` can use it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from tricklab.layer_shapes import Shape, Unsure, entry_output, row_stem
from tricklab.memory import MEMORY_LIMIT_VARIABLE, host_available_memory


class ParamCounts(NamedTuple):
    """Parameter totals as Keras reports them."""

    total: int
    trainable: int
    non_trainable: int


@dataclass(frozen=True)
class LayerSummary:
    """One row of a model summary.

    Args:
        name: Keras-style name, e.g. `dense_1`.
        type: Class name, e.g. `Dense`.
        output_shape: Per-sample output shape.
        params: Number of parameters, moving statistics included.
        trainable: Whether the layer trains.
    """

    name: str
    type: str
    output_shape: Shape
    params: int
    trainable: bool


@dataclass(frozen=True)
class ModelSummary:
    """A model's summary: its shapes, one row per layer and the parameter totals.

    Args:
        input_shape: Per-sample input shape.
        output_shape: Per-sample output shape.
        rows: One row per layer, in order.
        params: The model's totals.
    """

    input_shape: Shape
    output_shape: Shape
    rows: tuple[LayerSummary, ...]
    params: ParamCounts


def format_summary_table(summary: ModelSummary) -> str:
    """Render a summary as a Keras-like text table with parameter totals.

    Args:
        summary: The rows and totals, from a built model or from `summarize_layers`.
    """
    header = ("Layer (type)", "Output Shape", "Param #", "Trainable")
    body = [
        (
            f"{row.name} ({row.type})",
            str((None, *row.output_shape)),
            f"{row.params:,}",
            "Y" if row.trainable else "N",
        )
        for row in summary.rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i == 2 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    total, trainable, non_trainable = summary.params
    return "\n".join(
        [
            f"Model: input {summary.input_shape} -> output {summary.output_shape}",
            rule,
            line(header),
            rule.replace("-", "="),
            *(line(cells) for cells in body),
            rule,
            f"Total params: {total:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {non_trainable:,}",
        ]
    )


def summarize_layers(
    input_shape: Sequence[int], layers: Sequence[Mapping[str, Any]]
) -> ModelSummary | None:
    """The summary of the model `build_model(input_shape, layers)` would build, without PyTorch.

    Rows are named as `summarize` names them: the registry name of the layer's
    class, then `_1`, `_2`, ... for the next layers of that class.

    Args:
        input_shape: Per-sample input shape, e.g. `[28, 28]`.
        layers: The resolved layer list, `[{name: config}, ...]` with every default
            filled in and `trainable: false` on a frozen entry.

    Returns:
        The rows and totals `summarize` and `count_params` give for the built model,
        or `None` when not sure: a layer without a rule, an unexpected value, a
        shape a layer would refuse, or a model the memory check might refuse.
    """
    sizes_ok = isinstance(input_shape, list | tuple) and len(input_shape) > 0 and all(
        isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in input_shape)
    if not (sizes_ok and isinstance(layers, Sequence) and len(layers) > 0):
        return None
    try:
        shape, rows, totals, seen = tuple(input_shape), [], ParamCounts(0, 0, 0), {}
        for entry in layers:
            type_name, built, trainable = entry_output(entry, shape)
            base = row_stem(type_name)
            count = seen.get(base, 0)
            seen[base] = count + 1
            shape = built.output_shape
            params = built.trainable + built.non_trainable
            rows.append(LayerSummary(base if count == 0 else f"{base}_{count}", type_name,
                                     shape, params, trainable))
            totals = ParamCounts(totals.total + params, totals.trainable + built.trainable,
                                 totals.non_trainable + built.non_trainable)
    except (Unsure, ArithmeticError):  # a size too large for a float's arithmetic, too
        return None
    summary = ModelSummary(tuple(input_shape), shape, tuple(rows), totals)
    return summary if _surely_fits(summary) else None


VALUE_BYTES = 4
"""Bytes per value of a model built in PyTorch's default dtype, float32."""


def _surely_fits(summary: ModelSummary) -> bool:
    """Whether `build_model`'s memory check surely lets the model through.

    That check (`tricklab.nn.footprint`) refuses a model whose weights, one
    sample's input and each layer's output, `4 · (params + Π input + Σ Π output)`
    bytes, exceed the available memory; this asks for twice that. A limit set in
    `TRICKLAB_MEMORY_LIMIT` is left to that check, which reads and words it.
    """
    if os.environ.get(MEMORY_LIMIT_VARIABLE, "").strip():
        return False
    available = host_available_memory()
    if available is None:
        return True  # the check refuses nothing when the machine cannot tell
    outputs = sum(math.prod(row.output_shape) for row in summary.rows)
    values = summary.params.total + math.prod(summary.input_shape) + outputs
    return 2 * VALUE_BYTES * values <= available


__all__ = ["LayerSummary", "ModelSummary", "ParamCounts", "format_summary_table",
           "summarize_layers"]
