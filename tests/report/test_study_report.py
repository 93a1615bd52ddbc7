"""The study report: a self-contained HTML page, a Markdown summary and a terminal table.

The store is filled the way the study driver fills it (4 variants × 5 seeds with
per-epoch histories, a diverged and a failed run, a learning-rate search, a
target, a variant that extends another, and each run's folder); the page is then
checked as text and in a real headless Chromium.
"""

from __future__ import annotations

import base64
import html
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from rich.console import Console

from tricklab.differences import ABSENT
from tricklab.report.study_recipes import changes
from tricklab.report.study_report import study_table, write_study_report
from tricklab.study.store import LearningRateChoice, RunRecord, StudyStore

from ..browser import ARTIFACTS, render

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Final test accuracy per seed; means: dropout 0.870 > baseline 0.850 > batch_norm 0.849
# > high_lr 0.803 (3 runs; one more diverged and one failed).
FINALS = {
    "baseline": [0.848, 0.852, 0.850, 0.846, 0.854],
    "dropout": [0.868, 0.872, 0.870, 0.866, 0.874],
    "batch_norm": [0.853, 0.845, 0.851, 0.849, 0.847],
    "high_lr": [0.80, 0.82, 0.79, None, None],
}
RANKED = ["dropout", "baseline", "batch_norm", "high_lr"]
DESCRIPTION = "<script>alert('x')</script> normalizes & rescales"
ERROR = "Traceback (most recent call last):\nRuntimeError: out of memory <allocating 4 GiB>"


DROPOUT = {"dropout": {"rate": 0.2}}
BATCH_NORM = {"batch_normalization": {}}


def _recipe(name: str, learning_rate: float) -> dict[str, Any]:
    """A variant's resolved recipe: dropout adds a layer, batch_norm (which extends dropout)
    one more, high_lr raises the learning rate."""
    layers: list[dict[str, Any]] = [
        {"flatten": {}}, {"dense": {"units": 300, "kernel_initializer": "he_normal"}},
        {"leaky_relu": {}}, {"dense": {"units": 10, "activation": "softmax"}}]
    if name in ("dropout", "batch_norm"):
        layers.insert(3, DROPOUT)
    if name == "batch_norm":
        layers.insert(2, BATCH_NORM)
    return {
        "name": f"chapter11-{name}", "seed": 0,
        "data": {"dataset": "fashion_mnist", "validation": 5000, "scale": "unit"},
        "model": {"input_shape": [28, 28], "layers": layers},
        "train": {"optimizer": {"name": "sgd",
                                "learning_rate": 0.5 if name == "high_lr" else learning_rate},
                  "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"],
                  "batch_size": 32, "epochs": 8},
    }


def _spec(variants: list[str]) -> dict[str, Any]:
    descriptions = {"batch_norm": DESCRIPTION}
    return {
        "name": "chapter11", "question": "Which tricks beat plain SGD on Fashion-MNIST?",
        "description": "Four variants, five seeds.", "metric": "test_accuracy",
        "higher_is_better": True, "baseline": "baseline", "seeds": [0, 1, 2, 3, 4],
        "target": {"metric": "val_accuracy", "value": 0.8}, "budget": {"epochs": 8},
        "quick": False,
        "variants": {v: {"description": descriptions.get(v), "recipe": _recipe(v, 0.01),
                         "lr_search": v == "dropout",
                         "extends": "dropout" if v == "batch_norm" else None}
                     for v in variants},
        "lr_search": {"grid": [1e-3, 1e-2, 1e-1], "seeds": [0, 1], "metric": "val_accuracy"},
    }


