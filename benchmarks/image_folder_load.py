"""Reading the 70,000 Fashion-MNIST images from a PNG folder: time, cached reload and memory.

The subject (as settled for issue 14) is reading the image folder into its
decoded uint8 array: what `tricklab.data.images.read_image_folder(path,
color_mode="grayscale")` does, and `image_folder` calls before anything else:
listing the class folders and files, computing the cache key, and decoding
(then writing the cache) or reading the cache, into one uint8 array
`[70000, 28, 28]` and the labels, the same array the plain Pillow loops below
produce. The float32 conversion,
splitting and scaling that follow are `own_splits`, shared with every other
source of own data and not part of it; the whole `load_dataset("image_folder",
...)` is printed beside it for information.

The images (training and test files, from `load_dataset("fashion_mnist")`)
are written once with Pillow as 28x28 grayscale PNGs into a folder tree with
one subfolder per class, `<class index>/<image number>.png`; with `--folder`
the tree is kept and reused by later runs. Before anything is timed, every
file is read once so that all loads find it in the page cache. Measured in
this run:

- (a) first load: `read_image_folder` with `$TRICKLAB_CACHE` pointed at a fresh
  empty folder each time, against the faster of two plain Pillow loops using
  every core, each opening every file with `Image.open` and copying
  `np.asarray(image)` into one preallocated uint8 array: `os.cpu_count()`
  threads, or `os.cpu_count()` forked processes (their start-up counted)
  writing into shared memory; the plain loops are given the file list, so they
  neither list the folder nor write a cache. Target: tricklab's images/s >=
  0.8 x the faster loop's. Printed too: each one's CPU seconds (its own and
  its child processes'; on a machine busy with other work, a load whose CPU
  seconds come close to its wall time had less than its cores), and the parts
  of a first read timed alone: listing the folder, the cache key,
  `decode_images` (decoding alone), and `read_image_folder` where no cache
  can be written (what writing the cache file costs is the difference).
- (b) cached reload: the same call again with the cache in place, and its
  parts timed alone: listing, the cache key, statting every file (whose sizes
  and times are compared with the recorded ones), reading the cached pixels.
  Target: reload / first load <= 1/20.
- (c) peak RSS (`getrusage(RUSAGE_SELF).ru_maxrss` read by a fresh child
  process) of a child doing a first `read_image_folder`, against a child that
  only imports the same modules (interpreter, NumPy, Pillow, torch, tricklab).
  Target: read - imports <= 2 x the decoded uint8 array. A child doing the
  whole `load_dataset`, whose float32 parts are 4 bytes a pixel, is printed too.

Timed loads alternate, so drift of the machine affects all alike; printed are
medians.

Run: `.venv/bin/python benchmarks/image_folder_load.py [--folder DIR] [--repeats 3]
[--images 70000]`.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tricklab.data import images, load_dataset
from tricklab.data.images import decode_images, read_image_folder

SHAPE = (28, 28)
IMPORTS = "import numpy, PIL.Image, torch, tricklab.data, tricklab.data.images"
"""What every memory child imports, so their difference is the load alone."""
CHILD = """
import os, resource, sys
{imports}
if sys.argv[1]:
    os.environ["TRICKLAB_CACHE"] = sys.argv[2]
    if sys.argv[3] == "read":
        tricklab.data.images.read_image_folder(sys.argv[1], color_mode="grayscale")
    else:
        tricklab.data.load_dataset("image_folder", path=sys.argv[1], color_mode="grayscale")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
HOP = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def write_folder(folder: Path, images: int) -> None:
    """Fashion-MNIST's first `images` images (training, then test) as PNGs, unless already there."""
    marker = folder / f".fashion-mnist-{images}-complete"
    if marker.exists():
        return
    if folder.exists() and any(folder.iterdir()):
        sys.exit(f"--folder {folder}: not empty and not written by this benchmark for "
                 f"{images} images; give an empty or new folder")
    data = load_dataset("fashion_mnist", validation=0, scale="none")
    x = torch.cat([data.train.x, data.test.x])[:images].to(torch.uint8).numpy()
    y = torch.cat([data.train.y, data.test.y])[:images].numpy()
    for label in np.unique(y):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)

    def write(index: int) -> None:
        Image.fromarray(x[index]).save(folder / str(y[index]) / f"{index:05d}.png")

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(write, range(images)))
    marker.touch()


