"""Where the files of a built-in dataset live, and how they get there.

A dataset's `Source` has one of two layouts. `idx`: the folder holds the four
official IDX files, each gzipped or raw: `train-images-idx3-ubyte[.gz]`,
`train-labels-idx1-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`,
`t10k-labels-idx1-ubyte[.gz]` (MNIST, Fashion-MNIST). `archive`: the folder
holds the one official `.tar.gz` as downloaded, which the dataset's loader reads
in place (CIFAR, see `tricklab.data.cifar`). `locate` looks for a complete
folder, in this order, under every folder of `$TRICKLAB_DATA` (separated like
`PATH`), the cache `$TRICKLAB_CACHE` (default `~/.cache/tricklab`) and
`/usr/share/datasets` (Debian's `dataset-fashion-mnist`), each time as
`<name>/` and as the hyphenated `<na-me>/`. `fetch` downloads what is missing
into the cache, verifying each file's SHA-256 while it streams in and renaming
it into place only once it matches.

Two kinds of checksum are registered per IDX file. `archive_sha256` is the hash
of the official file served at the download URL (it checks downloads);
`content_sha256` is the hash of the decompressed IDX bytes. Debian recompressed
the Fashion-MNIST archives (their gzip headers differ), so its `.gz` files
match the official ones only in content. An `archive` source has the first
kind only, for its one file.

Reference: Xiao, Rasul & Vollgraf (2017), arXiv:1708.07747, and
https://github.com/zalandoresearch/fashion-mnist (download URL); LeCun, Cortes
& Burges, http://yann.lecun.com/exdb/mnist/, mirrored by PyTorch at
https://ossci-datasets.s3.amazonaws.com/mnist/; Krizhevsky (2009),
https://www.cs.toronto.edu/~kriz/cifar.html (the binary versions). The
download hashes equal tensorflow-datasets'
`url_checksums/{fashion_mnist,mnist,cifar10,cifar100}.txt`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tricklab.atomic import atomic_open
from tricklab.errors import UserInputError, unknown_name_message
from tricklab.paths import cache_dir

#: Role -> file name without `.gz`, as the official archives name them.
FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: System-wide data folder where Debian's `dataset-*` packages install.
SYSTEM_DATA_DIR = Path("/usr/share/datasets")

DEFAULT_TIMEOUT = 60.0
_CHUNK = 1 << 20


Layout = Literal["idx", "archive"]
"""How a dataset's folder holds it: the four IDX files, or the downloaded archive itself."""


@dataclass(frozen=True)
class Source:
    """Official download location, files and checksums of one built-in dataset.

    Args:
        url: Base URL; a file's address is the URL followed by its name.
        archive_sha256: SHA-256 of each file downloaded, keyed by its name: the
            four IDX `.gz` files, or the one `.tar.gz` archive. Downloads happen
            in this order.
        content_sha256: SHA-256 of each decompressed IDX file, keyed by its name.
            Defaults to `{}` (an archive has none).
        debian_package: Debian package that installs the files. Defaults to `""`.
        layout: `idx` (a complete folder holds the four IDX files, gzipped or
            raw) or `archive` (it holds every file of `archive_sha256` as
            downloaded). Defaults to `"idx"`.
    """

    url: str
    archive_sha256: Mapping[str, str]
    content_sha256: Mapping[str, str] = field(default_factory=dict)
    debian_package: str = ""
    layout: Layout = "idx"

    def holds(self, folder: str | os.PathLike[str]) -> bool:
        """Whether `folder` holds the whole dataset in this source's layout.

        Args:
            folder: A folder that may hold the dataset's files.
        """
        if self.layout == "idx":
            return dataset_files(folder) is not None
        return all(Path(folder, name).is_file() for name in self.archive_sha256)


def _sha256_table(text: str) -> dict[str, str]:
    """Parse `sha256sum` output (`<hash>  <file name>` per line) into name -> hash."""
    return {name: digest for digest, name in (line.split() for line in text.strip().splitlines())}


SOURCES: dict[str, Source] = {
    "fashion_mnist": Source(
        url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        archive_sha256=_sha256_table("""
3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84  train-images-idx3-ubyte.gz
a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845  train-labels-idx1-ubyte.gz
346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073  t10k-images-idx3-ubyte.gz
67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5  t10k-labels-idx1-ubyte.gz
"""),
        content_sha256=_sha256_table("""
c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888  train-images-idx3-ubyte
bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9  train-labels-idx1-ubyte
5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b  t10k-images-idx3-ubyte
0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34  t10k-labels-idx1-ubyte
"""),
        debian_package="dataset-fashion-mnist",
    ),
    "mnist": Source(
        url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        archive_sha256=_sha256_table("""
440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609  train-images-idx3-ubyte.gz
3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c  train-labels-idx1-ubyte.gz
8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6  t10k-images-idx3-ubyte.gz
f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6  t10k-labels-idx1-ubyte.gz
"""),
        content_sha256=_sha256_table("""
ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte
0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte
"""),
    ),
    "cifar10": Source(
        url="https://www.cs.toronto.edu/~kriz/",
        archive_sha256=_sha256_table("""
c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd  cifar-10-binary.tar.gz
"""),
        layout="archive",
    ),
    "cifar100": Source(
        url="https://www.cs.toronto.edu/~kriz/",
        archive_sha256=_sha256_table("""
58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec  cifar-100-binary.tar.gz
"""),
        layout="archive",
    ),
}


