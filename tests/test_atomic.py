"""Atomic writes: all or nothing, ordinary permissions, strict JSON."""

from __future__ import annotations

import errno
import json
import math
import os
import stat

import pytest
import torch

from tricklab import atomic


def test_a_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "deep" / "file.txt"
    atomic.write_text(target, "first")
    atomic.write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "file.txt"
    atomic.write_text(target, "old")

    def fail(file):
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic.write_with(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_files_get_the_permissions_of_an_ordinary_open(tmp_path):
    atomic.write_text(tmp_path / "atomic.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "atomic.txt").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not mkstemp's private 0600


def test_json_turns_nan_and_infinity_into_null(tmp_path):
    atomic.write_json(tmp_path / "r.json", {"a": math.nan, "b": [1.0, math.inf], "c": 2})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": None, "b": [1.0, None], "c": 2}


def test_the_os_error_under_a_writer_own_error_surfaces_with_the_file_named(tmp_path):
    # torch.save on a full disk: its zip writer's RuntimeError hides the OSError.
    def writer(file):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as error:
            raise RuntimeError("unexpected pos 1664 vs 1558") from error

    target = tmp_path / "checkpoint.pt"
    with pytest.raises(OSError) as raised:
        atomic.write_with(target, writer)
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_a_ctrl_c_inside_torch_save_stays_a_ctrl_c_and_keeps_the_old_file(tmp_path):
    # torch.save turns an interruption in a write into its zip writer's RuntimeError;
    # a training run must still see a stop (status `interrupted`), not a crash.
    class InterruptedFile:
        def __init__(self, file):
            self.file, self.writes = file, 0

        def write(self, data):
            self.writes += 1
            if self.writes == 3:
                raise KeyboardInterrupt
            return self.file.write(data)

        def flush(self):
            self.file.flush()

    target = tmp_path / "epoch_0002.pt"
    atomic.write_text(target, "the previous checkpoint")
    state = {"weights": torch.zeros(1000), "bias": torch.ones(10)}
    with pytest.raises(KeyboardInterrupt):
        atomic.write_with(target, lambda file: torch.save(state, InterruptedFile(file)))
    assert target.read_text() == "the previous checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
