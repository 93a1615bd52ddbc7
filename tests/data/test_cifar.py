"""CIFAR-10 and CIFAR-100: archives in the official binary format, served, fetched and loaded.

Every archive here is written by the test from the format's description alone
(a record is its label byte(s), then 1024 red, 1024 green and 1024 blue bytes,
each plane 32 rows of 32 pixels): a real `.tar.gz` with the official member
paths, served by a real HTTP server on 127.0.0.1 and fetched with a base URL
and a checksum standing in for the official ones. Pixel values encode the
record, channel, row and column they belong to, so a pixel anywhere else than
where the format says is caught.

`tests/data/fixtures/cifar10/cifar-10-binary.tar.gz` is a small archive of the
same kind (100 training and 20 test records of 8x8-pixel colour blocks, every
class present), so the shipped CIFAR-10 recipe runs in the recipe tests through
`fixture_data` as the Fashion-MNIST ones do; `test_committed_fixture` checks it
still holds what `fixture_records` makes. Regenerate it from the repository root:

    .venv/bin/python -c "from tests.data.test_cifar import write_fixture; write_fixture()"
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tricklab.cli.main import main
from tricklab.data import INPUT_SHAPES, datasets, fetch, load_dataset, locate
from tricklab.data.cifar import FORMATS, Format
from tricklab.data.raw_inputs import read_inputs
from tricklab.data.sources import SOURCES
from tricklab.errors import UserInputError
from tricklab.recipe import load_recipe

from ..conftest import FIXTURES, REPOSITORY
from .test_sources import serve, url_of

CIFAR10 = FORMATS["cifar10"]
CIFAR100 = FORMATS["cifar100"]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
FINE_NAMES = [f"fine_{index:02d}" for index in range(100)]
COARSE_NAMES = [f"coarse_{index:02d}" for index in range(20)]
FIXTURE_ARCHIVE = FIXTURES / "cifar10" / CIFAR10.archive


def pixel(record: Any, channel: Any, row: Any, column: Any) -> Any:
    """The value the test writes at (channel, row, column) of record number `record`.

    Swapping rows and columns, or channels, changes it; so does the record's
    number below 256, which `record_numbers` reads back from the first row.
    """
    return (record * 7 + channel * 85 + row * 3 + column * 5) % 256


def format_bytes(labels: np.ndarray, first: int) -> np.ndarray:
    """Records `first, first + 1, ...` laid out byte by byte as the format describes them.

    Args:
        labels: `[N, label bytes]` uint8, written first in each record.
        first: The number of the first record, which `pixel` encodes.
    """
    count, label_bytes = labels.shape
    records = np.empty((count, label_bytes + 3072), dtype=np.uint8)
    records[:, :label_bytes] = labels
    numbers = np.arange(first, first + count)[:, None]
    for channel in range(3):
        for row in range(32):
            offset = label_bytes + channel * 1024 + row * 32
            records[:, offset:offset + 32] = pixel(numbers, channel, row, np.arange(32))
    return records


def expected_images(first: int, count: int) -> np.ndarray:
    """`[count, 32, 32, 3]`: image i holds `pixel(first + i, c, r, k)` at `[i, r, k, c]`."""
    number, row, column, channel = np.ogrid[first:first + count, :32, :32, :3]
    return pixel(number, channel, row, column).astype(np.uint8)


def tar_gz(members: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    """A gzipped tar holding `members` as regular files under their paths, and `extra` entries."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        folders = sorted({name.split("/")[0] for name in members if name.startswith("cifar-")})
        for folder in folders:
            entry = tarfile.TarInfo(folder)
            entry.type = tarfile.DIRTYPE
            tar.addfile(entry)
        for entry in extra:
            tar.addfile(entry)
        for name, data in members.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def cifar10_members(train: int = 250, test: int = 50, labels=None) -> dict[str, bytes]:
    """CIFAR-10's members: `train` records over the five batches, `test` in the test batch.

    Record i (numbered over training then test) has label `labels(i)`, by default
    `i % 10`.
    """
    label_of = labels or (lambda numbers: numbers % 10)
    numbers = np.arange(train + test)
    every = format_bytes(label_of(numbers).astype(np.uint8)[:, None], 0)
    bounds = np.linspace(0, train, 6).astype(int)
    members = {
        name: every[start:end].tobytes()
        for name, start, end in zip(CIFAR10.train, bounds[:-1], bounds[1:], strict=True)
    }
    members[CIFAR10.test[0]] = every[train:].tobytes()
    members[CIFAR10.labels[0].names] = ("\n".join(CIFAR10_NAMES) + "\n\n").encode()
    members["cifar-10-batches-bin/readme.html"] = b"<html>not read</html>"
    return members


