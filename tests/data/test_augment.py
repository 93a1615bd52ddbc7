"""Augmentations: every registered one keeps shapes, is reproducible from its generator and
leaves its input alone; each one does what its formula says."""

from __future__ import annotations

import pytest
import torch

from tricklab.data.augment import Pipeline, augmentations
from tricklab.nn import build_model
from tricklab.train import Trainer


def draw(name: str, config: dict, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return augmentations.create(name, config)(images, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", augmentations.names())
@pytest.mark.parametrize("shape", [(16, 12, 10), (16, 12, 10, 3)])
def test_shapes_reproducibility_and_config(name, shape):
    images = torch.rand(shape)
    before = images.clone()
    first, again, other = (draw(name, {}, images, seed) for seed in (0, 0, 1))
    assert first.shape == images.shape and first.dtype == images.dtype
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(images, before)
    augmentation = augmentations.get(name)
    assert type(augmentation).from_config(augmentation.get_config()).get_config() == (
        augmentation.get_config())


def test_flip_mirrors_about_half_of_the_images():
    images = torch.rand(400, 5, 7)
    flipped = draw("random_flip", {}, images)
    same = (flipped == images).flatten(1).all(1)
    mirrored = (flipped == images.flip(2)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 150 < int(mirrored.sum()) < 250
    both = draw("random_flip", {"mode": "horizontal_and_vertical"}, images)
    assert bool((both == images.flip(1)).flatten(1).all(1).any())


def test_translation_shifts_by_whole_pixels_and_fills():
    images = torch.rand(50, 10, 10) + 1  # no pixel equals the fill value
    shifted = draw("random_translation", {"height_factor": 0.2, "width_factor": 0.2,
                                          "fill_value": -1.0}, images)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), value=-1.0)
    for original, result in zip(padded, shifted, strict=True):
        # Some shift of the padded image within ±2 pixels reproduces the result exactly.
        assert any(torch.equal(original[2 - dy : 12 - dy, 2 - dx : 12 - dx], result)
                   for dy in range(-2, 3) for dx in range(-2, 3))
    assert torch.equal(draw("random_translation", {"height_factor": 0, "width_factor": 0},
                            images), images)


def test_rotation_is_the_identity_at_zero_and_fills_the_corners():
    images = torch.rand(8, 9, 9)
    assert torch.allclose(draw("random_rotation", {"factor": 0.0}, images), images, atol=1e-6)
    rotated = draw("random_rotation", {"factor": 0.12, "fill_value": 5.0}, torch.zeros(64, 9, 9))
    corners = rotated[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert bool((corners > 0).any(1).all())  # every angle but 0 brings in the fill value
    centre = rotated[:, 4, 4]
    assert torch.allclose(centre, torch.zeros_like(centre))  # the centre stays in the image


def test_erasing_blanks_one_rectangle_of_the_stated_area():
    images = torch.rand(200, 20, 20) + 1
    erased = draw("random_erasing", {"probability": 1.0, "scale": (0.1, 0.2), "value": 0.0},
                  images)
    for mask in erased == 0:
        rows, columns = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        height, width = len(rows), len(columns)
        assert int(mask.sum()) == height * width  # a filled rectangle
        assert rows.max() - rows.min() + 1 == height and columns.max() - columns.min() + 1 == width
        assert 0.1 * 400 * 0.75 <= height * width <= 0.2 * 400 * 1.35  # rounding of the sides
    none = draw("random_erasing", {"probability": 0.0}, images)
    assert torch.equal(none, images)


def test_gaussian_noise_has_the_stated_moments():
    images = torch.zeros(100, 100, 100)
    noise = draw("gaussian_noise", {"stddev": 0.3}, images)
    assert abs(float(noise.mean())) < 0.003
    assert float(noise.std()) == pytest.approx(0.3, rel=0.02)


def test_the_trainer_augments_training_batches_only():
    torch.manual_seed(0)
    x, y = torch.rand(64, 6, 6), torch.randint(0, 3, (64,))
    model = build_model([6, 6], ["flatten", {"dense": {"units": 3, "activation": "softmax"}}])
    seen = []

    def record(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seen.append(images)
        return Pipeline(["gaussian_noise"])(images, generator)

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), progress="none",
                      augment=record)
    trainer.fit(x, y, epochs=1, batch_size=16, validation_data=(x, y))
    assert len(seen) == 4  # four training batches; validation is not augmented
    plain = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), progress="none")
    assert trainer.evaluate(x, y) == plain.evaluate(x, y)


def test_augmented_training_never_caches_features():
    torch.manual_seed(0)
    model = build_model([6, 6], ["flatten", {"dense": {"units": 4, "trainable": False}},
                                 {"dense": {"units": 3, "activation": "softmax"}}])
    parameters = [p for p in model.parameters() if p.requires_grad]
    trainer = Trainer(model, torch.optim.SGD(parameters, lr=0.1), progress="none",
                      augment=Pipeline(["random_flip"]))
    result = trainer.fit(torch.rand(32, 6, 6), torch.randint(0, 3, (32,)), epochs=1)
    assert result.cached_layers == 0
