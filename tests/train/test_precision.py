"""Precision (fp32, bf16 autocast, fp16 autocast with loss scaling) and the device path.

bf16 and fp16 autocast run on the CPU too, so these tests run everywhere; the
CUDA-only ones skip cleanly without a GPU.
"""

from __future__ import annotations

import pytest
import torch
from tests.conftest import TINY_RECIPE

from tricklab.errors import UserInputError
from tricklab.recipe import recipe_from_dict
from tricklab.run import build
from tricklab.train import Trainer

from .conftest import blobs, make_model

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _trainer(precision: str, seed: int = 0, **kwargs) -> Trainer:
    model = make_model(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return Trainer(model, optimizer, metrics=["accuracy"], seed=seed, progress="none",
                   precision=precision, **kwargs)


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16),
                                                  ("fp16", torch.float16)])
def test_autocast_runs_the_forward_pass_in_reduced_precision_and_keeps_weights_float32(
    precision, dtype
):
    x, y = blobs(samples=64)
    reduced, full = _trainer(precision), _trainer("fp32")
    loss, output, _ = reduced.compute_gradients(x[:32], y[:32])
    reference_loss, reference_output, _ = full.compute_gradients(x[:32], y[:32])
    assert output.dtype == dtype and reference_output.dtype == torch.float32
    assert loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
               for p in reduced.model.parameters())
    # Same weights, same batch: the loss differs only by rounding (bf16 keeps 8 mantissa bits).
    assert float(loss) == pytest.approx(float(reference_loss), rel=3e-2)
    gradients = zip(reduced.model.parameters(), full.model.parameters(), strict=True)
    for low, high in gradients:
        assert torch.allclose(low.grad, high.grad, rtol=0.1, atol=2e-2)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_learns_as_fp32_does(precision):
    x, y = blobs(samples=300)
    results = {}
    for name in (precision, "fp32"):
        trainer = _trainer(name)
        history = trainer.fit(x, y, epochs=4, batch_size=32).history
        results[name] = (history, trainer.evaluate(x, y))
    history, scores = results[precision]
    assert history["loss"][-1] < history["loss"][0] / 2
    assert scores["accuracy"] == pytest.approx(results["fp32"][1]["accuracy"], abs=0.02)


def test_fp16_skips_a_step_whose_gradients_overflow_and_lowers_the_scale():
    x, y = blobs(samples=32)
    trainer = _trainer("fp16")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    # 1e5 overflows float16 (largest finite value 65504) in the first layer's output.
    result = trainer.fit(x * 1e5, y, epochs=1, batch_size=32)
    assert result.status == "diverged"
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    assert trainer.optimizer.state_dict()["state"] == {}  # no step, so no momentum either
    # GradScaler's initial scale 2**16, halved by the overflow.
    assert trainer._scaler.get_scale() == 2.0**15


def test_fp16_resume_restores_the_loss_scale_and_gives_identical_weights(tmp_path):
    x, y = blobs(samples=200)
    whole = _trainer("fp16")
    whole.fit(x, y, epochs=2, batch_size=32)
    first = _trainer("fp16", checkpoint_dir=tmp_path)
    first.fit(x, y, epochs=1, batch_size=32)
    resumed = _trainer("fp16", checkpoint_dir=tmp_path)
    resumed.fit(x, y, epochs=2, batch_size=32, resume=True)
    assert resumed._scaler.get_scale() == whole._scaler.get_scale()
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be fp32, bf16 or fp16"):
        _trainer("fp8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_names_the_field():
    recipe = recipe_from_dict({**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "device": "cuda"}})
    with pytest.raises(UserInputError, match=r"^train\.device: cuda, but this machine has no CUDA"):
        build(recipe)


@cuda
def test_training_on_cuda_moves_the_data_once_and_predicts_on_the_host():
    x, y = blobs(samples=300)
    model = make_model().cuda()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), metrics=["accuracy"],
                      progress="none", precision="bf16")
    seen = []
    original = trainer.compute_gradients
    trainer.compute_gradients = lambda bx, by: seen.append(bx.device.type) or original(bx, by)
    trainer.fit(x, y, epochs=2, batch_size=32)
    assert set(seen) == {"cuda"}
    assert trainer.evaluate(x, y)["accuracy"] > 0.9
    assert trainer.predict(x).device.type == "cpu"
