"""IDX reader: round trips of every type code, gzip or raw; each defect is a UserInputError."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tricklab.data import read_idx
from tricklab.errors import UserInputError

TYPE_CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode `array` as IDX: zero magic, type code, ndim, big-endian dims and data."""
    header = struct.pack(">HBB", 0, TYPE_CODES[array.dtype.type], array.ndim)
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return header + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", list(TYPE_CODES))
def test_round_trip(tmp_path: Path, dtype: type, compress: bool) -> None:
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((5, 3, 4)) * 100).astype(dtype)
    path = write(tmp_path / "array.idx", idx_bytes(array), compress)
    result = read_idx(path)
    assert result.dtype == np.dtype(dtype)
    assert result.dtype.isnative
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize("shape", [(7,), (2, 3), (1, 2, 3, 2)])
def test_shapes(tmp_path: Path, shape: tuple[int, ...]) -> None:
    array = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "a", idx_bytes(array))), array)


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_named_raw = write(tmp_path / "labels-idx1-ubyte", idx_bytes(array), compress=True)
    raw_named_gz = write(tmp_path / "labels-idx1-ubyte.gz", idx_bytes(array))
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)


def test_multi_member_gzip_is_one_stream(tmp_path: Path) -> None:
    data = idx_bytes(np.arange(100, dtype=np.uint8))
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(data[:40]) + gzip.compress(data[40:]))
    np.testing.assert_array_equal(read_idx(path), np.arange(100, dtype=np.uint8))
    # A member boundary inside the header, and zero padding between and after
    # members (which gzip(1) tolerates).
    path.write_bytes(gzip.compress(data[:6]) + gzip.compress(data[6:40]) + b"\0" * 3
                     + gzip.compress(data[40:]) + b"\0" * 5)
    np.testing.assert_array_equal(read_idx(path), np.arange(100, dtype=np.uint8))


