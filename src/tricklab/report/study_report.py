"""A study's report: one self-contained `report.html`, a `report.md` and a terminal table.

The HTML page works offline and forever: CSS inline, the learning curves as
inline SVG (`study_curves`), the other plots embedded as `data:` PNGs, no
script, no network resource; collapsible parts are plain `<details>`. Every
number a run produced links to that run's folder, relative to the page
(`runs/<variant>/seed-0/`), so the links hold when the study folder is moved or
zipped. Every piece of user text (names, question, descriptions, errors,
recipes) is escaped. The three forms share one set of table rows, so the page,
the Markdown and `tricklab study show` never disagree.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import json
import math
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from matplotlib.colors import to_hex
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import tricklab
from tricklab.atomic import write_text
from tricklab.report import study_curves, study_plots, study_recipes
from tricklab.report.doctor import doctor_figures
from tricklab.report.figure import png_bytes
from tricklab.study.results import SUCCEEDED, IdenticalVariant, StudyResults, load_results
from tricklab.study.store import RunRecord, StudyStore

__all__ = ["render_html", "render_markdown", "study_table", "table_rows", "write_study_report"]

_STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;
 background:#f6f8fa;margin:0}
main{max-width:1240px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;border-bottom:1px solid #d0d7de;
 padding-bottom:4px;margin-top:32px}
.question{font-size:18px;color:#0b3d91;margin:6px 0 12px}
dl.setup{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}
dl.setup dt{font-weight:600;color:#57606a}dl.setup dd{margin:0}
.warnings li{margin:2px 0}.warnings{background:#fff8c5;border:1px solid #d4a72c;
 border-radius:6px;padding:8px 8px 8px 28px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #d8dee4;padding:5px;text-align:right;white-space:nowrap}
th{background:#f6f8fa;white-space:normal;vertical-align:bottom;word-break:keep-all;
 overflow-wrap:normal;hyphens:manual;font-size:12px}
#ranking{width:100%}
td.name,th.name{text-align:left;white-space:normal}
td.runs{white-space:normal;min-width:4.5em}td.target{white-space:normal;min-width:5em}
td.name{min-width:9.5em;max-width:17em;overflow-wrap:anywhere}
.nw{white-space:nowrap}
td.name .about{display:block;color:#57606a;font-size:12px;margin-top:2px}
.vname{font-weight:600;color:inherit}
tr.baseline td{background:#f3f6ff}
table a{color:inherit;text-decoration:underline dotted #8c959f;text-underline-offset:2px}
table a:hover{color:#0969da}
td.chips,th.chips{white-space:normal;text-align:left}
a.run,span.run{display:inline-block;white-space:nowrap;margin:1px 8px 1px 0}
.run .seed{color:#57606a;font-size:11px}.s-diverged,.s-failed{color:#a40e26}
.s-pending,.s-running,.s-interrupted{color:#57606a}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
 white-space:normal}
.v-better{background:#dafbe1;color:#116329}.v-worse{background:#ffebe9;color:#a40e26}
.v-baseline{background:#ddf4ff;color:#0550ae}.v-none{background:#eaeef2;color:#424a53}
.v-bad{background:#ffebe9;color:#a40e26;border:1px dashed #a40e26}
img{max-width:100%;height:auto;display:block;margin:8px auto}
.ci{color:#57606a;font-size:11px}
.note{color:#57606a;font-size:13px}
details{margin:6px 0;border:1px solid #d0d7de;border-radius:6px;padding:4px 10px}
summary{cursor:pointer;font-weight:600}
h3 .badge{vertical-align:middle;margin-left:6px}
pre{background:#f6f8fa;padding:10px;overflow-x:auto;font-size:12px;margin:6px 0}
footer{margin-top:36px;color:#57606a;font-size:12px}
"""

_BADGES = {"better": "v-better", "worse": "v-worse", "baseline": "v-baseline",
           "diverged": "v-bad", "failed": "v-bad"}


