"""An autoencoder's reconstructions under the images they came from."""

from __future__ import annotations

from pathlib import Path

import torch

from tricklab.report.figure import plt, save_png


def plot_reconstructions(
    originals: torch.Tensor, reconstructions: torch.Tensor, path: str | Path, title: str = ""
) -> Path:
    """Draw each image (top row) above its reconstruction (bottom row), then write a PNG.

    The book's `show_reconstructions`: grey images on a shared 0-1 scale
    (values outside it are clipped), so a washed-out or blurry reconstruction
    looks as it is.

    Args:
        originals: Images, `[N, height, width]`, `[N, height * width]` (square) or
            channels-last `[N, height, width, 1 or 3]`.
        reconstructions: The model's outputs for them, any shape with the same
            number of values per image.
        path: Where to write the PNG (atomically).
        title: Figure title, e.g. the run name. Defaults to `""`.

    Raises:
        ValueError: When an image is neither 2-D, channels-last with 1 or 3
            channels, nor a square number of pixels, or
            the two tensors do not hold the same number of values per image.
    """
    count = originals.shape[0]
    pixels = originals[0].numel()
    if originals.ndim == 4 and originals.shape[-1] in (1, 3):
        # Channels-last images: one channel is shown grey, three as colour.
        shape = tuple(originals.shape[1:3]) + ((3,) if originals.shape[-1] == 3 else ())
    elif originals.ndim == 3:
        shape = tuple(originals.shape[1:])
    elif originals.ndim == 2 and round(pixels**0.5) ** 2 == pixels:
        shape = (round(pixels**0.5),) * 2
    else:
        raise ValueError(f"cannot show images of shape {tuple(originals.shape[1:])}")
    if reconstructions.shape[0] != count or reconstructions[0].numel() != pixels:
        raise ValueError(
            f"{tuple(reconstructions.shape)} reconstructions do not match "
            f"{tuple(originals.shape)} images"
        )
    figure, axes = plt.subplots(2, count, figsize=(1.2 * count, 2.8), squeeze=False)
    rows = (originals.detach().cpu(), reconstructions.detach().cpu())
    for row, (images, label) in enumerate(zip(rows, ("input", "reconstruction"), strict=True)):
        for column in range(count):
            axis = axes[row][column]
            axis.imshow(images[column].reshape(shape).float().clamp(0, 1).numpy(), cmap="binary",
                        vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row][0].set_ylabel(label)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save_png(figure, path)
