"""Reader for the IDX format of MNIST and Fashion-MNIST, gzipped or raw.

An IDX file is a big-endian header followed by the array's bytes, row major:
two zero bytes, one type-code byte, one byte giving the number of dimensions,
then each dimension as a big-endian unsigned 32-bit integer. Every defect a
downloaded or hand-copied file can have (wrong magic, unknown type, truncated
or overlong data, a damaged gzip stream) becomes a one-line
`UserInputError` naming the file, never a traceback. The header is checked
before the data is read, against the file's size or, gzipped, against the
memory available, so a header promising terabytes is refused at once.

Reference: LeCun, Cortes & Burges, "The MNIST database of handwritten digits",
http://yann.lecun.com/exdb/mnist/ (section "File formats for the MNIST database").
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tricklab.errors import UserInputError
from tricklab.memory import host_available_memory

#: IDX type code -> big-endian NumPy dtype of one element.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
# zlib's window-bits value that accepts exactly the gzip wrapper and checks its CRC and size.
_GZIP_WBITS = 16 + zlib.MAX_WBITS
# Compressed bytes read per call, and decompressed bytes made per call when only counting.
_CHUNK = 1 << 20
# How far past the promised size an overlong gzip stream is decompressed (and
# discarded) to report its real size; a longer one is reported as "more than".
_COUNT_BEYOND = 1 << 24
# The largest header: the 4 fixed bytes and 255 dimensions of 4 bytes each.
_MAX_HEADER = 4 + 4 * 255


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file into a NumPy array of native byte order.

    Gzip compression is recognised by the gzip magic bytes `1f 8b`, not by the
    file name, so `train-images-idx3-ubyte` may be either. The result of a
    one-byte type (uint8, int8) is a read-only view of the decompressed bytes,
    which avoids a copy of the 47 MB training images; copy it before writing.

    The header is checked before the data is read, so a damaged one cannot make
    the reader swallow the disk or the memory: a raw file's size must be what
    its header promises; a gzipped file's promise must fit in the memory
    available (`tricklab.memory.host_available_memory`), and its stream is decompressed only up to
    one byte past that promise.

    Args:
        path: The `.gz` or raw IDX file.

    Returns:
        An array with the file's shape and dtype (`uint8`, `int8`, `int16`,
        `int32`, `float32` or `float64`).

    Raises:
        UserInputError: If the file cannot be read, is not valid gzip, has a
            wrong magic number or type code, holds more or fewer data bytes
            than its dimensions call for (the message gives both sizes), or is
            gzipped with a header promising more data than the memory
            available; the message names the file.

    Reference:
        http://yann.lecun.com/exdb/mnist/ (IDX file format).
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            gzipped = file.read(2) == _GZIP_MAGIC
            file.seek(0)
            if gzipped:
                dtype, shape, data = _read_gzip(file, path)
            else:
                dtype, shape, data = _read_raw(file, path)
    except OSError as error:
        reason = error.strerror or error
        raise UserInputError(f"data file {path}: cannot be read ({reason})") from None
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array


def _read_raw(file: BinaryIO, path: Path) -> tuple[np.dtype, tuple[int, ...], bytes]:
    """Parse the header, compare its promise with the file's size, then read the data."""
    size = os.fstat(file.fileno()).st_size
    dtype, shape, offset = _parse_header(file.read(_MAX_HEADER), path)
    expected = math.prod(shape) * dtype.itemsize
    _check_size(path, expected, size - offset)
    file.seek(offset)
    data = file.read(expected)
    # The file may have shrunk since its size was taken.
    _check_size(path, expected, len(data))
    return dtype, shape, data


def _read_gzip(file: BinaryIO, path: Path) -> tuple[np.dtype, tuple[int, ...], bytes]:
    """Decompress the header, check its promise, then at most one byte more than promised."""
    stream = _GzipStream(file, path)
    header = stream.read(4)
    if len(header) == 4 and header[:2] == b"\0\0":
        header += stream.read(4 * header[3])
    dtype, shape, _ = _parse_header(header, path)
    expected = math.prod(shape) * dtype.itemsize
    memory = host_available_memory()
    if memory is not None and expected > memory:
        raise UserInputError(
            f"data file {path}: header promises {expected} bytes of data {list(shape)}, "
            f"more than the {memory} bytes of memory available; the header is damaged "
            "or the file is too large for this machine"
        )
    data = stream.read(expected + 1)
    if len(data) > expected:
        beyond = stream.count(_COUNT_BEYOND)
        found = len(data) + beyond
        if not stream.ended:
            raise UserInputError(
                f"data file {path}: too long, expected {expected} bytes of data, "
                f"found more than {found}"
            )
        _check_size(path, expected, found)
    _check_size(path, expected, len(data))
    return dtype, shape, data


