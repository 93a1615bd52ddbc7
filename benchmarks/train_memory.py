"""Peak resident memory of `tricklab train` on the full Fashion-MNIST (target <= 1.5 GB).

Runs the chapter notebook's recipe (Leaky ReLU and He initialization) for one epoch in
a child process and reads the child's peak RSS from the kernel
(`getrusage(RUSAGE_CHILDREN)`). The reference
printed beside it is the peak of a child that only imports torch and
tricklab, i.e. the fixed cost of the interpreter and libraries.

Run: `.venv/bin/python benchmarks/train_memory.py`.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
from pathlib import Path

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "chapter11" / "leaky_relu_he.yaml"


def child_peak_mb(arguments: list[str]) -> float:
    """Peak RSS of one child process, in MB (ru_maxrss is in KiB on Linux)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, *arguments], check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:
        raise RuntimeError("measure each child in a fresh process: run this script alone")
    return after * 1024 / 1e6


def main() -> None:
    # RUSAGE_CHILDREN keeps the maximum over all children, so measure the smaller first.
    baseline = child_peak_mb(["-c", "import torch, tricklab.run"])
    with tempfile.TemporaryDirectory() as folder:
        peak = child_peak_mb([
            "-m", "tricklab", "train", str(RECIPE), "--set", "train.epochs=1",
            "--out", f"{folder}/run", "--quiet",
        ])
    print(f"import torch + tricklab : {baseline:7.0f} MB peak RSS")
    print(f"tricklab train (1 epoch): {peak:7.0f} MB peak RSS  (target <= 1500 MB)")
    print(f"training on top of imports: {peak - baseline:7.0f} MB")


if __name__ == "__main__":
    main()