def coarse_of(numbers: np.ndarray) -> np.ndarray:
    """The test's coarse label of record i, chosen unrelated to its fine label `i % 100`."""
    return (numbers * 3 + 1) % 20


def cifar100_members(train: int = 200, test: int = 40) -> dict[str, bytes]:
    """CIFAR-100's members: record i has coarse label `coarse_of(i)`, fine label `i % 100`."""
    numbers = np.arange(train + test)
    every = format_bytes(np.stack([coarse_of(numbers), numbers % 100], axis=1).astype(np.uint8), 0)
    return {
        CIFAR100.train[0]: every[:train].tobytes(),
        CIFAR100.test[0]: every[train:].tobytes(),
        "cifar-100-binary/fine_label_names.txt": "\n".join(FINE_NAMES).encode(),
        "cifar-100-binary/coarse_label_names.txt": "\n".join(COARSE_NAMES).encode(),
    }


def place(root: Path, form: Format, archive: bytes) -> Path:
    """Write `archive` as `<root>/<name>/<official file name>`, as a user's data folder holds it."""
    folder = root / form.name
    folder.mkdir(parents=True)
    (folder / form.archive).write_bytes(archive)
    return folder


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def user_data(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty `TRICKLAB_DATA` folder for the test to place archives in."""
    root = isolated / "user"
    monkeypatch.setenv("TRICKLAB_DATA", str(root))
    return root


def single_line(error: pytest.ExceptionInfo[UserInputError]) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# --- fetched from a real HTTP server ----------------------------------------------------------


def test_fetch_then_load_puts_every_pixel_and_label_where_the_format_says(
    isolated: Path, tmp_path: Path
) -> None:
    archive = tar_gz(cifar10_members(train=250, test=50))
    served = tmp_path / "served"
    served.mkdir()
    (served / CIFAR10.archive).write_bytes(archive)
    with serve(served) as server:
        folder = fetch("cifar10", url_of(server), checksums={CIFAR10.archive: sha256(archive)})
        assert server.requests == [f"/{CIFAR10.archive}"]
    assert folder == isolated / "cache" / "cifar10" == locate("cifar10")
    assert (folder / CIFAR10.archive).read_bytes() == archive

    data = load_dataset("cifar10", validation=0, scale="none")
    assert data.input_shape == (32, 32, 3) == INPUT_SHAPES["cifar10"]({})
    assert data.class_names == CIFAR10_NAMES
    assert data.test.x.dtype == torch.float32 and data.test.x.shape == (50, 32, 32, 3)
    # The test part keeps the file's order: test record j is record 250 + j.
    assert torch.equal(data.test.x, torch.from_numpy(expected_images(250, 50)).float())
    assert torch.equal(data.test.y, torch.arange(250, 300) % 10)
    # Blue (channel 2), row 5, column 7 of test record 3 (record 253): byte 1 + 2048 + 160 + 7.
    record = np.frombuffer(archive_member(archive, CIFAR10.test[0]), np.uint8).reshape(-1, 3073)[3]
    assert data.test.x[3, 5, 7, 2] == record[1 + 2 * 1024 + 5 * 32 + 7] == pixel(253, 2, 5, 7)
    assert data.test.x[3, 7, 5, 2] == pixel(253, 2, 7, 5) != pixel(253, 2, 5, 7)
    # The training part is shuffled: each image is found again by its record number.
    assert data.train.x.shape == (250, 32, 32, 3)
    numbers = record_numbers(data.train.x)
    assert sorted(numbers.tolist()) == list(range(250))
    assert torch.equal(data.train.x, torch.from_numpy(expected_images(0, 250)[numbers]).float())
    assert torch.equal(data.train.y, torch.from_numpy(numbers % 10))


def archive_member(archive: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return tar.extractfile(name).read()


def record_numbers(x: torch.Tensor) -> np.ndarray:
    """Each image's record number, read back from its pixels at row 0 (see `pixel`)."""
    values = x[:, 0, :, 0].numpy().astype(np.int64)  # red, row 0: (7n + 5k) % 256
    table = {tuple(pixel(number, 0, 0, np.arange(32))): number for number in range(256)}
    return np.array([table[tuple(row)] for row in values])


def test_a_png_of_the_same_pixels_is_prepared_as_the_loaded_image(
    user_data: Path, tmp_path: Path
) -> None:
    # What `tricklab predict --input photos/` reads must match the training layout exactly.
    place(user_data, CIFAR10, tar_gz(cifar10_members(train=50, test=10)))
    data = load_dataset("cifar10", validation=0, scale="standardize")
    preprocessing = data.preprocessing()
    assert (preprocessing.kind, preprocessing.color_mode) == ("images", "rgb")
    assert tuple(preprocessing.image_size) == (32, 32)
    png = tmp_path / "record_53.png"
    Image.fromarray(expected_images(53, 1)[0]).save(png)
    prepared = read_inputs(preprocessing, [png])
    assert torch.allclose(prepared.x[0], data.test.x[3], atol=1e-5)


def test_wrong_checksum_is_refused_and_leaves_nothing(isolated: Path, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / CIFAR10.archive).write_bytes(tar_gz(cifar10_members(train=50, test=10)))
    with serve(served) as server, pytest.raises(UserInputError) as refused:
        fetch("cifar10", url_of(server), checksums={CIFAR10.archive: "0" * 64})
    message = single_line(refused)
    assert f"{CIFAR10.archive}: SHA-256 mismatch, expected {'0' * 64}" in message
    assert "the file was discarded" in message
    assert list((isolated / "cache").rglob("*")) == []


def test_cli_fetch_checks_the_official_checksum(
    isolated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / CIFAR100.archive).write_bytes(tar_gz(cifar100_members()))
    with serve(served) as server:
        code = main(["data", "fetch", "cifar100", "--url", url_of(server)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and SOURCES["cifar100"].archive_sha256[CIFAR100.archive] in err
    assert list((isolated / "cache").rglob("*")) == []


def test_loading_without_the_archive_says_how_to_fetch_it(isolated: Path) -> None:
    with pytest.raises(UserInputError) as missing:
        load_dataset("cifar10")
    message = single_line(missing)
    assert message.startswith("dataset 'cifar10' not found in ")
    assert "run `tricklab data fetch cifar10`" in message
    assert f"with {CIFAR10.archive} in it" in message
    assert list((isolated / "cache").rglob("*")) == []


# --- loading -----------------------------------------------------------------------------------


def test_cifar100_fine_by_default_and_coarse_on_request(user_data: Path) -> None:
    place(user_data, CIFAR100, tar_gz(cifar100_members(train=200, test=40)))
    fine = load_dataset("cifar100", validation=0, scale="none")
    assert fine.class_names == FINE_NAMES and fine.num_classes == 100
    assert torch.equal(fine.test.y, torch.arange(200, 240) % 100)
    # Two label bytes before the pixels: channel, row and column still land in place.
    assert torch.equal(fine.test.x, torch.from_numpy(expected_images(200, 40)).float())
    numbers = record_numbers(fine.train.x)
    assert torch.equal(fine.train.y, torch.from_numpy(numbers % 100))

    coarse = load_dataset("cifar100", label_mode="coarse", validation=0, scale="none")
    assert coarse.class_names == COARSE_NAMES
    assert torch.equal(coarse.test.y, torch.from_numpy(coarse_of(np.arange(200, 240))))
    assert torch.equal(coarse.train.y, torch.from_numpy(coarse_of(record_numbers(coarse.train.x))))


def test_options_validation_classes_train_size_scale(user_data: Path) -> None:
    place(user_data, CIFAR10, tar_gz(cifar10_members(train=250, test=50)))
    data = load_dataset("cifar10", validation=0.2, data_seed=3)
    # Stratified: 250 training records, 25 per class, give 5 of each class.
    assert torch.equal(torch.bincount(data.val.y), torch.full((10,), 5))
    assert len(data.train) == 200 and data.scale == "unit"
    numbers = record_numbers((data.train.x * 255).round())
    assert torch.equal(data.train.x, torch.from_numpy(expected_images(0, 250)[numbers]) / 255)
    again = load_dataset("cifar10", validation=0.2, data_seed=3)
    assert torch.equal(again.val.x, data.val.x) and torch.equal(again.train.y, data.train.y)
    other = load_dataset("cifar10", validation=0.2, data_seed=4)
    assert not torch.equal(other.val.x, data.val.x)

    subset = load_dataset("cifar10", classes=["cat", 1], validation=4, train_size=10)
    assert subset.class_names == ["cat", "automobile"]
    assert len(subset.val) == 4 and len(subset.train) == 10
    # 5 test records per class, in file order; cat (3) becomes 0, automobile (1) becomes 1.
    assert torch.equal(subset.test.y, torch.tensor([1, 0] * 5))

    standard = load_dataset("cifar10", validation=0, scale="standardize")
    raw = torch.from_numpy(expected_images(0, 250)).double()
    assert torch.allclose(standard.mean.double(), raw.mean(dim=0), atol=1e-4)
    assert torch.allclose(standard.std.double(), raw.std(dim=0, correction=0), atol=1e-4)


def test_a_later_load_reads_the_decoded_cache(user_data: Path, isolated: Path) -> None:
    place(user_data, CIFAR10, tar_gz(cifar10_members(train=50, test=10)))
    first = load_dataset("cifar10", validation=0, scale="none")
    (decoded,) = (isolated / "cache" / "cifar10").glob("decoded-*.npz")
    with np.load(decoded, allow_pickle=False) as stored:
        arrays = dict(stored)
    assert np.array_equal(arrays["x_test"], expected_images(50, 10))
    # A mark written into the cache shows up in the next load: the archive is not decoded again.
    arrays["x_test"][0, 0, 0, 0] = 255 - arrays["x_test"][0, 0, 0, 0]
    np.savez(decoded, **arrays)
    second = load_dataset("cifar10", validation=0, scale="none")
    assert second.test.x[0, 0, 0, 0] == 255 - first.test.x[0, 0, 0, 0]
    # A damaged cache is decoded again from the archive and replaced.
    decoded.write_bytes(b"not a zip")
    third = load_dataset("cifar10", validation=0, scale="none")
    assert torch.equal(third.test.x, first.test.x)
    assert np.load(decoded, allow_pickle=False)["x_test"].shape == (10, 32, 32, 3)


# --- bad archives: one line, nothing written ---------------------------------------------------


def corrupt(archive: bytes) -> bytes:
    damaged = bytearray(archive)
    damaged[len(archive) // 2] ^= 0xFF
    return bytes(damaged)


def symlink_named(name: str) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.type = tarfile.SYMTYPE
    entry.linkname = "/etc/passwd"
    return entry


BAD_ARCHIVES = [
    pytest.param(lambda: tar_gz(cifar10_members())[:-5000], "not a readable cifar-10-binary.tar.gz",
                 id="truncated"),
    pytest.param(lambda: corrupt(tar_gz(cifar10_members())), "not a readable", id="corrupt"),
    pytest.param(lambda: b"<html>404</html>", "Not a gzipped file", id="not-gzip"),
    pytest.param(
        lambda: tar_gz({k: v for k, v in cifar10_members().items() if "batch_3" not in k}),
        "has no member cifar-10-batches-bin/data_batch_3.bin", id="member-missing"),
    pytest.param(
        lambda: tar_gz({k: v for k, v in cifar10_members().items() if "batch_2" not in k},
                       [symlink_named(CIFAR10.train[1])]),
        "member cifar-10-batches-bin/data_batch_2.bin is not a file", id="symlink-member"),
    pytest.param(
        lambda: tar_gz({**cifar10_members(), CIFAR10.test[0]: b"\0" * 3072}),
        "member cifar-10-batches-bin/test_batch.bin holds 3072 bytes, not a whole number of "
        "3073-byte records", id="partial-record"),
    pytest.param(
        lambda: tar_gz(cifar10_members(labels=lambda n: np.where(n == 7, 10, n % 10))),
        "train record 7 has label 10; CIFAR-10's labels are 0..9", id="label-out-of-range"),
    pytest.param(
        lambda: tar_gz({**cifar10_members(), CIFAR10.labels[0].names: b"cat\ndog\n"}),
        "batches.meta.txt names 2 classes; expected 10", id="names"),
    pytest.param(
        lambda: tar_gz(cifar10_members(labels=lambda n: np.where(n % 10 == 4, 5, n % 10))),
        "class 4 (deer) has no training record; expected all 10 CIFAR-10 classes",
        id="class-absent"),
]


@pytest.mark.parametrize(("archive", "message"), BAD_ARCHIVES)
def test_a_bad_archive_is_one_line_and_writes_nothing(
    user_data: Path, isolated: Path, archive, message: str
) -> None:
    folder = place(user_data, CIFAR10, archive())
    with pytest.raises(UserInputError) as refused:
        load_dataset("cifar10")
    text = single_line(refused)
    assert text.startswith(f"data file {folder / CIFAR10.archive}: ") and message in text
    assert not (isolated / "cache").exists()


def test_member_names_never_reach_the_file_system(user_data: Path, isolated: Path) -> None:
    escape = {"../escaped.bin": b"x" * 3073, "cifar-10-batches-bin/../../x.bin": b"x"}
    place(user_data, CIFAR10, tar_gz({**cifar10_members(train=50, test=10), **escape}))
    assert len(load_dataset("cifar10", validation=0).train) == 50
    written = sorted(path.relative_to(isolated) for path in isolated.rglob("*") if path.is_file())
    assert [str(path.parent) for path in written] == ["cache/cifar10", "user/cifar10"]
    assert not (isolated.parent / "escaped.bin").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"label_mode": "medium"}, "data.label_mode: must be one of fine, coarse, got 'medium'"),
        ({"classes": ["kangaroo", "fine_01"]}, "data.classes: 'kangaroo' is not a class of "
         "cifar100; expected a name (fine_00, fine_01, ..., fine_99) or a label 0..99"),
        ({"classes": [3, 100]}, "data.classes: 100 is not a class of cifar100"),
        ({"classes": [3, "fine_03"]}, "data.classes: 'fine_03' is listed twice"),
        ({"classes": [3]}, "data.classes: must list at least 2 classes of cifar100"),
        ({"scale": "auto"}, "data.scale: must be one of unit, standardize, none, got 'auto'"),
        ({"validation": 200}, "data.validation: must be a count 0 <= N < 200"),
    ],
)
def test_bad_options_are_one_line(user_data: Path, options: dict, message: str) -> None:
    place(user_data, CIFAR100, tar_gz(cifar100_members(train=200, test=40)))
    with pytest.raises(UserInputError) as refused:
        load_dataset("cifar100", **options)
    assert message in single_line(refused)


