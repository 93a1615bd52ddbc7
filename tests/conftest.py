"""Fixtures shared by every test area: an isolated data environment and small real data.

`fixture_data` points tricklab at the committed IDX fixture (the first 2000
training and 500 test images of the real Fashion-MNIST), so recipes train in
seconds; `isolated` hides the machine's own datasets and cache.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

from tricklab.data import sources
from tricklab.recipe.snapshot import FOLDER as SNAPSHOT_FOLDER
from tricklab.recipe.snapshot import build_document, snapshot_key

# In-process tests train tiny models, for which one thread is fastest and immune
# to other processes competing for the cores; CLI subprocesses use the default.
torch.set_num_threads(1)

# A shell starts a background job (`make test &`) with SIGINT ignored, and Python then
# leaves it so; the tests of Ctrl-C need it raising KeyboardInterrupt, as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
REPOSITORY = Path(__file__).resolve().parent.parent

TINY_RECIPE = {
    "name": "tiny",
    "data": {"dataset": "fashion_mnist", "validation": 500, "scale": "unit"},
    "model": {
        "input_shape": [28, 28],
        "layers": [
            "flatten",
            {"dense": {"units": 16, "activation": "relu", "kernel_initializer": "he_normal"}},
            {"dense": {"units": 10, "activation": "softmax"}},
        ],
    },
    "train": {"optimizer": {"name": "sgd", "learning_rate": 0.01}, "epochs": 1,
              "batch_size": 32, "metrics": ["accuracy"]},
}
"""A 784-16-10 MLP on the fixture data, a second per run: the base of the tests' studies."""


@pytest.fixture(scope="session")
def registry_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The registry snapshot of this tricklab, built once for the whole run."""
    folder = tmp_path_factory.mktemp("snapshot")
    path = folder / f"{snapshot_key()}.json"
    path.write_text(json.dumps(build_document()))
    return path


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point every search root and the cache into `tmp_path`, so no test sees the machine's data."""
    monkeypatch.delenv("TRICKLAB_DATA", raising=False)
    monkeypatch.delenv("TRICKLAB_DATA_URL", raising=False)
    monkeypatch.setenv("TRICKLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIR", tmp_path / "system")
    return tmp_path


@pytest.fixture
def fixture_data(isolated: Path, monkeypatch: pytest.MonkeyPatch, registry_snapshot: Path) -> Path:
    """Make `TRICKLAB_DATA` point at the fixture root, as a user's data folder would.

    The cache starts with the registry snapshot, as a user's has after a first
    command, so the commands tested check recipes the quick way.
    """
    snapshots = isolated / "cache" / SNAPSHOT_FOLDER
    snapshots.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(registry_snapshot, snapshots / registry_snapshot.name)
    monkeypatch.setenv("TRICKLAB_DATA", str(FIXTURES))
    return FIXTURES


@pytest.fixture
def cli_env(tmp_path: Path, registry_snapshot: Path) -> dict[str, str]:
    """Environment for `python -m tricklab` subprocesses: fixture data, a cache holding only
    the registry snapshot (as after a first command)."""
    snapshots = tmp_path / "cache" / SNAPSHOT_FOLDER
    snapshots.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(registry_snapshot, snapshots / registry_snapshot.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRICKLAB_")}
    env.update(
        TRICKLAB_DATA=str(FIXTURES),
        TRICKLAB_CACHE=str(tmp_path / "cache"),
        PYTHONUNBUFFERED="1",
    )
    return env


def interruptible() -> None:
    """`preexec_fn` for a subprocess that a test interrupts with SIGINT (Ctrl-C).

    A shell that starts pytest in the background (`pytest &`) makes it ignore
    SIGINT, children inherit that, and Python then never raises
    KeyboardInterrupt: the default disposition is restored in the child.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A factory of tmpfs mounts under `tmp_path`: `small_disk(size, read_only=False)` -> folder.

    A real small (or read-only) filesystem, for tests of a full disk and of a
    read-only folder; skipped, saying why, where tmpfs cannot be mounted (not root).
    """
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for a full or read-only disk needs root")
    mounted: list[Path] = []

    def mount(size: str, read_only: bool = False) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the disk holding `folder`, leaving `leave` bytes; return the filler to delete."""
    filler = folder / "filler"
    with filler.open("wb") as file:
        while True:
            stat = os.statvfs(folder)
            free = stat.f_bavail * stat.f_frsize - leave
            if free <= 0:
                return filler
            try:
                file.write(b"\0" * min(free, 1 << 20))
                file.flush()
            except OSError:
                return filler