def _result(final: float | None, seed: int, epochs: int = 8) -> dict[str, Any]:
    if final is None:  # diverged: the loss blew up at epoch 3
        nan = math.nan
        return {"status": "diverged", "epochs_run": 3, "wall_time_s": 3.3,
                "metrics": {"test_accuracy": nan, "val_accuracy": nan, "val_loss": nan},
                "history": {"loss": [2.0, 40.0, nan], "val_accuracy": [0.4, 0.1, nan],
                            "time_s": [1.1, 1.1, 1.1]}}
    curve = [final - (final - 0.6) * 0.6 ** epoch for epoch in range(epochs)]
    return {
        "status": "completed", "epochs_run": epochs, "wall_time_s": epochs * (1.0 + 0.05 * seed),
        "metrics": {"test_accuracy": final, "val_accuracy": curve[-1], "val_loss": 1.2 - final,
                    "train_accuracy": final + 0.03, "train_loss": 1.1 - final},
        "history": {"accuracy": [a + 0.03 for a in curve], "loss": [1.1 - a for a in curve],
                    "val_accuracy": curve, "val_loss": [1.2 - a for a in curve],
                    "lr": [0.01] * epochs, "time_s": [1.0 + 0.05 * seed] * epochs},
    }


def _add(store: StudyStore, variant: str, seed: int, phase: str = "main",
         learning_rate: float | None = None) -> str:
    run_id = (f"{variant}/seed-{seed}" if phase == "main"
              else f"{variant}/lr-{learning_rate:g}/seed-{seed}")
    store.add_runs([RunRecord(run_id, variant, seed, phase, f"runs/{run_id}",
                              _recipe(variant, learning_rate or 0.01), learning_rate)])
    return run_id


def _start(store: StudyStore, study_dir: Path, run_id: str) -> None:
    """Mark a run started and make its folder, as the driver does before training it."""
    store.mark_started(run_id)
    folder = study_dir / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(f"name: {run_id}\n", encoding="utf-8")


def _build_study(study_dir: Path, finished: bool = True) -> Path:
    """A study directory whose store holds what a real study would have written."""
    with StudyStore.create(study_dir / "study.db", _spec(list(FINALS)), "abc") as store:
        for rate, score in ((1e-3, 0.82), (1e-2, 0.86), (1e-1, 0.78)):
            for seed in (0, 1):
                run_id = _add(store, "dropout", seed, "lr_search", rate)
                _start(store, study_dir, run_id)
                store.record_result(run_id, _result(score + 0.004 * seed, seed))
        store.set_learning_rate_choice(LearningRateChoice(
            "dropout", 1e-2, "val_accuracy", {1e-3: 0.822, 1e-2: 0.862, 1e-1: 0.782}))
        for variant, finals in FINALS.items():
            for seed, final in enumerate(finals):
                run_id = _add(store, variant, seed)
                if not finished and seed >= 3:
                    continue  # still pending
                _start(store, study_dir, run_id)
                if variant == "high_lr" and seed == 4:
                    store.set_status(run_id, "failed", ERROR)
                else:
                    store.record_result(run_id, _result(final, seed))
    return study_dir


