"""Data augmentation on batches of image tensors, in the training step (no torchvision).

Each augmentation is a registered, configurable transform of a batch of
images, `[N, height, width]` (grey) or `[N, height, width, channels]`
(channels last, as Keras lays images out), drawing its randomness from the
`torch.Generator` it is given, so a run's augmentations are reproducible from
its seed. A recipe lists them under `data.augment`; the trainer applies them
to each training batch only, never at evaluation, as Keras's preprocessing
layers act in training only. Every transform is vectorised over the batch.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from tricklab.config import Configurable, validate_config
from tricklab.registry import Registry

Fraction = Annotated[float, Field(ge=0, le=1)]
"""A share of the image size or a probability, in [0, 1]."""


class Augmentation(Configurable, ABC):
    """Base class: a random transform of a batch of images (Keras preprocessing layer)."""

    def __init__(self) -> None:
        validate_config(type(self), self._config, type(self).__name__)

    @abstractmethod
    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Return a transformed copy of `images` (`[N, H, W]` or `[N, H, W, C]`).

        Args:
            images: The batch; it is not modified.
            generator: Source of every random draw.
        """

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self._config.items())
        return f"{type(self).__name__}({arguments})"


augmentations: Registry[Augmentation] = Registry("augmentation", base=Augmentation)