def search_roots() -> list[Path]:
    """Return the folders searched for `<name>/`, in order: `$TRICKLAB_DATA`, cache, system."""
    entries = os.environ.get("TRICKLAB_DATA", "").split(os.pathsep)
    return [*(Path(entry).expanduser() for entry in entries if entry), cache_dir(), SYSTEM_DATA_DIR]


def dataset_files(folder: str | os.PathLike[str]) -> dict[str, Path] | None:
    """Map each role of `FILES` to its file in `folder`, or return `None` if one is missing.

    Args:
        folder: A folder that may hold the four IDX files, gzipped or raw.
    """
    found = {}
    for role, name in FILES.items():
        for candidate in (Path(folder, f"{name}.gz"), Path(folder, name)):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            return None
    return found


def locate(name: str) -> Path | None:
    """Return the first folder holding all the files of dataset `name`, or `None`.

    Args:
        name: Registry name, e.g. `fashion_mnist`; `fashion-mnist/` folders count too.
            A name without a registered `Source` is looked for as four IDX files.
    """
    source = SOURCES.get(name)
    for root in search_roots():
        for folder_name in dict.fromkeys((name, name.replace("_", "-"))):
            folder = root / folder_name
            if source.holds(folder) if source is not None else dataset_files(folder) is not None:
                return folder
    return None


def require(name: str) -> Path:
    """Return the folder of dataset `name` found on this machine, downloading nothing.

    For the datasets too large to download unasked in the middle of a run
    (CIFAR's archives are 170 MB): the message says how to fetch them.

    Args:
        name: Registry name of a dataset with a `Source`, e.g. `cifar10`.

    Raises:
        UserInputError: If the files are nowhere, one line naming the folders
            searched and the command that downloads them.
    """
    found = locate(name)
    if found is None:
        raise UserInputError(
            f"dataset '{name}' not found in {_searched(name)}; run `tricklab data fetch {name}` "
            f"to download it into {cache_dir() / name} (SHA-256 verified), or "
            f"{_hint(name, SOURCES[name])}"
        )
    return found


def fetch(
    name: str,
    base_url: str | None = None,
    *,
    checksums: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Return the folder of dataset `name`, downloading it into the cache if it is nowhere.

    Files already in the cache are kept, so an interrupted download resumes with
    the missing files only. Each download goes to a temporary file beside its
    target, is hashed while it streams in, and is renamed into place only once
    its SHA-256 matches.

    Args:
        name: Registry name: `fashion_mnist`, `mnist`, `cifar10` or `cifar100`.
        base_url: Where to download from. Defaults to `None`: `$TRICKLAB_DATA_URL`
            if set, else the official URL of `SOURCES[name]`.
        checksums: Expected SHA-256 per downloaded file name (`.gz` or `.tar.gz`),
            replacing the registered ones (for mirrors and tests). Defaults to `None`.
        timeout: Seconds to wait on the network per request. Defaults to `60.0`.

    Returns:
        The folder holding the dataset's files.

    Raises:
        UserInputError: If `name` is unknown, or the files are nowhere and the
            download fails or a file's SHA-256 does not match.
    """
    if name not in SOURCES:
        raise UserInputError(unknown_name_message("dataset", "dataset", name, SOURCES))
    found = locate(name)
    if found is not None:
        return found
    source = SOURCES[name]
    url = (base_url or os.environ.get("TRICKLAB_DATA_URL") or source.url).rstrip("/") + "/"
    expected = {**source.archive_sha256, **(checksums or {})}
    folder = cache_dir() / name
    created = not folder.exists()
    try:
        for file_name in source.archive_sha256:
            target = folder / file_name
            if not target.exists():
                _download(url + file_name, target, expected[file_name], timeout)
    except _DownloadError as error:
        raise UserInputError(
            f"dataset '{name}' not found in {_searched(name)} and download from "
            f"{error.url} failed: {error.reason}; {_hint(name, source)}"
        ) from None
    finally:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return folder


class _DownloadError(Exception):
    """A download that failed for a reason outside the user's data (network, HTTP, disk)."""

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(url, reason)
        self.url = url
        self.reason = reason


def _download(url: str, target: Path, sha256: str, timeout: float) -> None:
    """Stream `url` into a temporary file beside `target`; rename it there if `sha256` matches."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_open(
            target, "wb"
        ) as file:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                file.write(chunk)
            if digest.hexdigest() != sha256.lower():
                # Raising inside atomic_open deletes the temporary file.
                raise UserInputError(
                    f"download {url}: SHA-256 mismatch, expected {sha256}, got "
                    f"{digest.hexdigest()}; the file was discarded"
                )
    except urllib.error.HTTPError as error:
        raise _DownloadError(url, f"HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise _DownloadError(url, error.reason) from None
    except (OSError, http.client.HTTPException) as error:
        raise _DownloadError(url, error) from None


def _searched(name: str) -> str:
    hyphenated = name.replace("_", "-")
    names = f"{name}/" if hyphenated == name else f"{name}/ or {hyphenated}/"
    return f"{', '.join(str(root) for root in search_roots())} (as {names})"


def _hint(name: str, source: Source) -> str:
    hint = f"set TRICKLAB_DATA to a folder holding {name}/"
    if source.layout == "archive":
        hint += f" with {', '.join(source.archive_sha256)} in it"
    if source.debian_package:
        hint += f" or install Debian's {source.debian_package}"
    return hint
