"""Save + load round trip of the chapter notebook's model (target < 0.5 s), same predictions.

The 784-300-100-10 Leaky ReLU network with its SGD optimizer is saved with
`tricklab.save_model` (model.json, weights.safetensors, optimizer state) and
loaded back with `tricklab.load_model`, five times; the median is printed, and
the loaded model's eval-mode predictions on the 10,000 test images are compared
with the original's bit for bit.

Run: `.venv/bin/python benchmarks/save_load.py`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from epoch_speed import LAYERS

from tricklab.data import load_dataset
from tricklab.nn import build_model
from tricklab.optim import make_optimizer
from tricklab.transfer import load_model, save_model


def main() -> None:
    torch.manual_seed(0)
    model = build_model([28, 28], LAYERS)
    optimizer = make_optimizer("sgd", model.parameters(), learning_rate=1e-3, momentum=0.9)
    test = load_dataset("fashion_mnist", validation=0, scale="unit").test
    model.eval()
    with torch.no_grad():
        expected = model(test.x)
    seconds = []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(5):
            start = time.perf_counter()
            save_model(model, Path(folder) / f"model-{repeat}", optimizer)
            loaded = load_model(Path(folder) / f"model-{repeat}")
            seconds.append(time.perf_counter() - start)
    loaded.eval()
    with torch.no_grad():
        identical = torch.equal(loaded(test.x), expected)
    print(f"save + load, median of 5: {statistics.median(seconds):.3f} s  (target < 0.5 s)")
    print(f"predictions on {len(test.y)} test images identical: {identical}")


if __name__ == "__main__":
    main()