class _Page(HTMLParser):
    """Collects every resource reference, image source and ranking-table row of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.images: list[str] = []
        self.rows: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.references += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "data")]
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "tr" and "data-variant" in values:
            self.rows.append(values["data-variant"] or "")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_study_report(_build_study(tmp_path_factory.mktemp("study")))


def _page(html_path: Path) -> _Page:
    parser = _Page()
    parser.feed(html_path.read_text(encoding="utf-8"))
    return parser


def test_writes_both_reports_beside_the_store_and_nothing_else(report: tuple[Path, Path]) -> None:
    html_path, markdown_path = report
    assert html_path.name == "report.html" and markdown_path.name == "report.md"
    assert sorted(p.name for p in html_path.parent.iterdir() if not p.name.startswith(
        "study.db")) == ["report.html", "report.md", "runs"]


def test_page_references_no_network_resource(report: tuple[Path, Path]) -> None:
    text = report[0].read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"url\(|@import|<script|<iframe|<link[^>]+stylesheet", text)
    page = _page(report[0])
    assert page.references, "the page should carry its images inline"
    # Images inline; links within the page, or relative to it into the study's run folders.
    for reference in page.references:
        assert reference.startswith(("data:", "#", "runs/")), reference


def test_every_image_is_an_inline_png(report: tuple[Path, Path]) -> None:
    images = _page(report[0]).images
    # forest plot, wall time, learning-rate search (the learning curves are inline SVG)
    assert len(images) == 3
    for source in images:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        assert base64.b64decode(source[len(prefix):], validate=True).startswith(PNG_SIGNATURE)


def test_ranking_rows_follow_the_means(report: tuple[Path, Path]) -> None:
    page = _page(report[0])
    assert page.rows == RANKED
    text = report[0].read_text(encoding="utf-8")
    ranks = re.findall(r'<tr[^>]*data-variant="[^"]*"><td class="rank">(\d+)</td>', text)
    assert ranks == ["1", "2", "3", "4"]


def test_verdicts_counts_and_target_are_in_the_table(report: tuple[Path, Path]) -> None:
    text = report[0].read_text(encoding="utf-8")
    rows = dict(zip(_page(report[0]).rows, re.findall(r"<tr[^>]*data-variant.*?</tr>", text),
                    strict=True))
    assert ">better<" in rows["dropout"]
    assert ">baseline<" in rows["baseline"]
    assert ">no detectable difference<" in rows["batch_norm"]
    assert ">worse<" in rows["high_lr"]
    assert "3 ok, 1 diverged, 1 failed" in rows["high_lr"]
    assert "(5/5)" in rows["dropout"]  # all five seeds reached the target
    assert "0.8700 ± " in rows["dropout"]


def test_user_text_is_escaped(report: tuple[Path, Path]) -> None:
    text = report[0].read_text(encoding="utf-8")
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; normalizes &amp; rescales" in text
    # The failed run's error is shown, escaped, with its last line up front.
    assert "RuntimeError: out of memory &lt;allocating 4 GiB&gt;" in text
    assert "high_lr/seed-3</b> diverged" in text


def test_setup_and_learning_rate_search_sections(report: tuple[Path, Path]) -> None:
    text = report[0].read_text(encoding="utf-8")
    for expected in ("Which tricks beat plain SGD on Fashion-MNIST?", "<dd>fashion_mnist</dd>",
                     "<dd>0, 1, 2, 3, 4</dd>", "<dd>8 per run (the budget)</dd>", "tricklab 0.1.0, torch",
                     "<h2>Learning-rate search</h2>", "✓ chosen",
                     "Learning rate chosen by the search: 0.01, the recipe's own;"):
        assert expected in text, expected
    # Every variant's full recipe, one click away.
    for name in FINALS:
        part = re.search(rf'<div class="recipe" id="recipe-{name}".*?</div>', text, re.S)
        assert part is not None and "<details><summary>full recipe</summary><pre>" in part[0]
        assert f"name: chapter11-{name}" in part[0]


def test_markdown_has_one_row_per_variant_and_the_warnings(report: tuple[Path, Path]) -> None:
    text = report[1].read_text(encoding="utf-8")
    assert text.startswith("# Study: chapter11\n")
    assert "> Which tricks beat plain SGD on Fashion-MNIST?" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(FINALS)
    assert [row.split("|")[2].strip() for row in table[2:]] == RANKED
    assert "- high_lr: 1 of 5 runs diverged" in text
    assert "- high_lr/seed-4 failed: RuntimeError: out of memory <allocating 4 GiB>" in text


def test_terminal_table_lists_variants_in_rank_order(report: tuple[Path, Path]) -> None:
    table = study_table(report[0].parent)
    assert table.row_count == len(FINALS)
    console = Console(record=True, width=250)
    console.print(table)
    output = console.export_text()
    positions = [output.index(f"│ {name} ") for name in RANKED]
    assert positions == sorted(positions)
    assert "no detectable difference" in output
    # Time to target is the report's (the note under the table says so).
    assert "time to target" not in [column.header for column in table.columns]


@pytest.mark.parametrize("width", [60, 100, 130])
def test_a_narrow_terminal_drops_the_least_telling_columns(
    report: tuple[Path, Path], width: int
) -> None:
    full = study_table(report[0].parent)
    table = study_table(report[0].parent, width=width)
    headers = [column.header for column in table.columns]
    # What is left is a prefix of the full table's columns, never less than the verdict.
    assert headers == [column.header for column in full.columns][: len(headers)]
    assert headers[:4] == ["#", "variant", "n", "verdict"]
    console = Console(record=True, width=width)
    console.print(table)
    lines = console.export_text().splitlines()
    assert len(headers) == 4 or max(len(line.rstrip()) for line in lines) <= width
    for name in RANKED:  # every name whole, on one line
        assert any(f"│ {name} " in line for line in lines)
    # A wider console never shows fewer columns; a wide enough one shows them all.
    wider = study_table(report[0].parent, width=width + 40)
    assert len(wider.columns) >= len(headers)
    assert len(study_table(report[0].parent, width=10_000).columns) == len(full.columns) == 9


def _caption(table: Any, width: int) -> str:
    console = Console(record=True, width=width)
    console.print(table)
    lines = console.export_text().splitlines()
    start = max(index for index, line in enumerate(lines) if line.startswith("└"))
    return " ".join(line.strip() for line in lines[start + 1:])


def test_the_terminal_table_says_what_it_hides(report: tuple[Path, Path]) -> None:
    folder = report[0].parent
    report_only = (f"the report ({folder / 'report.html'}) also shows: 95% CI, IQM, time to "
                   "target, wall time")
    narrow = _caption(study_table(folder, width=70), 70)
    assert narrow.startswith(
        "hidden at this width: Δ vs baseline [95% CI], Welch p (Holm), P(improvement), runs; "
        f"widen the terminal, or see them with: tricklab study show {folder} > table.txt "
        + report_only)
    assert narrow.endswith("! high_lr: 1 of 5 runs failed")  # the warnings still follow
    # Every column shown: only what the terminal never shows is named.
    assert _caption(study_table(folder), 250).startswith(report_only + " ! high_lr:")


def test_the_page_says_which_curves_it_leaves_out(report: tuple[Path, Path]) -> None:
    text = report[0].read_text(encoding="utf-8")
    assert ('<p class="note">Not plotted: lr. Every value each run logged, '
            "per epoch, is in its folder's <code>history.csv</code>") in text
    assert ("The plots (differences from the baseline, learning curves, wall time), the "
            "learning-rate search and every variant's recipe are in report.html.") in (
        report[1].read_text(encoding="utf-8"))


def test_a_variant_identical_to_another_on_every_seed_is_marked(tmp_path: Path) -> None:
    # The chapter's ladder in a quick study: early stopping (patience 3) never stops a run
    # of 8 epochs that keeps improving, so its runs are exactly the runs without it.
    spec = _spec(["baseline", "dropout", "early_stopping"])
    stopping = {**_recipe("dropout", 0.01), "name": "chapter11-early_stopping"}
    stopping["train"]["callbacks"] = [{"early_stopping": {"patience": 3}}]
    spec["variants"]["early_stopping"]["recipe"] = stopping
    with StudyStore.create(tmp_path / "study.db", spec, "x") as store:
        for seed in range(5):
            for variant, final in (("baseline", FINALS["baseline"][seed]),
                                   ("dropout", FINALS["dropout"][seed]),
                                   ("early_stopping", FINALS["dropout"][seed])):
                store.add_runs([RunRecord(f"{variant}/seed-{seed}", variant, seed, "main",
                                          f"{variant}/seed-{seed}",
                                          spec["variants"][variant]["recipe"])])
                store.mark_started(f"{variant}/seed-{seed}")
                store.record_result(f"{variant}/seed-{seed}", _result(final, seed))
    html_path, markdown_path = write_study_report(tmp_path)
    note = ("early_stopping: identical to dropout on every seed (5 seeds: the same test_accuracy "
            "and per-epoch history), likely because early stopping never stopped a run: each "
            "trained all 8 epochs")
    text = html_path.read_text(encoding="utf-8")
    row = re.search(r'<tr data-variant="early_stopping">.*?</tr>', text)
    assert row is not None and '#recipe-early_stopping">early_stopping *</a>' in row.group(0)
    assert f'<p class="note identical">* {note}.</p>' in text
    markdown = markdown_path.read_text(encoding="utf-8")
    assert "| early_stopping * |" in markdown and f"\n\\* {note}.\n" in markdown
    assert "| dropout |" in markdown  # the variant it repeats is not marked
    caption = _caption(study_table(tmp_path), 250)
    assert caption.startswith(f"* {note} the report (")


def test_a_study_still_running_renders_partial_results(tmp_path: Path) -> None:
    html_path, markdown_path = write_study_report(_build_study(tmp_path, finished=False))
    markdown = markdown_path.read_text(encoding="utf-8")
    assert "8 of 20 runs have not finished yet: the results are partial" in markdown
    assert "3 ok, 2 pending" in markdown
    assert "<dd>12 of 20 finished</dd>" in html_path.read_text(encoding="utf-8")


def test_a_variant_whose_runs_all_diverged_keeps_its_row(tmp_path: Path) -> None:
    with StudyStore.create(tmp_path / "study.db", _spec(["baseline", "explodes"]), "x") as store:
        for seed in range(5):
            for variant, final in (("baseline", 0.85 + 0.001 * seed), ("explodes", None)):
                store.mark_started(run_id := _add(store, variant, seed))
                store.record_result(run_id, _result(final, seed))
    html_path, markdown_path = write_study_report(tmp_path)
    page = _page(html_path)
    assert page.rows == ["baseline", "explodes"]
    assert len(page.images) == 2  # no search: forest and wall time (the curves are SVG)
    row = re.search(r'<tr data-variant="explodes">.*?</tr>', html_path.read_text("utf-8"))
    assert row is not None and ">diverged<" in row.group(0) and "0 ok, 5 diverged" in row.group(0)
    assert "| diverged | 0 ok, 5 diverged |" in markdown_path.read_text(encoding="utf-8")


def test_a_missing_store_is_a_user_error(tmp_path: Path) -> None:
    from tricklab.errors import UserInputError

    with pytest.raises(UserInputError, match="does not exist"):
        write_study_report(tmp_path)
    assert list(tmp_path.iterdir()) == []


def _diff_rows(text: str, variant: str, against: str) -> list[tuple[str, str, str]]:
    """`(path, from, to)` of the table of what `variant` changes from `against`."""
    part = re.search(rf'<div class="recipe" id="recipe-{variant}".*?</div>', text, re.S)
    assert part is not None, variant
    table = re.search(rf'<table class="diff" data-against="{against}">.*?</table>', part[0])
    if table is None:
        return []
    return [(path, html.unescape(old), html.unescape(new)) for path, old, new in re.findall(
        r'<tr data-path="([^"]+)">.*?<td class="from"><code>(.*?)</code></td>'
        r'<td class="to">→ <code>(.*?)</code></td></tr>', table[0])]


def test_each_recipe_is_shown_as_what_it_changes(report: tuple[Path, Path]) -> None:
    text = report[0].read_text(encoding="utf-8")
    assert _diff_rows(text, "high_lr", "baseline") == [
        ("train.optimizer.learning_rate", "0.01", "0.5")]
    # A layer added is that layer, not two lists of layers; the names and seeds every
    # run sets for itself are no difference.
    assert _diff_rows(text, "dropout", "baseline") == [
        ("model.layers.3", "(none)", "{dropout: {rate: 0.2}}")]
    # batch_norm extends dropout: from the baseline, both layers; from its step, one.
    assert _diff_rows(text, "batch_norm", "baseline") == [
        ("model.layers.2", "(none)", "{batch_normalization: {}}"),
        ("model.layers.4", "(none)", "{dropout: {rate: 0.2}}")]
    assert _diff_rows(text, "batch_norm", "dropout") == [
        ("model.layers.2", "(none)", "{batch_normalization: {}}")]
    assert ('builds on: <a href="#recipe-dropout">dropout</a> → batch_norm</p>') in text
    # The step's own verdict: 0.849 against dropout's 0.870 over the same five seeds.
    assert re.search(r'<p class="note step">Against the previous step \(dropout\): '
                     r"test_accuracy -0\.0210 \[-0\.0\d+, -0\.0\d+\] \(95% CI\), worse\.</p>",
                     text)
    # A variant extending nothing has no second table, and the baseline none at all.
    assert _diff_rows(text, "dropout", "dropout") == [] and 'data-against="' not in re.search(
        r'<div class="recipe" id="recipe-baseline".*?</div>', text, re.S)[0]


def test_changes_match_lists_item_by_item() -> None:
    base = {"name": "a", "seed": 1, "train": {"epochs": 3, "metrics": ["accuracy"]},
            "model": {"layers": [{"dense": {"units": 3}}, {"relu": {}}, {"dense": {"units": 1}}]}}
    other = {"name": "b", "seed": 2, "train": {"epochs": 5, "callbacks": [{"x": {}}],
                                               "metrics": ["accuracy"]},
             "model": {"layers": [{"dense": {"units": 8}}, {"dense": {"units": 1}}]}}
    assert changes(base, other) == [
        ("train.epochs", 3, 5),
        ("train.callbacks", ABSENT, [{"x": {}}]),
        ("model.layers.0", {"dense": {"units": 3}}, ABSENT),
        ("model.layers.1", {"relu": {}}, ABSENT),
        ("model.layers.0", ABSENT, {"dense": {"units": 8}}),
    ]
    # Lists of one length are compared item by item, field by field.
    same_length = {**base, "model": {"layers": [{"dense": {"units": 4}}, {"relu": {}},
                                                {"dense": {"units": 1}}]}}
    assert changes(base, same_length) == [("model.layers.0.dense.units", 3, 4)]


def test_every_run_links_to_its_folder(report: tuple[Path, Path]) -> None:
    text = report[0].read_text(encoding="utf-8")
    links = re.findall(r'<a class="run s-(\w+)" href="([^"]+)"[^>]*><span class="seed">seed '
                       r'(\d+)</span> ([^<]+)</a>', text)
    # 20 main runs (one of them failed, one diverged) and 6 search runs, each by its value.
    assert len(links) == 26
    assert ("completed", "runs/dropout/seed-0/", "0", "0.8680") in links
    assert ("diverged", "runs/high_lr/seed-3/", "3", "diverged") in links
    assert ("completed", "runs/dropout/lr-0.1/seed-1/", "1", "0.7788") in links
    for _, href, _, _ in links:
        assert (report[0].parent / href).is_dir(), href
    # Each seed's own curve leads there too; the means and run counts lead to the runs.
    assert '<a href="runs/high_lr/seed-2/"><path data-seed="2" class="seed val"' not in text
    assert re.search(r'<a href="runs/high_lr/seed-2/"><path class="seed val" data-seed="2"', text)
    row = re.search(r'<tr data-variant="dropout">.*?</tr>', text)
    assert row is not None and '<a href="#runs-dropout">0.8700 ± 0.0032</a>' in row[0]
    assert '<tr id="runs-dropout">' in text


def test_a_pending_run_has_no_link_yet(tmp_path: Path) -> None:
    html_path, _ = write_study_report(_build_study(tmp_path, finished=False))
    text = html_path.read_text(encoding="utf-8")
    assert ('<span class="run s-pending" title="baseline/seed-3: pending"><span class="seed">'
            "seed 3</span> pending</span>") in text
    assert 'href="runs/baseline/seed-3/"' not in text and 'href="runs/baseline/seed-2/"' in text


# Run in the page: whether a header breaks inside a word (between two of its letters).
BROKEN_HEADERS = """() => {
  const broken = [];
  for (const th of document.querySelectorAll('th')) {
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      let previous = null;
      for (let i = 0; i < node.length; i++) {
        const range = document.createRange();
        range.setStart(node, i);
        range.setEnd(node, i + 1);
        const rect = range.getClientRects()[0];
        const letter = !/\\s/.test(node.data[i]);
        if (rect && letter && previous && rect.top > previous + 2) broken.push(th.textContent);
        previous = rect && letter ? rect.top : null;
      }
    }
  }
  return broken;
}"""

# Run in the page: the window narrowed to 1000 px (the page has no media query, so a
# narrower root lays it out as a 1000-px window would): what sticks out, what scrolls.
AT_1000_PX = """() => {
  document.documentElement.style.width = '1000px';
  const wide = Array.from(document.querySelectorAll('body *'))
    .filter(e => e.getBoundingClientRect().right > 1000.5)
    .map(e => e.tagName + '.' + e.className);
  const scrolls = Array.from(document.querySelectorAll('.scroll, table'))
    .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.id || e.className);
  return [wide, scrolls];
}"""

CURVES = """() => Array.from(document.querySelectorAll('svg.curves[data-key]'), svg => [
  svg.dataset.variant, svg.dataset.key,
  svg.querySelectorAll('path.seed.train').length, svg.querySelectorAll('path.seed.val').length,
  svg.querySelectorAll('path.mean.train').length, svg.querySelectorAll('path.mean.val').length,
  svg.querySelectorAll('path.baseline-ref').length,
  Array.from(svg.querySelectorAll('path.seed.val'), p => Number(p.dataset.seed)),
  Array.from(svg.querySelectorAll('.xtick text'), t => t.textContent),
  svg.querySelector('.hover rect title').textContent,
  svg.querySelector('path.seed.val title').textContent])"""


def test_page_renders_in_headless_chromium(report: tuple[Path, Path], tmp_path: Path) -> None:
    # The study folder moved elsewhere: its page's links still lead to its runs.
    moved = tmp_path / "elsewhere" / "my-study"
    shutil.copytree(report[0].parent, moved)
    rendered = render(moved / "report.html", [
        "() => Array.from(document.images, i => [i.complete, i.naturalWidth])",
        "() => Array.from(document.querySelectorAll('#ranking tbody tr'), r => r.dataset.variant)",
        AT_1000_PX,
        BROKEN_HEADERS,
        CURVES,
        # Where a click goes (an SVG link's `href` is no string: resolve it as a click does).
        """() => Array.from(document.querySelectorAll('a.run, svg a'),
                 a => new URL(a.getAttribute('href'), document.baseURI).href)""",
        """() => Array.from(document.querySelectorAll('#recipe-high_lr table.diff tbody tr'),
                 r => r.innerText)""",
        """() => [document.querySelector('#ranking tr[data-variant=batch_norm] .about').innerText,
                  document.querySelector('#ranking tr[data-variant=dropout] .badge').innerText,
                  document.querySelector('#recipe-dropout details').open]""",
    ], "study_report.png")
    images, rows, (wide, scrolls), broken, curves, links, diff, cells = rendered.values
    assert rendered.errors == []
    assert rendered.blocked == []
    assert len(images) == 3
    assert all(complete and width > 0 for complete, width in images), images
    assert rows == RANKED
    assert wide == [] and scrolls == [], (wide, scrolls)
    assert broken == []
    # Per variant, the metric's panel and the loss's next to it; in each, every succeeded
    # seed's training and validation curve, their two means, and the baseline's elsewhere.
    succeeded = {name: sum(final is not None for final in finals)
                 for name, finals in FINALS.items()}
    assert [(variant, key) for variant, key, *_ in curves] == [
        (name, key) for name in RANKED for key in ("accuracy", "loss")]
    for (variant, key, train, val, mean_train, mean_val, reference, seeds, ticks, hover,
         seed_title) in curves:
        assert train == val == succeeded[variant], variant
        assert (mean_train, mean_val, reference) == (1, 1, int(variant != "baseline"))
        assert seeds == list(range(succeeded[variant]))
        assert ticks == [str(epoch) for epoch in range(1, 9)]  # whole epochs
        assert hover.startswith(f"{variant}, epoch 1\ntraining ") and "\nvalidation " in hover
        assert seed_title.startswith(f"{variant}, seed 0: validation {key}, last ")
        assert seed_title.endswith(f" at epoch 8 (click: its run folder, runs/{variant}/seed-0/)")
    # Every run link, followed from where the page now is, reaches the run's folder.
    assert len(links) == 26 + 2 * 2 * sum(succeeded.values())
    for link in links:
        target = Path(unquote(urlparse(link).path))
        assert target.is_dir() and moved in target.parents, link
    assert diff == ["train.optimizer.learning_rate\t0.01\t→ 0.5"]
    assert cells == [DESCRIPTION, "better", False]
    assert (ARTIFACTS / "study_report.png").read_bytes().startswith(PNG_SIGNATURE)