def chunks(count: int, parts: int) -> list[tuple[int, int]]:
    """`count` items cut into at most `parts` contiguous `(start, stop)` spans."""
    bounds = np.linspace(0, count, parts + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


def decode_into(out: np.ndarray, files: list[str], start: int, stop: int) -> None:
    for index in range(start, stop):
        with Image.open(files[index]) as image:
            out[index] = np.asarray(image)


def plain_threads(files: list[str]) -> float:
    """Seconds for the thread-pool loop over every core."""
    start = time.perf_counter()
    out = np.empty((len(files), *SHAPE), dtype=np.uint8)
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda span: decode_into(out, files, *span),
                      chunks(len(files), workers * 16)))
    return time.perf_counter() - start


_FILES: list[str] = []
"""The process loop's file list, inherited by its forked workers instead of pickled to them."""


def _decode_shared(job: tuple[str, int, int, int]) -> None:
    name, count, start, stop = job
    memory = shared_memory.SharedMemory(name=name)
    try:
        decode_into(np.ndarray((count, *SHAPE), np.uint8, memory.buf), _FILES, start, stop)
    finally:
        memory.close()


def plain_processes(files: list[str]) -> float:
    """Seconds for the process-pool loop over every core, decoding into shared memory."""
    global _FILES
    _FILES = files
    start = time.perf_counter()
    memory = shared_memory.SharedMemory(create=True, size=len(files) * SHAPE[0] * SHAPE[1])
    try:
        out = np.ndarray((len(files), *SHAPE), np.uint8, memory.buf)
        workers = os.cpu_count() or 1
        jobs = [(memory.name, len(files), *span) for span in chunks(len(files), workers * 16)]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            list(pool.map(_decode_shared, jobs))
        seconds = time.perf_counter() - start  # `out` is usable here, in shared memory
        del out  # the buffer cannot close while an array still views it
    finally:
        memory.close()
        memory.unlink()
    return seconds


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children waited for, user and system."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def in_cache(cache: Path, call: Callable[[], object]) -> Callable[[], object]:
    """`call` with `$TRICKLAB_CACHE` set to `cache`."""
    def run() -> object:
        os.environ["TRICKLAB_CACHE"] = str(cache)
        return call()
    return run


def child_peak_mb(folder: Path | None, cache: Path | None, what: str = "read") -> float:
    """Peak RSS in MB that a fresh child reports for itself (ru_maxrss is in KiB on Linux).

    Linux carries a process's peak RSS across `exec`, and a child started from
    this process begins as a copy of it, so this process's hundreds of MB would be
    the child's floor; the child is therefore started by a small intermediate one.
    """
    code = CHILD.format(imports=IMPORTS)
    arguments = [str(folder or ""), str(cache or ""), what]
    output = subprocess.run([sys.executable, "-c", HOP, sys.executable, "-c", code, *arguments],
                            check=True, capture_output=True, text=True).stdout
    return int(output.split()[-1]) * 1024 / 1e6


def first_parts(folder: Path, scratch: Path, files: list[str]) -> dict[str, float]:
    """Seconds of each part of a first read, each timed alone."""
    path = str(folder)
    relative = images._listing(path, "path")[1]
    unwritable = scratch / "not-a-folder"  # a file: no cache can be written under it
    unwritable.touch()
    return {
        "listing the folder": timed(lambda: images._listing(path, "path")),
        "cache key": timed(lambda: images.cache_key(path, relative, None, "grayscale")),
        "decode_images": timed(lambda: decode_images(files, None, "grayscale")),
        "read_image_folder writing no cache": timed(in_cache(unwritable, lambda: (
            read_image_folder(path, color_mode="grayscale")))),
    }


