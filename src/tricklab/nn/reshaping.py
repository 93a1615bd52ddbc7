"""Reshape each sample, with Keras's channels-last semantics for images."""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import AfterValidator, Field

from tricklab.checks import valid_target_shape
from tricklab.errors import UserInputError
from tricklab.nn.base import Layer, Shape, channels_first, channels_last, is_image, layers

TargetShape = Annotated[list[int], Field(min_length=1), AfterValidator(valid_target_shape)]
"""A per-sample shape of positive sizes, at most one of them `-1`."""


@layers.register(
    "reshape",
    description="Reshape each sample to target_shape (one size may be -1, inferred).",
    keras_name="Reshape",
)
class Reshape(Layer):
    """Reshape each sample to `target_shape`, the batch axis untouched (Keras `Reshape`).

    Values are read and written in Keras's channels-last order: an image input
    is taken as `(height, width, channels)` and an image output is filled as
    one, whatever layout the model holds inside, so a recipe means what the
    same Keras code means. A size of `-1` is inferred from the others.

    The result is a view of the input whenever the held layouts allow it: always
    between non-image shapes, and between images with the same channel count.

    PyTorch equivalent: `x.reshape(len(x), *target_shape)` on channels-last arrays.

    Args:
        target_shape: Per-sample output shape, without the batch dimension;
            at most one size may be `-1`.
    """

    def __init__(
        self,
        target_shape: TargetShape,
    ) -> None:
        super().__init__()
        self.target_shape = list(target_shape)

    def build(self, input_shape: Shape) -> None:
        """Check that `target_shape` holds as many values as `input_shape`.

        Args:
            input_shape: Shape of one input sample, without the batch dimension.

        Raises:
            UserInputError: When the value counts cannot match.
        """
        self._output_shape = self.compute_output_shape(input_shape)
        self._image_input = is_image(input_shape)
        self._image_output = is_image(self._output_shape)
        # (H, W, C) -> (H', W', C): pairing each position with its C values in
        # channels-last order regroups only the positions, so the held
        # (C, H, W) becomes (C, H', W') without moving any value.
        self._same_channels = (
            self._image_input and self._image_output and input_shape[-1] == self._output_shape[-1]
        )
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return `target_shape` with its `-1` inferred.

        Args:
            input_shape: Shape of one input sample, without the batch dimension.

        Raises:
            UserInputError: When the value counts cannot match.
        """
        values = math.prod(input_shape)
        known = math.prod(size for size in self.target_shape if size != -1)
        if -1 in self.target_shape:
            if values % known:
                raise UserInputError(
                    f"target_shape {self.target_shape} cannot hold the input shape "
                    f"{tuple(input_shape)}: {values} values are not a multiple of {known}"
                )
            return tuple(values // known if size == -1 else size for size in self.target_shape)
        if values != known:
            raise UserInputError(
                f"target_shape {self.target_shape} holds {known} values but the input "
                f"shape {tuple(input_shape)} has {values}"
            )
        return tuple(self.target_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._same_channels:
            return x.reshape(x.shape[0], x.shape[1], *self._output_shape[:-1])
        y = (channels_last(x) if self._image_input else x).reshape(x.shape[0], *self._output_shape)
        return channels_first(y) if self._image_output else y