def test_reads_the_fixture(fixture_dir: Path) -> None:
    images = read_idx(fixture_dir / "train-images-idx3-ubyte.gz")
    labels = read_idx(fixture_dir / "train-labels-idx1-ubyte.gz")
    assert images.shape == (2000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (2000,) and set(np.unique(labels)) == set(range(10))


def error_of(path: Path) -> str:
    with pytest.raises(UserInputError) as caught:
        read_idx(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    return message


def test_wrong_magic(tmp_path: Path) -> None:
    data = bytearray(idx_bytes(np.zeros(4, np.uint8)))
    data[0] = 0x01
    assert "wrong magic number" in error_of(write(tmp_path / "x", bytes(data)))


def test_unknown_type_code(tmp_path: Path) -> None:
    data = bytearray(idx_bytes(np.zeros(4, np.uint8)))
    data[2] = 0x0A
    assert "unknown IDX type code 0x0A" in error_of(write(tmp_path / "x", bytes(data)))


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_truncated_data(tmp_path: Path, compress: bool) -> None:
    data = idx_bytes(np.zeros((10, 28, 28), np.uint8))[:-7840 + 1200]
    message = error_of(write(tmp_path / "train-images-idx3-ubyte.gz", data, compress))
    assert "truncated, expected 7840 bytes of data, found 1200" in message


def test_extra_data(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((2, 3), np.int16)) + b"\0\0\0"
    assert "too long, expected 12 bytes of data, found 15" in error_of(write(tmp_path / "x", data))


def test_truncated_header(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((2, 3, 4), np.uint8))[:10]
    assert "truncated header" in error_of(write(tmp_path / "x", data))


@pytest.mark.parametrize("content", [b"", b"\0\0"], ids=["empty", "two-bytes"])
def test_too_short(tmp_path: Path, content: bytes) -> None:
    assert "not an IDX file" in error_of(write(tmp_path / "x", content))


def test_zero_dimensions(tmp_path: Path) -> None:
    assert "0 dimensions" in error_of(write(tmp_path / "x", b"\0\0\x08\0"))


def test_corrupt_gzip(tmp_path: Path) -> None:
    compressed = bytearray(gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32))))
    compressed[len(compressed) // 2] ^= 0xFF
    assert "corrupt gzip stream" in error_of(write(tmp_path / "x.gz", bytes(compressed)))


def test_gzip_cut_short(tmp_path: Path) -> None:
    compressed = gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32)))
    message = error_of(write(tmp_path / "x.gz", compressed[: len(compressed) // 2]))
    assert "corrupt gzip stream (ends unexpectedly)" in message


def test_garbage_after_gzip(tmp_path: Path) -> None:
    compressed = gzip.compress(idx_bytes(np.arange(4, dtype=np.uint8))) + b"junk"
    assert "garbage after the end" in error_of(write(tmp_path / "x.gz", compressed))


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot be read" in error_of(tmp_path / "absent-idx1-ubyte.gz")


TERABYTE_HEADER = struct.pack(">HBB3I", 0, 0x08, 3, 1_000_000, 1_000, 1_000)
"""An IDX header promising 10^12 bytes of uint8 data."""
HUGE = 64 << 20
"""The size of the big files below: any reader that reads them whole shows it in memory."""


def peak_memory(call: Callable[[], object]) -> int:
    """Bytes Python allocated at the peak of `call()`, which must raise a UserInputError."""
    tracemalloc.start()
    try:
        with pytest.raises(UserInputError):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def sparse_file(path: Path, header: bytes, size: int) -> Path:
    """`header` followed by zeros up to `size` bytes, without writing the zeros to disk."""
    with path.open("wb") as file:
        file.write(header)
        file.truncate(size)
    return path


def gzip_with_zeros(path: Path, header: bytes, zeros: int) -> Path:
    """`header` followed by `zeros` zero bytes, gzipped chunk by chunk (a few KB on disk)."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(header)]
    for start in range(0, zeros, len(chunk)):
        parts.append(compressor.compress(chunk[: zeros - start]))
    path.write_bytes(b"".join([*parts, compressor.flush()]))
    return path


@pytest.mark.parametrize(("header", "size", "expected"), [
    (TERABYTE_HEADER, 20, "truncated, expected 1000000000000 bytes of data, found 4"),
    (TERABYTE_HEADER, HUGE, f"truncated, expected 1000000000000 bytes of data, found {HUGE - 16}"),
    (struct.pack(">HBB2I", 0, 0x0B, 2, 2, 3), HUGE,
     f"too long, expected 12 bytes of data, found {HUGE - 12}"),
], ids=["20-bytes-promising-1TB", "64MB-promising-1TB", "64MB-promising-12-bytes"])
def test_raw_size_is_checked_against_the_header_before_reading(
    tmp_path: Path, header: bytes, size: int, expected: str
) -> None:
    path = sparse_file(tmp_path / "train-images-idx3-ubyte", header, size)
    assert peak_memory(lambda: read_idx(path)) < 1 << 20
    assert expected in error_of(path)


@pytest.mark.parametrize("zeros", [4, HUGE], ids=["20-bytes", "64MB"])
def test_gzip_promising_more_than_the_memory_is_refused_before_decompressing(
    tmp_path: Path, zeros: int
) -> None:
    path = gzip_with_zeros(tmp_path / "train-images-idx3-ubyte.gz", TERABYTE_HEADER, zeros)
    # One chunk of compressed input at most, far below the 64 MB of data.
    assert peak_memory(lambda: read_idx(path)) < 4 << 20
    message = error_of(path)
    assert "header promises 1000000000000 bytes of data [1000000, 1000, 1000]" in message
    assert "bytes of memory available" in message


def test_gzip_longer_than_promised_is_decompressed_only_a_little_past_the_promise(
    tmp_path: Path,
) -> None:
    header = struct.pack(">HBB1I", 0, 0x08, 1, 1000)
    bomb = gzip_with_zeros(tmp_path / "labels.gz", header, 1000 + HUGE)
    # Only the promise and a bounded count past it: the 64 MB are never held.
    assert peak_memory(lambda: read_idx(bomb)) < 4 << 20
    assert "too long, expected 1000 bytes of data, found more than 16778217" in error_of(bomb)
    # A few bytes too many are counted exactly.
    small = gzip_with_zeros(tmp_path / "small.gz", header, 1003)
    assert "too long, expected 1000 bytes of data, found 1003" in error_of(small)
