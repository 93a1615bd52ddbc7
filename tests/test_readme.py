"""The README's Python examples run as written (on the real Fashion-MNIST, when it is here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tricklab.data import locate

from .conftest import REPOSITORY

README = (REPOSITORY / "README.md").read_text()
WALK_TITLE = "### From a CSV file to a report and predictions"
_walk_start = README.index(WALK_TITLE)
_walk_end = README.index("\n### ", _walk_start + len(WALK_TITLE))
WALK = README[_walk_start:_walk_end]
"""The newcomer's walk from a CSV file to a report and predictions, run as one session."""
BLOCKS = re.findall(r"```python\n(.*?)```", README[:_walk_start] + README[_walk_end:], re.DOTALL)


def _full_dataset_here() -> bool:
    saved = os.environ.pop("TRICKLAB_DATA", None)
    try:
        return locate("fashion_mnist") is not None
    finally:
        if saved is not None:
            os.environ["TRICKLAB_DATA"] = saved


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.skipif(not _full_dataset_here(), reason="the full Fashion-MNIST is not installed")
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path):
    (tmp_path / "recipes").symlink_to(REPOSITORY / "recipes")
    env = {k: v for k, v in os.environ.items() if k != "TRICKLAB_DATA"}
    done = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_walk_from_a_csv_file_to_a_report_and_predictions_runs_as_written(tmp_path):
    # Its shell and Python blocks in order, in one folder, as a newcomer types them.
    (tmp_path / ".venv").symlink_to(sys.prefix)  # the virtual environment running the tests
    blocks = re.findall(r"```(sh|python)\n(.*?)```", WALK, re.DOTALL)
    assert [kind for kind, _ in blocks] == ["sh", "sh", "sh", "sh", "python"]
    env = {k: v for k, v in os.environ.items() if k != "TRICKLAB_DATA"}
    for kind, code in blocks:
        command = ["bash", "-e", "-c", code] if kind == "sh" else [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (code, done.stderr[-3000:])
    header = WALK.split("head -1 wine_predictions.csv\n# ", 1)[1].splitlines()[0]
    assert "[3 rows x 5 columns]" in done.stdout  # the Python example printed its table
    rows = (tmp_path / "wine_predictions.csv").read_text().splitlines()
    assert rows[0] == header and len(rows) == 21
    summary = json.loads((tmp_path / "wine_predictions.json").read_text())
    assert summary["count"] == 20 and summary["accuracy"] > 0.8
    assert set(summary["per_class"]) == {"barbera", "grignolino", "nebbiolo"}
    assert (tmp_path / "wine_predictions_confusion_matrix.png").is_file()
    report = (tmp_path / "runs" / "wine-study" / "report.html").read_text()
    assert "Do SELU or dropout help on my wine table?" in report
    # A tired user's next command: predictions over their own training file. Refused.
    training_file = (tmp_path / "wine.csv").read_bytes()
    refused = subprocess.run(
        [".venv/bin/tricklab", "predict", "runs/wine", "--input", "new_wines.csv", "--output",
         "wine.csv"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and refused.stderr == (
        "error: --output: wine.csv exists and is not a predictions file tricklab wrote; "
        "choose another name or move it away\n")
    assert (tmp_path / "wine.csv").read_bytes() == training_file


USER_FACING = [REPOSITORY / "README.md", REPOSITORY / "docs" / "DESIGN.md",
               *sorted((REPOSITORY / "recipes").rglob("*.yaml")),
               *sorted((REPOSITORY / "studies").glob("*.yaml"))]
NOTEBOOK_AS_SEED = re.compile(
    # "seed 000", "Seed 004's", "seeds 000 and 003", "the seed-000 model"; and the
    # notebooks as "the seed's notebook", "the seeds' notes", "the seeds' skip-connection
    # section", "the seeds' \"Conv - BN\" block".
    r"(?i)\bseeds?[ _-]?0\d\d\b|\bseeds?(?:'s|')?[ -]?(?:notes?|notebooks?|[\w-]+ section)\b"
    r"|\bseeds' \"")
"""A notebook the project grew from named as a "seed": to a user, a seed is a random seed."""


def test_the_pattern_tells_notebooks_named_as_seeds_from_random_seeds():
    for notebook in ["Seed 004's ladder", "seeds 000 and 003", "the seed-000 model",
                     "as the seed's notebook does", "the seeds' notes", "the seed notebook's",
                     "the seeds' skip-connection section", "the seeds' \"Conv - BN\" block"]:
        assert NOTEBOOK_AS_SEED.search(notebook), notebook
    for random_seed in ["seed: 0", "seeds 0..4", "seeds 0-4", "seed 0", "--seed 0",
                        "runs/a/seed-0/", "data_seed: 0", "5 seeds of 10 epochs", "seed-42",
                        "the seed alone moves accuracy", "each seed's run directory"]:
        assert not NOTEBOOK_AS_SEED.search(random_seed), random_seed


def test_user_facing_text_names_the_notebooks_by_what_they_are():
    assert len(USER_FACING) > 40
    found = [f"{path.relative_to(REPOSITORY)}:{number}: {line.strip()}"
             for path in USER_FACING
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if NOTEBOOK_AS_SEED.search(line)]
    assert found == []


def test_the_readme_links_to_the_design_document_in_the_repository():
    links = {}
    for document in (REPOSITORY / "README.md", REPOSITORY / "docs" / "DESIGN.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text()):
            if "://" not in target:
                links[(document.name, target)] = (document.parent / target).resolve()
    assert ("README.md", "docs/DESIGN.md") in links
    assert {link: path for link, path in links.items() if not path.is_file()} == {}
    assert "../shared/" not in README