# --- registry, recipe and the committed fixture ------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_registered_listed_and_described(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    info = datasets.info(name)
    assert "Krizhevsky (2009)" in info.reference and info.keras_name == name
    assert INPUT_SHAPES[name]({}) == (32, 32, 3)
    assert main(["list", "datasets"]) == 0
    assert name in capsys.readouterr().out
    assert main(["schema"]) == 0
    assert f'"{name}"' in capsys.readouterr().out


def test_the_recipe_resolves_without_the_data(isolated: Path) -> None:
    recipe = load_recipe(REPOSITORY / "recipes" / "architectures" / "vgg_cifar10.yaml")
    assert recipe.data["dataset"] == "cifar10" and recipe.data["scale"] == "unit"
    assert list(recipe.model.input_shape) == [32, 32, 3]
    assert list((isolated / "cache").rglob("*")) == []


def fixture_records() -> dict[str, bytes]:
    """The committed fixture's members: 100 training and 20 test records of colour blocks.

    Each image is 4x4 blocks of 8x8 pixels, one colour per block and channel
    drawn from a seeded generator, so the archive compresses to a few kilobytes;
    record i has label `i % 10`, so every class is present in both parts.
    """
    generator = np.random.default_rng(2009)
    count = 120
    blocks = generator.integers(0, 256, size=(count, 3, 4, 4), dtype=np.uint8)
    planes = blocks.repeat(8, axis=2).repeat(8, axis=3).reshape(count, 3072)
    every = np.concatenate([(np.arange(count) % 10).astype(np.uint8)[:, None], planes], axis=1)
    members = {name: every[20 * i:20 * (i + 1)].tobytes() for i, name in enumerate(CIFAR10.train)}
    members[CIFAR10.test[0]] = every[100:].tobytes()
    members[CIFAR10.labels[0].names] = ("\n".join(CIFAR10_NAMES) + "\n\n").encode()
    return members


def write_fixture() -> Path:
    """Write the committed fixture archive from `fixture_records`."""
    FIXTURE_ARCHIVE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE_ARCHIVE.write_bytes(tar_gz(fixture_records()))
    return FIXTURE_ARCHIVE


def test_committed_fixture(fixture_data: Path) -> None:
    assert locate("cifar10") == FIXTURE_ARCHIVE.parent
    expected = fixture_records()
    with tarfile.open(FIXTURE_ARCHIVE, mode="r:gz") as tar:
        for name, data in expected.items():
            assert tar.extractfile(name).read() == data
    data = load_dataset("cifar10", validation=20)
    assert (len(data.train), len(data.val), len(data.test)) == (80, 20, 20)
    assert data.class_names == CIFAR10_NAMES
