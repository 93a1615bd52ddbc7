"""Finding dataset folders in the search roots, and downloading from a real local HTTP server."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tricklab.data import fetch, locate
from tricklab.data.sources import FILES, SOURCES, dataset_files, require, search_roots
from tricklab.errors import UserInputError

GZ_NAMES = [f"{name}.gz" for name in FILES.values()]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_folder(folder: Path, names: list[str] | None = None) -> Path:
    """Create `folder` holding empty files under `names` (default: the four `.gz` files)."""
    folder.mkdir(parents=True)
    for name in GZ_NAMES if names is None else names:
        (folder / name).touch()
    return folder


def test_search_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = make_folder(isolated / "system" / "fashion_mnist")
    assert locate("fashion_mnist") == system
    cache = make_folder(isolated / "cache" / "fashion_mnist")
    assert locate("fashion_mnist") == cache
    user = make_folder(isolated / "user" / "fashion_mnist")
    monkeypatch.setenv("TRICKLAB_DATA", str(isolated / "user"))
    assert locate("fashion_mnist") == user
    assert search_roots() == [isolated / "user", isolated / "cache", isolated / "system"]


def test_data_path_holds_several_roots(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    second = make_folder(isolated / "b" / "mnist")
    monkeypatch.setenv("TRICKLAB_DATA", os.pathsep.join([str(isolated / "a"), str(isolated / "b")]))
    assert locate("mnist") == second


def test_hyphenated_folder_name(isolated: Path) -> None:
    debian = make_folder(isolated / "system" / "fashion-mnist")
    assert locate("fashion_mnist") == debian


def test_incomplete_folder_is_skipped(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_folder(isolated / "user" / "fashion_mnist", GZ_NAMES[:3])
    complete = make_folder(isolated / "cache" / "fashion_mnist")
    monkeypatch.setenv("TRICKLAB_DATA", str(isolated / "user"))
    assert locate("fashion_mnist") == complete


def test_raw_and_gzipped_files_mix(isolated: Path) -> None:
    names = [*GZ_NAMES[:2], *(name.removesuffix(".gz") for name in GZ_NAMES[2:])]
    folder = make_folder(isolated / "cache" / "mnist", names)
    assert locate("mnist") == folder
    assert {path.name for path in dataset_files(folder).values()} == set(names)


def test_nothing_found(isolated: Path) -> None:
    assert locate("fashion_mnist") is None


def test_an_archive_source_needs_its_archive(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # CIFAR's folder holds the downloaded archive itself; IDX files or other names do not count.
    make_folder(isolated / "user" / "cifar10", ["cifar-10-binary.tar.gz.part", *GZ_NAMES])
    cached = make_folder(isolated / "cache" / "cifar10", ["cifar-10-binary.tar.gz"])
    monkeypatch.setenv("TRICKLAB_DATA", str(isolated / "user"))
    assert SOURCES["cifar10"].layout == "archive" and SOURCES["mnist"].layout == "idx"
    assert locate("cifar10") == cached
    assert fetch("cifar10", "http://127.0.0.1:9/") == cached
    assert locate("cifar100") is None
    assert not SOURCES["cifar10"].holds(isolated / "user" / "cifar10")
    assert SOURCES["mnist"].holds(isolated / "user" / "cifar10")


def test_require_downloads_nothing_and_says_how(isolated: Path) -> None:
    with pytest.raises(UserInputError) as missing:
        require("cifar100")
    message = str(missing.value)
    assert "\n" not in message and message.startswith("dataset 'cifar100' not found in ")
    assert f"run `tricklab data fetch cifar100` to download it into {isolated / 'cache'}" in message
    assert list(isolated.rglob("*")) == []
    folder = make_folder(isolated / "system" / "cifar100", ["cifar-100-binary.tar.gz"])
    assert require("cifar100") == folder


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder and records every requested path on the server."""

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[http.server.ThreadingHTTPServer]:
    """Run a real HTTP server on 127.0.0.1 serving `folder`; `.requests` lists the paths."""
    handler = functools.partial(CountingHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        httpd.requests = []
        thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield httpd
        finally:
            httpd.shutdown()
            thread.join()


@pytest.fixture
def server(fixture_dir: Path) -> Iterator[http.server.ThreadingHTTPServer]:
    """A server of the fixture files."""
    with serve(fixture_dir) as httpd:
        yield httpd


def url_of(httpd: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}/"


@pytest.fixture
def fixture_sha256(fixture_dir: Path) -> dict[str, str]:
    """The fixture's own hashes, standing in for the registered ones."""
    return {name: sha256_of(fixture_dir / name) for name in GZ_NAMES}


def test_download_verifies_and_never_repeats(
    isolated: Path, server: http.server.ThreadingHTTPServer, fixture_sha256: dict[str, str]
) -> None:
    folder = fetch("fashion_mnist", url_of(server), checksums=fixture_sha256)
    assert folder == isolated / "cache" / "fashion_mnist"
    assert sorted(path.name for path in folder.iterdir()) == sorted(GZ_NAMES)
    for name, digest in fixture_sha256.items():
        assert sha256_of(folder / name) == digest
    assert sorted(server.requests) == sorted(f"/{name}" for name in GZ_NAMES)
    assert fetch("fashion_mnist", url_of(server), checksums=fixture_sha256) == folder
    assert len(server.requests) == 4


def test_download_url_from_environment_and_resume(
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: http.server.ThreadingHTTPServer,
    fixture_dir: Path,
    fixture_sha256: dict[str, str],
) -> None:
    folder = isolated / "cache" / "fashion_mnist"
    folder.mkdir(parents=True)
    (folder / GZ_NAMES[0]).write_bytes((fixture_dir / GZ_NAMES[0]).read_bytes())
    monkeypatch.setenv("TRICKLAB_DATA_URL", url_of(server).rstrip("/"))
    assert fetch("fashion_mnist", checksums=fixture_sha256) == folder
    assert sorted(server.requests) == sorted(f"/{name}" for name in GZ_NAMES[1:])


def test_checksum_mismatch_leaves_nothing(
    isolated: Path, server: http.server.ThreadingHTTPServer
) -> None:
    wrong = dict.fromkeys(GZ_NAMES, "0" * 64)
    with pytest.raises(UserInputError) as caught:
        fetch("fashion_mnist", url_of(server), checksums=wrong)
    message = str(caught.value)
    assert "train-images-idx3-ubyte.gz: SHA-256 mismatch" in message
    assert "0" * 64 in message and "got " in message
    assert list((isolated / "cache").rglob("*")) == []


def test_registered_checksums_reject_other_files(
    isolated: Path, server: http.server.ThreadingHTTPServer
) -> None:
    with pytest.raises(UserInputError, match=SOURCES["mnist"].archive_sha256[GZ_NAMES[0]]):
        fetch("mnist", url_of(server))
    assert not (isolated / "cache" / "mnist").exists()


def test_http_error(isolated: Path, tmp_path: Path) -> None:
    with serve(tmp_path) as empty, pytest.raises(UserInputError, match="failed: HTTP 404"):
        fetch("mnist", url_of(empty))


def test_unreachable_server(isolated: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(UserInputError) as caught:
        fetch("fashion_mnist", url, timeout=5)
    message = str(caught.value)
    assert message.startswith("dataset 'fashion_mnist' not found in ")
    assert str(isolated / "cache") in message and f"download from {url}" in message
    assert "set TRICKLAB_DATA" in message and "dataset-fashion-mnist" in message
    assert not (isolated / "cache" / "fashion_mnist").exists()


def test_found_locally_needs_no_network(isolated: Path) -> None:
    debian = make_folder(isolated / "system" / "fashion-mnist")
    assert fetch("fashion_mnist", "http://127.0.0.1:9/") == debian


def test_unknown_dataset(isolated: Path) -> None:
    with pytest.raises(UserInputError, match="did you mean 'fashion_mnist'"):
        fetch("fashion_mnst")
