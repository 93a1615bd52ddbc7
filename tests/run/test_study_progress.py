"""The study's live progress view: counts and ETA, as a live line or one line per run."""

from __future__ import annotations

import pytest

from tricklab.run.study_progress import StudyProgress
from tricklab.study.store import RunRecord


@pytest.mark.parametrize("mode", ["lines", "bar"])
def test_the_progress_view_counts_runs_and_gives_an_eta(mode, capsys):
    progress = StudyProgress(mode)
    progress.begin(total=4, finished=1, workers=2, label="tiny")
    for status in ("completed", "diverged"):
        progress.started()
        progress.ended(RunRecord(f"a/{status}", "a", 0, "main", "runs/a", {}, status=status,
                                 metrics={"test_accuracy": 0.5}), seconds=10.0)
    progress.started()
    assert progress._line() == "tiny: 3/4 done, 1 running, 1 diverged, 0 failed, ETA 5 s"
    progress.close()
    if mode == "lines":
        assert capsys.readouterr().err.splitlines() == [
            "tiny: 4 runs, 1 already finished, 2 workers",
            "[2/4] a/completed: completed test_accuracy=0.5000 (10.0 s)",
            "[3/4] a/diverged: diverged test_accuracy=0.5000 (10.0 s)",
        ]
