"""`tricklab predict` as a user meets it: a real subprocess on a real finished run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tricklab.recipe import recipe_from_dict
from tricklab.run import train_recipe

from ..run.test_predict import tiny_with_dropout


def tricklab(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tricklab", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_predict_prints_the_table_and_writes_the_files(fixture_data, cli_env, tmp_path):
    run = train_recipe(recipe_from_dict(tiny_with_dropout()), out=tmp_path / "run",
                       progress="none").run_dir
    done = tricklab("predict", str(run), "--mc-samples", "10", "--split", "val", "--seed", "1",
                    "--batch-size", "64", env=cli_env)
    assert done.returncode == 0, done.stderr
    summary = json.loads((run / "predictions.json").read_text())
    assert summary["mc_samples"] == 10 and summary["split"] == "val" and summary["seed"] == 1
    assert f"accuracy {summary['accuracy']:.4f}" in done.stdout
    assert f"mean entropy {summary['mean_entropy']:.4f} nats" in done.stdout
    assert "val: 500 samples, 10 pass(es)" in done.stdout
    last = summary["confidence_bins"][-1]
    assert f"{last['confidence_min']:.3f}-{last['confidence_max']:.3f}" in done.stdout
    # The paths written are results too: stdout, for a script to read.
    assert done.stdout.splitlines()[-4:] == [
        f"predictions: {run / 'predictions.csv'}", f"summary: {run / 'predictions.json'}",
        f"plot: {run / 'predictions_confusion_matrix.png'}",
        f"plot: {run / 'plots' / 'accuracy_vs_confidence.png'}"]
    assert done.stderr == ""
    # --json: the summary written beside the CSV, alone on stdout.
    output = tmp_path / "val.csv"
    again = tricklab("predict", str(run), "--split", "val", "--output", str(output), "--json",
                     env=cli_env)
    assert again.returncode == 0, again.stderr
    written = json.loads(output.with_suffix(".json").read_text())
    assert json.loads(again.stdout) == written
    assert written["rows"] == str(output) and written["count"] == 500
    assert f"predictions: {output}" in again.stderr and "Traceback" not in again.stderr


def test_bad_input_exits_2_with_one_line(cli_env, tmp_path: Path):
    # Checked before anything heavy is imported; predict_run's own errors are in tests/run.
    done = tricklab("predict", str(tmp_path), "--mc-samples", "0", env=cli_env)
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("error: Invalid value for '--mc-samples': "
                           "Input should be greater than or equal to 1\n")
    assert done.stdout == "" and not (tmp_path / "predictions.json").exists()
