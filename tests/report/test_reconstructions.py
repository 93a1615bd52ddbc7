"""The reconstructions plot: a valid PNG, and clear errors for images it cannot show."""

from __future__ import annotations

import pytest
import torch

from tricklab.report.reconstructions import plot_reconstructions


@pytest.mark.parametrize("shape", [(5, 28, 28), (5, 784), (5, 28, 28, 1), (5, 8, 8, 3)])
def test_writes_a_png(tmp_path, shape):
    images = torch.rand(shape)
    path = plot_reconstructions(images, images.reshape(5, -1) * 0.5, tmp_path / "r.png", "ae")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("originals", "outputs", "message"),
    [(torch.rand(3, 10), torch.rand(3, 10), r"cannot show images of shape \(10,\)"),
     (torch.rand(3, 4, 4, 2), torch.rand(3, 32), r"cannot show images of shape \(4, 4, 2\)"),
     (torch.rand(3, 4, 4), torch.rand(3, 15), r"do not match"),
     (torch.rand(3, 4, 4), torch.rand(2, 16), r"do not match")],
)
def test_refuses_what_it_cannot_show(tmp_path, originals, outputs, message):
    with pytest.raises(ValueError, match=message):
        plot_reconstructions(originals, outputs, tmp_path / "r.png")
    assert not (tmp_path / "r.png").exists()