def _uniform(count: int, low: float, high: float, like: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor:
    """`count` draws from U(low, high), made on the CPU generator, then moved to `like`'s device."""
    draws = torch.rand(count, generator=generator, dtype=torch.float64)
    return (low + (high - low) * draws).to(like.device)


def _planes(images: torch.Tensor) -> torch.Tensor:
    """`[N, H, W]` or channels-last `[N, H, W, C]` as `[N, C, H, W]`, what `grid_sample` takes."""
    return images[:, None] if images.ndim == 3 else images.permute(0, 3, 1, 2)


def _unplanes(planes: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return planes[:, 0] if like.ndim == 3 else planes.permute(0, 2, 3, 1)


@augmentations.register(
    "random_flip",
    description="Mirror each image with probability 1/2, left-right and/or up-down.",
    keras_name="RandomFlip",
)
class RandomFlip(Augmentation):
    """Flip each image with probability 1/2 along each chosen axis (Keras `RandomFlip`).

    Args:
        mode: `horizontal` (left-right), `vertical` (up-down) or
            `horizontal_and_vertical` (each decided independently).
            Defaults to `"horizontal"`.
    """

    def __init__(
        self, mode: Literal["horizontal", "vertical", "horizontal_and_vertical"] = "horizontal"
    ) -> None:
        self.mode = mode
        super().__init__()

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # Width and height are the second and first axes after the batch one.
        axes = {"horizontal": [2], "vertical": [1], "horizontal_and_vertical": [1, 2]}[self.mode]
        result = images
        for axis in axes:
            flip = _uniform(len(images), 0, 1, images, generator) < 0.5
            shape = (-1,) + (1,) * (images.ndim - 1)
            result = torch.where(flip.view(shape), result.flip(axis), result)
        return result


@augmentations.register(
    "random_translation",
    description="Shift each image by a random whole number of pixels, filling with a constant.",
    keras_name="RandomTranslation",
)
class RandomTranslation(Augmentation):
    """Shift each image by whole pixels, up to a share of its size (Keras `RandomTranslation`).

    Each image moves by `dy ~ U{-round(height_factor·H) .. +round(height_factor·H)}`
    rows and likewise `dx` columns; pixels shifted in take `fill_value`. This is
    the padding-and-cropping augmentation of small-image classifiers; Keras
    also allows sub-pixel shifts with interpolation, tricklab keeps whole pixels.

    Args:
        height_factor: Largest vertical shift as a share of the height, in [0, 1].
            Defaults to `0.1`.
        width_factor: Largest horizontal shift as a share of the width, in [0, 1].
            Defaults to `0.1`.
        fill_value: Value of the pixels shifted in. Defaults to `0.0`.
    """

    def __init__(
        self, height_factor: Fraction = 0.1, width_factor: Fraction = 0.1, fill_value: float = 0.0
    ) -> None:
        self.height_factor = height_factor
        self.width_factor = width_factor
        self.fill_value = fill_value
        super().__init__()

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        count, height, width = images.shape[:3]
        reach_y, reach_x = round(self.height_factor * height), round(self.width_factor * width)
        dy = torch.randint(-reach_y, reach_y + 1, (count,), generator=generator).to(images.device)
        dx = torch.randint(-reach_x, reach_x + 1, (count,), generator=generator).to(images.device)
        rows = torch.arange(height, device=images.device)[None, :] - dy[:, None]
        columns = torch.arange(width, device=images.device)[None, :] - dx[:, None]
        rows_inside = (rows >= 0) & (rows < height)
        columns_inside = (columns >= 0) & (columns < width)
        inside = rows_inside[:, :, None] & columns_inside[:, None, :]
        batch = torch.arange(count, device=images.device)[:, None, None]
        shifted = images[batch, rows.clamp(0, height - 1)[:, :, None],
                         columns.clamp(0, width - 1)[:, None, :]]
        if images.ndim == 4:
            inside = inside[..., None]
        return torch.where(inside, shifted, torch.full_like(shifted, self.fill_value))


@augmentations.register(
    "random_rotation",
    description="Rotate each image by a random angle, bilinear, filling with a constant.",
    keras_name="RandomRotation",
)
class RandomRotation(Augmentation):
    """Rotate each image about its centre by `θ ~ U(-factor, factor)·2π` (Keras `RandomRotation`).

    Bilinear interpolation; pixels rotated in from outside take `fill_value`
    (Keras's `fill_mode="constant"`).

    Args:
        factor: Largest rotation as a share of a full turn, in [0, 1]; `0.05` is ±18°.
            Defaults to `0.05`.
        fill_value: Value of the pixels rotated in. Defaults to `0.0`.
    """

    def __init__(self, factor: Fraction = 0.05, fill_value: float = 0.0) -> None:
        self.factor = factor
        self.fill_value = fill_value
        super().__init__()

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        angles = _uniform(len(images), -self.factor, self.factor, images, generator) * 2 * math.pi
        cos, sin = angles.cos().to(images.dtype), angles.sin().to(images.dtype)
        zero = torch.zeros_like(cos)
        # affine_grid maps output to input coordinates in [-1, 1]: the inverse rotation.
        theta = torch.stack(
            [torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1
        )
        planes = _planes(images)
        grid = F.affine_grid(theta, list(planes.shape), align_corners=False)
        # Shifting by the fill value makes grid_sample's zero padding a padding with it.
        rotated = F.grid_sample(planes - self.fill_value, grid, mode="bilinear",
                                padding_mode="zeros", align_corners=False) + self.fill_value
        return _unplanes(rotated, images)


@augmentations.register(
    "random_erasing",
    description="Blank a random rectangle of each image with some probability.",
    reference="Zhong et al. 2017, Random Erasing Data Augmentation, arXiv:1708.04896",
)
class RandomErasing(Augmentation):
    """Random erasing (Zhong et al. 2017): with some probability, blank a rectangle.

    The rectangle's area is `U(scale)` of the image's and its aspect ratio
    `h / w` is log-uniform in `ratio`; it is clipped to the image. Keras has no
    such layer.

    Args:
        probability: Chance that an image gets a rectangle, in [0, 1]. Defaults to `0.5`.
        scale: Smallest and largest area, as shares of the image. Defaults to `(0.02, 0.33)`.
        ratio: Smallest and largest aspect ratio. Defaults to `(0.3, 3.3)`.
        value: Value of the erased pixels. Defaults to `0.0`.
    """

    def __init__(
        self,
        probability: Fraction = 0.5,
        scale: tuple[Fraction, Fraction] = (0.02, 0.33),
        ratio: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (0.3, 3.3),
        value: float = 0.0,
    ) -> None:
        self.probability = probability
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.value = value
        super().__init__()

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        count, height, width = images.shape[:3]
        applied = _uniform(count, 0, 1, images, generator) < self.probability
        area = _uniform(count, *self.scale, images, generator) * height * width
        log_ratio = _uniform(count, math.log(self.ratio[0]), math.log(self.ratio[1]), images,
                             generator)
        box_h = (area * log_ratio.exp()).sqrt().round().clamp(1, height)
        box_w = (area / log_ratio.exp()).sqrt().round().clamp(1, width)
        top = (_uniform(count, 0, 1, images, generator) * (height - box_h + 1)).floor()
        left = (_uniform(count, 0, 1, images, generator) * (width - box_w + 1)).floor()
        rows = torch.arange(height, device=images.device, dtype=torch.float64)[None, :]
        columns = torch.arange(width, device=images.device, dtype=torch.float64)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
        in_columns = (columns >= left[:, None]) & (columns < (left + box_w)[:, None])
        erase = in_rows[:, :, None] & in_columns[:, None, :] & applied[:, None, None]
        if images.ndim == 4:
            erase = erase[..., None]
        return images.masked_fill(erase, self.value)


@augmentations.register(
    "gaussian_noise",
    description="Add zero-mean Gaussian noise to every pixel (denoising autoencoders).",
    keras_name="GaussianNoise",
)
class GaussianNoise(Augmentation):
    """Add `N(0, stddev²)` noise to every pixel, in training only (Keras `GaussianNoise`).

    Args:
        stddev: Standard deviation of the noise, >= 0. Defaults to `0.1`.
    """

    def __init__(self, stddev: Annotated[float, Field(ge=0)] = 0.1) -> None:
        self.stddev = stddev
        super().__init__()

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
        return images + self.stddev * noise.to(images.device)


class Pipeline:
    """Augmentations applied in order; what a trainer calls on each training batch.

    Args:
        steps: Augmentation instances, names or `{name: config}` mappings.
    """

    def __init__(self, steps: Sequence[str | dict | Augmentation]) -> None:
        self.steps = [augmentations.get(step, "data.augment") for step in steps]

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in self.steps:
            images = step(images, generator)
        return images

    def __bool__(self) -> bool:
        return bool(self.steps)