def reload_parts(folder: Path, cache: Path) -> dict[str, float]:
    """Seconds of each part of a cached reload, each timed alone."""
    path = str(folder)
    files = images._listing(path, "path")[1]
    cached = next((cache / "image_folder").glob("*.npy"))
    return {
        "listing the folder": timed(lambda: images._listing(path, "path")),
        "cache key": timed(lambda: images.cache_key(path, files, None, "grayscale")),
        "statting every file": timed(lambda: images._file_stats(path, files)),
        "reading the cached pixels": timed(lambda: np.load(cached, allow_pickle=False)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None,
                        help="where the PNG tree is written once and reused (default: a "
                        "temporary folder, removed at the end)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=70_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or Path(scratch) / "fashion-mnist-png"
        start = time.perf_counter()
        write_folder(folder, args.images)
        written = time.perf_counter() - start
        files = sorted(str(path) for path in folder.glob("*/*.png"))
        size = sum(len(Path(file).read_bytes()) for file in files)  # into the page cache
        decoded = len(files) * SHAPE[0] * SHAPE[1]
        print(f"torch {torch.__version__}, {os.cpu_count()} cores; {len(files)} PNGs, "
              f"{size / 1e6:.1f} MB in {folder} (ready in {written:.1f} s); decoded uint8 "
              f"{decoded / 1e6:.1f} MB")
        path = str(folder)
        loops = {"threads": plain_threads, "processes": plain_processes}
        for loop in loops.values():  # warm-up, as is tricklab's below
            loop(files[:2000])
        in_cache(Path(scratch) / "cache-warm-up", lambda: read_image_folder(
            path, color_mode="grayscale"))()
        seconds: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        first: dict[str, list[float]] = {}
        parts: dict[str, list[float]] = {}
        for repeat in range(args.repeats):  # alternated so drift affects all alike
            cache = Path(scratch) / f"cache-{repeat}"
            whole = Path(scratch) / f"cache-whole-{repeat}"
            calls: dict[str, Callable[[], object]] = {
                **{name: lambda loop=loop: loop(files) for name, loop in loops.items()},
                "read": in_cache(cache, lambda: read_image_folder(path, color_mode="grayscale")),
                "reload": in_cache(cache, lambda: read_image_folder(path,
                                                                    color_mode="grayscale")),
                "load_dataset": in_cache(whole, lambda: load_dataset(
                    "image_folder", path=path, color_mode="grayscale")),
                "load_dataset reload": in_cache(whole, lambda: load_dataset(
                    "image_folder", path=path, color_mode="grayscale")),
            }
            for name, call in calls.items():
                used = cpu_seconds()
                seconds.setdefault(name, []).append(timed(call))
                cpu.setdefault(name, []).append(cpu_seconds() - used)
            for name, value in first_parts(folder, Path(scratch), files).items():
                first.setdefault(name, []).append(value)
            for name, value in reload_parts(folder, cache).items():
                parts.setdefault(name, []).append(value)
        median = {name: statistics.median(values) for name, values in seconds.items()}
        fastest = min(loops, key=median.__getitem__)
        labels = {"threads": f"plain loop, {os.cpu_count()} threads",
                  "processes": f"plain loop, {os.cpu_count()} processes",
                  "read": "tricklab read_image_folder, cold",
                  "load_dataset": "load_dataset, cold (information)"}
        print(f"(a) first load, median of {args.repeats}:")
        for name, label in labels.items():
            print(f"    {label:38s}: {median[name]:7.3f} s  {len(files) / median[name]:8.0f} "
                  f"images/s  {statistics.median(cpu[name]):6.2f} CPU s")
        ratio = median[fastest] / median["read"]
        print(f"    throughput read_image_folder / plain {fastest} (the faster loop) = "
              f"{ratio:.3f}  (target >= 0.8: {'ok' if ratio >= 0.8 else 'MISSED'})")
        print("    its parts, each timed alone:")
        for name, values in first.items():
            print(f"      {name:36s}: {statistics.median(values):7.3f} s")
        reload = median["reload"] / median["read"]
        print(f"(b) cached reload {median['reload']:.3f} s, / first load = {reload:.4f} = "
              f"1/{1 / reload:.1f}  (target <= 1/20: {'ok' if reload <= 1 / 20 else 'MISSED'})")
        print("    its parts, each timed alone:")
        for name, values in parts.items():
            print(f"      {name:36s}: {statistics.median(values):7.3f} s")
        print(f"    load_dataset reload (information)     : "
              f"{median['load_dataset reload']:7.3f} s")
        baseline = child_peak_mb(None, None)
        peak = child_peak_mb(folder, Path(scratch) / "cache-memory")
        whole_peak = child_peak_mb(folder, Path(scratch) / "cache-memory-whole", "load_dataset")
        growth = peak - baseline
        allowed = 2 * decoded / 1e6
        print(f"(c) peak RSS: imports alone {baseline:.0f} MB, first read {peak:.0f} MB: the read "
              f"adds {growth:.0f} MB = {growth / (decoded / 1e6):.2f} x the uint8 array  "
              f"(target <= 2 x = {allowed:.0f} MB: {'ok' if growth <= allowed else 'MISSED'}); "
              f"the whole load_dataset adds {whole_peak - baseline:.0f} MB (its float32 parts "
              f"are {4 * decoded / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
