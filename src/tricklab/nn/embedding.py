"""The embedding layer: integer token ids to learned dense vectors, Keras style."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from tricklab.nn.base import (
    Layer,
    Projection,
    Shape,
    channels_first,
    channels_last,
    is_image,
    layers,
)
from tricklab.nn.constraints import ConstraintSpec, constraints
from tricklab.nn.initializers import InitializerSpec, initializers
from tricklab.nn.regularizers import Regularizer, RegularizerSpec, regularizers


@layers.register(
    "embedding",
    description="Look up a learned vector for each integer token id.",
    reference="Bengio et al. 2003",
    keras_name="Embedding",
)
class Embedding(Layer):
    """Map integer ids to learned vectors (Bengio et al. 2003; Keras `Embedding`).

    `y[..., :] = embeddings[x[...], :]` for ids in `[0, input_dim)`: a per-sample
    input shape `s` gives `(*s, output_dim)`. Ids may come as a float tensor (as
    a dataset of numbers holds them); they are truncated to integers with
    `.long()`, as Keras casts them. An id outside `[0, input_dim)` is an error,
    raised by PyTorch.

    The table `embeddings` `(input_dim, output_dim)` has Keras's layout, so
    constraints use Keras's axes as they are. Initializers see it as Keras
    does: `fan_in = input_dim`, `fan_out = output_dim`.

    Keras's `mask_zero` (a padding mask for the following layers), `sparse` and
    `lora_rank` are not supported.

    PyTorch equivalent: `torch.nn.Embedding(input_dim, output_dim)` with its
    weight filled by `torch.nn.init.uniform_(w, -0.05, 0.05)`, applied to
    `x.long()`.

    Args:
        input_dim: Number of distinct ids (vocabulary size), > 0.
        output_dim: Size of each vector, > 0.
        embeddings_initializer: Initializer of `embeddings`; Keras's `"uniform"`,
            U[-0.05, 0.05]. Defaults to `"random_uniform"` (its bounds default to
            `minval=-0.05`, `maxval=0.05`).
        embeddings_regularizer: Penalty on `embeddings` added to the loss.
            Defaults to `None`.
        embeddings_constraint: Projection of `embeddings` after each step, with
            Keras's axes. Defaults to `None`.
    """

    def __init__(
        self,
        input_dim: Annotated[int, Field(gt=0)],
        output_dim: Annotated[int, Field(gt=0)],
        embeddings_initializer: InitializerSpec = "random_uniform",
        embeddings_regularizer: RegularizerSpec | None = None,
        embeddings_constraint: ConstraintSpec | None = None,
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.embeddings_initializer = initializers.get(
            embeddings_initializer, "Embedding.embeddings_initializer"
        )
        self.embeddings_regularizer = (
            None
            if embeddings_regularizer is None
            else regularizers.get(embeddings_regularizer, "Embedding.embeddings_regularizer")
        )
        self.embeddings_constraint = (
            None
            if embeddings_constraint is None
            else constraints.get(embeddings_constraint, "Embedding.embeddings_constraint")
        )
        self._projections: dict[str, Projection] = {}

    def build(self, input_shape: Shape) -> None:
        """Create `embeddings` `(input_dim, output_dim)`.

        Args:
            input_shape: Shape of one input sample (of ids), without the batch dimension.
        """
        # Initializers read PyTorch layouts, `(out, in)`: the table is drawn as its
        # transpose so that the fans are Keras's, `fan_in = input_dim`.
        table = self.embeddings_initializer(torch.empty(self.output_dim, self.input_dim))
        self.embeddings = nn.Parameter(table.T.contiguous())
        if self.embeddings_constraint is not None:
            self._projections = {
                "embeddings": self.embeddings_constraint.bind(
                    self.embeddings.ndim, None, "Embedding.embeddings_constraint"
                )
            }
        # Images are held channels-first inside a model (see `is_image`): ids of
        # shape (h, w, c) arrive as (c, h, w), and vectors for ids of shape (h, w)
        # form an image (h, w, output_dim) that must leave as (output_dim, h, w).
        self._image_input = is_image(input_shape)
        self._image_output = is_image(self.compute_output_shape(input_shape))
        super().build(input_shape)

    def weight_regularizers(self) -> dict[str, Regularizer]:
        """`embeddings` mapped to `embeddings_regularizer`, where set."""
        if self.embeddings_regularizer is None:
            return {}
        return {"embeddings": self.embeddings_regularizer}

    def weight_constraints(self) -> dict[str, Projection]:
        """`embeddings` mapped to `embeddings_constraint`, bound at build, where set."""
        return dict(self._projections)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape, self.output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._image_input:
            x = channels_last(x)
        y = F.embedding(x.long(), self.embeddings)
        return channels_first(y) if self._image_output else y