def _check_size(path: Path, expected: int, found: int) -> None:
    """Refuse data of another size than the header's dimensions call for."""
    if found < expected:
        raise UserInputError(
            f"data file {path}: truncated, expected {expected} bytes of data, found {found}"
        )
    if found > expected:
        raise UserInputError(
            f"data file {path}: too long, expected {expected} bytes of data, found {found}"
        )


class _GzipStream:
    """The decompressed bytes of every gzip member of a file, read incrementally.

    zlib is faster than the gzip module here. Each call decompresses no more
    than asked, so a small stream that expands enormously (a damaged or
    malicious file) costs only what the caller is ready to hold.

    Args:
        file: The gzipped file, positioned at its start.
        path: Its path, for messages.
    """

    def __init__(self, file: BinaryIO, path: Path) -> None:
        self._file = file
        self._path = path
        self._input = b""  # compressed bytes not yet given to the decompressor
        self._decompressor = zlib.decompressobj(_GZIP_WBITS)
        self.ended = False  # the last member ended and nothing but zero padding follows

    def read(self, limit: int) -> bytes:
        """Up to `limit` decompressed bytes; fewer only where the stream ends."""
        parts: list[bytes] = []
        left = limit
        while left > 0 and not self.ended:
            part = self._decompress(left)
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def count(self, limit: int) -> int:
        """Decompress and discard up to `limit` bytes; return how many there were."""
        counted = 0
        while counted < limit and not self.ended:
            counted += len(self._decompress(min(_CHUNK, limit - counted)))
        return counted

    def _decompress(self, limit: int) -> bytes:
        """One step: at most `limit` (> 0) bytes, possibly none while input is fed."""
        if self._decompressor.eof:
            self._next_member()
            return b""
        exhausted = False
        if not self._input:
            self._input = self._file.read(_CHUNK)
            exhausted = not self._input
        try:
            # Called even without input: zlib may still hold output that an
            # earlier limit cut short.
            part = self._decompressor.decompress(self._input, limit)
        except zlib.error as error:
            raise UserInputError(
                f"data file {self._path}: corrupt gzip stream ({error})"
            ) from None
        self._input = self._decompressor.unconsumed_tail
        if exhausted and not part and not self._decompressor.eof:
            raise UserInputError(
                f"data file {self._path}: corrupt gzip stream (ends unexpectedly)"
            )
        return part

    def _next_member(self) -> None:
        """After a member's end: start the next one, or end at the file's end."""
        rest = self._decompressor.unused_data
        # gzip(1) itself tolerates zero padding after the last member, so do we.
        while True:
            rest = rest.lstrip(b"\0")
            if len(rest) >= 2:
                break
            more = self._file.read(_CHUNK)
            if not more:
                if rest:
                    break
                self.ended = True
                return
            rest += more
        if rest[:2] != _GZIP_MAGIC:
            raise UserInputError(
                f"data file {self._path}: corrupt gzip stream (garbage after the end)"
            )
        self._input = rest
        self._decompressor = zlib.decompressobj(_GZIP_WBITS)


def _parse_header(data: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return the element dtype, the shape and the byte offset of the data."""
    if len(data) < 4:
        raise UserInputError(
            f"data file {path}: not an IDX file, only {len(data)} bytes long"
        )
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise UserInputError(
            f"data file {path}: not an IDX file, wrong magic number 0x{data[:4].hex()} "
            f"(expected 0x0000 followed by a type code and the number of dimensions)"
        )
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_TYPES)
        raise UserInputError(
            f"data file {path}: unknown IDX type code 0x{type_code:02X} (known: {known})"
        )
    if ndim == 0:
        raise UserInputError(f"data file {path}: IDX header declares 0 dimensions")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise UserInputError(
            f"data file {path}: truncated header, expected {offset} bytes, found {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:offset])
    return IDX_TYPES[type_code], shape, offset