def _num(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    digits = 1 if abs(value) >= 100 else 4
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


TERMINAL_COLUMNS = ("rank", "variant", "n", "verdict", "mean", "difference", "p",
                    "p_improvement", "runs")
"""The terminal table's columns, most telling first: a narrow terminal drops the last."""


def _columns(results: StudyResults) -> list[tuple[str, str]]:
    """(key, header) of each column of the ranked table."""
    percent = round(100 * results.analysis.confidence)
    columns = [
        ("rank", "#"), ("variant", "variant"), ("n", "n"), ("mean", "mean ± std"),
        ("ci", f"{percent}% CI"), ("iqm", "IQM"), ("difference", f"Δ vs baseline [{percent}% CI]"),
        ("p_improvement", "P(improvement)"), ("p", "Welch p (Holm)"), ("verdict", "verdict"),
        ("runs", "runs"),
    ]
    if results.spec.get("target"):
        columns.append(("target", "time to target"))
    return [*columns, ("wall", "wall time")]


def _runs_cell(results: StudyResults, name: str) -> str:
    counts = results.variants[name].counts
    parts = [f"{counts.succeeded} ok"]
    for label, count in (("diverged", counts.diverged), ("failed", counts.failed),
                         ("pending", counts.unfinished)):
        if count:
            parts.append(f"{count} {label}")
    return ", ".join(parts)


def _target_cell(results: StudyResults, name: str) -> str:
    reach = results.variants[name].time_to_target
    if reach is None:
        return "—"
    of = f"{reach.reached}/{len(reach.epochs)}"
    if reach.median_epochs is None:
        return f"not reached ({of})"
    seconds = "" if reach.median_seconds is None else f", {reach.median_seconds:.1f} s"
    return f"{reach.median_epochs:g} ep{seconds} ({of})"


IDENTICAL_MARK = "*"
"""Follows the name of a variant whose results repeat another's; its footnote says whose."""


def identical_note(found: IdenticalVariant, metric: str) -> str:
    """The footnote of a variant whose runs gave exactly what another's gave, seed for seed."""
    seeds = f"{found.seeds} seed{'s' if found.seeds != 1 else ''}"
    note = (f"{found.variant}: identical to {found.same_as} on every seed ({seeds}: the same "
            f"{metric} and per-epoch history)")
    return note + (f", likely because {found.reason}" if found.reason else "")


def _marked(results: StudyResults, name: str) -> str:
    """The variant's name, marked when a footnote says its results repeat another's."""
    repeats = any(found.variant == name for found in results.identical)
    return f"{name} {IDENTICAL_MARK}" if repeats else name


def table_rows(results: StudyResults) -> list[dict[str, str]]:
    """The ranked table as text cells, best variant first, keyed like `_columns`."""
    rows = []
    for analysed in results.ranked:
        summary, comparison, name = analysed.summary, analysed.comparison, analysed.name
        variant = results.variants[name]
        difference = p_improvement = p = "—"
        if comparison is not None:
            difference = (f"{_num(comparison.difference, True)} "
                          f"[{_num(comparison.ci_low, True)}, {_num(comparison.ci_high, True)}]")
            p_improvement = (f"{comparison.p_improvement:.2f}"
                             if math.isfinite(comparison.p_improvement) else "—")
            p = f"{_p(comparison.p_value)} ({_p(comparison.p_holm)})"
        wall = "—"
        if variant.wall_time_mean is not None:
            spread = "" if variant.wall_time_std is None else f" ± {variant.wall_time_std:.1f}"
            wall = f"{variant.wall_time_mean:.1f}{spread} s"
        rows.append({
            "rank": str(analysed.rank), "variant": name, "n": str(summary.n),
            "mean": f"{_num(summary.mean)} ± {_num(summary.std)}" if summary.n else "—",
            "ci": f"[{_num(summary.ci_low)}, {_num(summary.ci_high)}]" if summary.n else "—",
            "iqm": _num(summary.iqm), "difference": difference, "p_improvement": p_improvement,
            "p": p, "verdict": results.verdict(name), "runs": _runs_cell(results, name),
            "target": _target_cell(results, name), "wall": wall,
        })
    return rows


def _setup(results: StudyResults) -> list[tuple[str, str]]:
    spec = results.spec
    baseline = results.variants[results.baseline].recipe
    epochs = (baseline.get("train") or {}).get("epochs")
    budget = (spec.get("budget") or {}).get("epochs")
    trained = "—" if epochs is None else f"{epochs} per run"
    if budget is not None:
        # --quick trains fewer epochs than the study's budget: show both.
        trained += " (the budget)" if budget == epochs else f" (the study's budget: {budget})"
    direction = "higher" if results.higher_is_better else "lower"
    total = sum(v.counts.total for v in results.variants.values())
    items = [
        ("study", spec.get("name", "")),
        ("dataset", str((baseline.get("data") or {}).get("dataset", "—"))),
        ("metric", f"{results.metric} ({direction} is better)"),
        ("baseline", results.baseline),
        ("variants", str(len(results.variants))),
        ("seeds", ", ".join(map(str, spec.get("seeds", []))) or "—"),
        ("epochs", trained),
        ("runs", f"{total - results.unfinished} of {total} finished"),
        ("quick mode", "yes (fewer seeds and epochs)" if spec.get("quick") else "no"),
    ]
    if target := spec.get("target"):
        items.append(("target", f"{target['metric']} reaching {target['value']}"))
    if search := spec.get("lr_search"):
        grid = ", ".join(f"{rate:g}" for rate in search.get("grid", []))
        items.append(("learning-rate search", f"{search.get('metric')} over {grid}"))
    return items


def _versions() -> str:
    try:
        # Read from the installed metadata: the same string as torch.__version__,
        # without importing PyTorch only to print its version.
        torch = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch = "not installed"
    return f"tricklab {tricklab.__version__}, torch {torch}, Python {platform.python_version()}"


def _image(figure: Any, alt: str) -> str:
    data = base64.b64encode(png_bytes(figure, dpi=100)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _problem(run: RunRecord) -> str:
    e = html.escape
    what = "diverged (loss became NaN/Inf)" if run.status == "diverged" else "failed"
    if run.epochs_run:
        what += f" after {run.epochs_run} epochs"
    if not run.error:
        return f"<li><b>{e(run.run_id)}</b> {what}</li>"
    last = run.error.strip().splitlines()[-1] if run.error.strip() else ""
    return (f"<li><b>{e(run.run_id)}</b> {what}: {e(last)}"
            f"<details><summary>error</summary><pre>{e(run.error)}</pre></details></li>")


def run_href(run: RunRecord) -> str | None:
    """A run's folder as a link relative to the study's page, `None` before the run starts.

    Relative (`runs/dropout/seed-0/`), so it still leads there when the study
    folder is moved, copied or unzipped elsewhere.
    """
    if run.status == "pending":
        return None
    return quote(run.run_dir.strip("/")) + "/"


def _badge(verdict: str) -> str:
    return f'<span class="badge {_BADGES.get(verdict, "v-none")}">{html.escape(verdict)}</span>'


def _heading(results: StudyResults, name: str) -> str:
    """A variant's name with its verdict, as the curves and the recipes head their parts."""
    return f'<span class="vname">{html.escape(_marked(results, name))}</span> ' + _badge(
        results.verdict(name))


HTML_COLUMNS = ("rank", "variant", "n", "mean", "iqm", "difference", "p_improvement", "p",
                "runs", "target", "wall")
"""The page's ranking columns: the verdict and the description sit with the variant's name,
and each interval under its estimate, so that the table fits a 1000-pixel window."""


def _table_html(results: StudyResults) -> str:
    e = html.escape
    headers = dict(_columns(results))
    percent = round(100 * results.analysis.confidence)
    columns = [(key, headers[key]) for key in HTML_COLUMNS if key in headers]
    head = "".join(
        f'<th class="{"name" if key == "variant" else key}">{e(header)}'
        + (f'<br><span class="ci">[{percent}% CI]</span>' if key == "mean" else "") + "</th>"
        for key, header in columns)
    body = []
    for row in table_rows(results):
        name = row["variant"]
        description = results.variants[name].description
        cells = []
        for key, _ in columns:
            text = e(row[key])
            if key == "variant":
                text = (f'<a class="vname" href="#recipe-{e(name)}">{e(_marked(results, name))}'
                        f"</a> {_badge(row['verdict'])}"
                        + (f'<span class="about">{e(description)}</span>' if description else ""))
            elif key == "mean" and row["mean"] != "—":
                text = (f'<a href="#runs-{e(name)}">{text}</a><br>'
                        f'<span class="ci">{e(row["ci"])}</span>')
            elif key == "difference" and " [" in text:
                # The interval under its estimate keeps the table narrow enough to read.
                value, interval = text.split(" [", 1)
                text = f'{value}<br><span class="ci">[{interval}</span>'
            elif key == "p" and " (" in text:
                value, holm = text.split(" (", 1)
                text = f'{value}<br><span class="ci">({holm}</span>'
            elif key == "runs":
                text = f'<a href="#runs-{e(name)}">{text}</a>'
            elif key == "wall" and " ± " in text:
                value, spread = text.split(" ± ", 1)
                unit = " s" if spread.endswith(" s") else ""
                text = f'{value}{unit}<br><span class="ci">± {spread}</span>'
            elif key == "target" and " (" in text:
                value, reached = text.rsplit(" (", 1)
                text = f'<span class="nw">{value}</span> <span class="ci">({reached}</span>'
            cells.append(f'<td class="{"name" if key == "variant" else key}">{text}</td>')
        css = ' class="baseline"' if row["verdict"] == "baseline" else ""
        body.append(f'<tr{css} data-variant="{e(name)}">{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table id="ranking"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _chip(run: RunRecord, metric: str) -> str:
    """One run as its final value (or its fate), linked to its folder."""
    e = html.escape
    value = run.metrics.get(metric)
    shown = _num(value) if run.status in SUCCEEDED and value is not None else run.status
    href = run_href(run)
    about = [run.status]
    if run.epochs_run:
        about.append(f"{run.epochs_run} epoch{'s' if run.epochs_run != 1 else ''}")
    if run.wall_time_s is not None and math.isfinite(run.wall_time_s):
        about.append(f"{run.wall_time_s:.1f} s")
    title = f"{run.run_id}: {', '.join(about)}" + (f"; its folder: {href}" if href else "")
    inner = f'<span class="seed">seed {run.seed}</span> {e(shown)}'
    css = f"run s-{e(run.status)}"
    if href is None:
        return f'<span class="{css}" title="{e(title)}">{inner}</span>'
    return f'<a class="{css}" href="{e(href)}" title="{e(title)}">{inner}</a>'


def _runs_html(results: StudyResults) -> str:
    """Every run's final value by variant, each linked to its run folder."""
    e = html.escape
    rows = "".join(
        f'<tr id="runs-{e(v.name)}"><td class="name">{e(v.name)}</td><td class="chips">'
        + "".join(_chip(run, results.metric) for run in results.variants[v.name].runs)
        + "</td></tr>" for v in results.ranked)
    return (f'<table id="runs"><thead><tr><th class="name">variant</th><th class="chips">'
            f"final {e(results.metric)} of each seed's run</th></tr></thead><tbody>{rows}</tbody>"
            '</table><p class="note">Each value links to its run\'s folder, relative to this page '
            "(<code>recipe.yaml</code>, <code>result.json</code>, <code>history.csv</code>, "
            "plots, model): hover a value for the run's status, epochs and time.</p>")


def _identical_html(results: StudyResults) -> str:
    """The footnotes of the variants whose results repeat another's, under the ranking."""
    e = html.escape
    return "".join(f'<p class="note identical">{IDENTICAL_MARK} '
                   f"{e(identical_note(found, results.metric))}.</p>"
                   for found in results.identical)


def _unplotted_html(results: StudyResults) -> str:
    """Which recorded curves the page leaves out, and where every run's are."""
    recorded = dict.fromkeys(key for variant in results.variants.values()
                             for run in variant.succeeded_runs for key in run.history)
    plotted = study_curves.plotted_keys(results)
    left_out = [key for key in recorded if key not in plotted and key != "time_s"]
    if not left_out:
        return ""
    return ('<p class="note">Not plotted: ' + html.escape(", ".join(left_out)) + ". Every "
            "value each run logged, per epoch, is in its folder's <code>history.csv</code> "
            "(and <code>result.json</code>).</p>")


def _search_html(results: StudyResults) -> str:
    e = html.escape
    rows = []
    for name, search in results.learning_rate_searches.items():
        for rate, mean in search.means.items():
            chosen = "✓ chosen" if rate == search.chosen else ""
            runs = "".join(_chip(run, search.metric) for run in results.search_runs
                           if run.variant == name and run.learning_rate == rate)
            rows.append(f'<tr><td class="name">{e(name)}</td><td>{rate:g}</td>'
                        f"<td>{len(search.scores[rate])}</td><td>{_num(mean)}</td>"
                        f'<td>{chosen}</td><td class="chips">{runs}</td></tr>')
    metric = e(next(iter(results.learning_rate_searches.values())).metric)
    colors = study_plots.variant_colors(list(results.variants))
    return (f'<div class="scroll"><table id="search"><thead><tr><th class="name">variant</th>'
            f"<th>learning rate</th><th>seeds finished</th><th>mean {metric}</th><th></th>"
            f'<th class="chips">{metric} of each search run</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>'
            + _image(study_plots.learning_rate_search_plot(results.learning_rate_searches,
                                                           colors), "learning-rate search"))


def _doctor_reports(study_dir: Path, results: StudyResults) -> dict[str, list[dict[str, Any]]]:
    """Each variant's `doctor.json` contents, for the runs trained with `--doctor`."""
    reports: dict[str, list[dict[str, Any]]] = {}
    for name, variant in results.variants.items():
        for run in variant.runs:
            path = study_dir / run.run_dir / "doctor.json"
            if path.is_file():
                reports.setdefault(name, []).append(json.loads(path.read_text("utf-8")))
    return reports


def _doctor_html(reports: dict[str, list[dict[str, Any]]]) -> str:
    """Verdicts and findings per variant, and each variant's depth picture from its first run."""
    e = html.escape
    rows, pictures = [], []
    for name, runs in reports.items():
        healthy = sum(report["verdict"] == "healthy" for report in runs)
        kinds: dict[str, int] = {}
        for report in runs:
            for kind in {finding["kind"] for finding in report["findings"]}:
                kinds[kind] = kinds.get(kind, 0) + 1
        found = ", ".join(f"{kind.replace('_', ' ')} ({count}/{len(runs)})"
                          for kind, count in sorted(kinds.items())) or "—"
        rows.append(f"<tr><td>{e(name)}</td><td>{len(runs)}</td><td>{healthy}</td>"
                    f"<td>{len(runs) - healthy}</td><td>{e(found)}</td></tr>")
        figure = doctor_figures(runs[0]["probes"]).get("doctor_depth")
        if figure is not None:
            pictures.append(f"<h3>{e(name)}</h3>" + _image(figure, f"{name}: doctor by depth"))
    table = ("<table><thead><tr><th>variant</th><th>runs probed</th><th>healthy</th>"
             "<th>unhealthy</th><th>findings (runs)</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    return ("<section><h2>Doctor</h2>" + table + '<p class="note">Runs trained with '
            "<code>--doctor</code>: per-layer activation and gradient statistics, diagnosed by "
            "the rules of <code>tricklab.doctor.diagnosis</code>. Below, each variant's "
            "activation spread and gradient norm by depth in its first run.</p>"
            + "".join(pictures) + "</section>")


def render_html(
    results: StudyResults, doctor: dict[str, list[dict[str, Any]]] | None = None,
    recommendation: list[str] | None = None,
) -> str:
    """The whole report page as one self-contained HTML string.

    Args:
        results: The study's results.
        doctor: Each variant's `doctor.json` contents, when runs were probed. Defaults
            to `None` (no doctor section).
        recommendation: Lines to open the report with (`tricklab tricks`). Defaults to
            `None` (none).
    """
    e = html.escape
    spec = results.spec
    name = spec.get("name", "study")
    parts = [f"<h1>Study: {e(name)}</h1>"]
    if spec.get("question"):
        parts.append(f'<p class="question">{e(spec["question"])}</p>')
    if recommendation:
        items = "".join(f"<li>{e(line)}</li>" for line in recommendation)
        parts.append(f'<section id="recommendation"><h2>Recommendation</h2><ul>{items}</ul>'
                     "</section>")
    if spec.get("description"):
        parts.append(f"<p>{e(spec['description'])}</p>")
    setup = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in _setup(results))
    parts.append(f'<section><h2>Setup</h2><dl class="setup">{setup}</dl></section>')
    if results.warnings or results.problems:
        items = "".join(f"<li>{e(w)}</li>" for w in results.warnings)
        items += "".join(_problem(run) for run in results.problems)
        parts.append(f'<section><h2>Warnings</h2><ul class="warnings">{items}</ul></section>')
    percent = round(100 * results.analysis.confidence)
    parts.append(
        f"<section><h2>Ranking</h2>{_table_html(results)}<p class=\"note\">Ranked by mean "
        f"{e(results.metric)} over seeds. CI: {percent}% percentile bootstrap. "
        "Δ: variant mean − baseline mean; a verdict of better or worse needs its interval to "
        "exclude 0. P(improvement): chance a seed of the variant beats a seed of the baseline. "
        "Welch p with the Holm-corrected value under it. Diverged and failed runs are "
        "counted under runs, not averaged in. A variant's name leads to what it changes; its "
        f"mean and its runs, to every run's value and folder.</p>{_identical_html(results)}"
        "</section>")
    parts.append("<section><h2>Difference from the baseline</h2>"
                 + _image(study_plots.forest_plot(results), "forest plot") + "</section>")
    colors = {name: to_hex(color) for name, color in
              study_plots.variant_colors(list(results.variants)).items()}
    curves = study_curves.learning_curves_html(results, colors, run_href,
                                               lambda name: _heading(results, name))
    parts.append('<section id="curves"><h2>Learning curves</h2>'
                 + (curves + _unplotted_html(results) if curves
                    else '<p class="note">No finished run yet.</p>') + "</section>")
    parts.append('<section id="recipes"><h2>What each variant changes</h2>'
                 + study_recipes.recipes_html(results, lambda name: _heading(results, name))
                 + "</section>")
    parts.append(f'<section><h2>Runs</h2>{_runs_html(results)}</section>')
    parts.append("<section><h2>Wall time</h2>"
                 + _image(study_plots.wall_time_plot(results), "wall time") + "</section>")
    if results.learning_rate_searches:
        parts.append(f"<section><h2>Learning-rate search</h2>{_search_html(results)}</section>")
    if doctor:
        parts.append(_doctor_html(doctor))
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<footer>Generated {generated} by {e(_versions())}.</footer>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>Study: {e(name)}</title>'
            f"<style>{_STYLE}{study_curves.CURVES_STYLE}{study_recipes.RECIPES_STYLE}</style></head><body><main>{''.join(parts)}</main></body></html>\n")


def render_markdown(results: StudyResults, recommendation: list[str] | None = None) -> str:
    """The report's title, question, recommendation (if any), ranked table and warnings."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    spec = results.spec
    columns = _columns(results)
    lines = [f"# Study: {spec.get('name', '')}", ""]
    if spec.get("question"):
        lines += [f"> {cell(spec['question'])}", ""]
    if recommendation:
        lines += ["## Recommendation", "", *(f"- {cell(line)}" for line in recommendation), ""]
    lines += ["- " + "; ".join(f"**{k}**: {cell(v)}" for k, v in _setup(results)), ""]
    lines.append("| " + " | ".join(cell(h) for _, h in columns) + " |")
    lines.append("|" + "|".join("---" if k == "variant" else "---:" for k, _ in columns) + "|")
    lines += ["| " + " | ".join(cell(_marked(results, row[k]) if k == "variant" else row[k])
                                for k, _ in columns) + " |"
              for row in table_rows(results)]
    if results.identical:
        # Escaped: a line opening with "* " would be a list item.
        lines += ["", *(f"\\{IDENTICAL_MARK} {cell(identical_note(found, results.metric))}."
                        for found in results.identical)]
    search = ", the learning-rate search" if results.learning_rate_searches else ""
    lines += ["", "The plots (differences from the baseline, learning curves, wall time)"
              f"{search} and every variant's recipe are in report.html."]
    warnings = [*results.warnings]
    warnings += [f"{run.run_id} {run.status}" + (f": {run.error.strip().splitlines()[-1]}"
                 if run.error and run.error.strip() else "") for run in results.problems]
    if warnings:
        lines += ["", "## Warnings", "", *(f"- {cell(w)}" for w in warnings)]
    return "\n".join(lines) + "\n"


def _load(study_dir: str | Path) -> StudyResults:
    with StudyStore.open(Path(study_dir) / "study.db") as store:
        return load_results(store)


def write_study_report(
    study_dir: str | Path, recommendation: list[str] | None = None
) -> tuple[Path, Path]:
    """Write `report.html` and `report.md` into a study directory, atomically.

    Args:
        study_dir: The study directory holding `study.db`.
        recommendation: Lines to open the report with. Defaults to `None` (none).

    Returns:
        The paths of `report.html` and `report.md`.

    Raises:
        UserInputError: `study.db` is missing or not a tricklab study store.
    """
    study_dir = Path(study_dir)
    results = _load(study_dir)
    html_path, markdown_path = study_dir / "report.html", study_dir / "report.md"
    write_text(html_path, render_html(results, _doctor_reports(study_dir, results), recommendation))
    write_text(markdown_path, render_markdown(results, recommendation))
    return html_path, markdown_path


def study_table(study_dir: str | Path, width: int | None = None) -> Table:
    """The ranked table for the terminal (`tricklab study show DIR`), warnings as its caption.

    Args:
        study_dir: The study's folder.
        width: The console's width: the least telling columns (the end of
            `TERMINAL_COLUMNS`) are left out until the table fits, down to the
            rank, the variant, `n` and the verdict. Defaults to `None` (all columns).
    """
    study_dir = Path(study_dir)
    results = _load(study_dir)
    # A terminal is narrow: the mean and the difference with its interval; the
    # report holds the rest (IQM, the mean's interval, time to target, wall time).
    headers = dict(_columns(results))
    columns = [(key, headers[key]) for key in TERMINAL_COLUMNS if key in headers]
    rows = [{**row, "variant": _marked(results, row["variant"])} for row in table_rows(results)]
    report_only = [header for key, header in headers.items() if key not in TERMINAL_COLUMNS]
    table = _ranked_table(results, columns, rows, _notes(study_dir, [], report_only))
    hidden: list[str] = []
    while width is not None and len(columns) > 4 and _natural_width(table) > width:
        hidden.insert(0, columns.pop()[1])
        table = _ranked_table(results, columns, rows, _notes(study_dir, hidden, report_only))
    return table


def _notes(study_dir: Path, hidden: list[str], report_only: list[str]) -> list[str]:
    """What the terminal table leaves out, and where to see it."""
    notes = []
    if hidden:
        notes.append(f"hidden at this width: {', '.join(hidden)}; widen the terminal, or see "
                     f"them with: tricklab study show {study_dir} > table.txt")
    report = study_dir / "report.html"
    where = f"the report ({report})" if report.is_file() else "the study's report.html"
    notes.append(f"{where} also shows: {', '.join(report_only)}")
    return notes


def _ranked_table(
    results: StudyResults, columns: list[tuple[str, str]], rows: list[dict[str, str]],
    notes: list[str],
) -> Table:
    """The ranked table with these columns, the verdicts coloured; under it, as its caption,
    the footnotes of identical variants, the `notes` and the warnings."""
    direction = "higher" if results.higher_is_better else "lower"
    table = Table(title=f"{results.spec.get('name', '')}: {results.metric} "
                        f"({direction} is better)", header_style="bold", caption_justify="left")
    styles = {"better": "green", "worse": "red", "diverged": "red", "failed": "red",
              "baseline": "cyan"}
    for key, header in columns:
        left = key in ("variant", "verdict", "runs")
        table.add_column(header, justify="left" if left else "right", no_wrap=True)
    for row in rows:
        verdict = row["verdict"]
        cells = [f"[{styles[verdict]}]{verdict}[/]" if k == "verdict" and verdict in styles
                 else escape(row[k]) for k, _ in columns]
        table.add_row(*cells)
    caption = [*(f"{IDENTICAL_MARK} {identical_note(found, results.metric)}"
                 for found in results.identical), *notes, *(f"! {w}" for w in results.warnings)]
    table.caption = "\n".join(escape(line) for line in caption) or None
    return table


def _natural_width(table: Table) -> int:
    """The columns the table takes unsqueezed."""
    console = Console(width=10_000)
    return console.measure(table).maximum
