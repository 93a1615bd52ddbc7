"""A study's recipes as what each variant changes: from the baseline, and from the step before.

A variant reads best as its difference from the baseline, field by dotted
field (`train.optimizer.name: sgd → nadam`); a layer added or removed shows as
that layer, not as two lists of layers. A variant that `extends` another (a
ladder of tricks, each on top of the last) also shows what it changes from
that previous step, with the compared metric's difference from it. The full
resolved recipe stays one click away, in a `<details>`.
"""

from __future__ import annotations

import difflib
import html
import json
import math
from collections.abc import Callable
from typing import Any

import yaml

from tricklab.differences import ABSENT, recipe_differences
from tricklab.study.results import StudyResults
from tricklab.study.statistics import compare

__all__ = ["RECIPES_STYLE", "changes", "recipes_html", "steps"]

IGNORED = ("name", "seed")
"""Top-level fields every run sets for itself: never a difference between variants."""

RECIPES_STYLE = """
.recipe{border-top:1px solid #d8dee4;padding:6px 0 4px}.recipe h3{margin:6px 0 2px;font-size:16px}
.recipe .about{margin:2px 0 6px;color:#1f2328}.chain{font-size:13px;color:#57606a;margin:2px 0}
table.diff{margin:6px 0 8px;max-width:100%;table-layout:auto}
table.diff caption{text-align:left;font-size:13px;color:#57606a;padding:2px 0}
table.diff td,table.diff th{text-align:left;white-space:normal;vertical-align:top}
table.diff td.path{overflow-wrap:anywhere;min-width:9em}
table.diff td.from,table.diff td.to{overflow-wrap:anywhere}
table.diff code{white-space:pre-wrap;font-size:12px}
table.diff td.to{color:#116329}table.diff td.from{color:#a40e26}
"""
"""The page's CSS for the recipe differences."""


def _items(values: list[Any]) -> list[str]:
    return [json.dumps(value, sort_keys=True, default=str) for value in values]


def changes(base: dict[str, Any], recipe: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """What `recipe` changes from `base`: `(dotted path, base value, recipe value)`.

    As `tricklab.differences.recipe_differences`, but a list whose length
    changed (layers added or removed) is matched item by item, so that only the
    items added, removed or changed are listed; an item's path is its index in
    the list that has it. `ABSENT` stands for a field or item one side lacks.
    The fields every run sets for itself (`name`, `seed`) are left out.

    Args:
        base: The recipe compared with, as plain data.
        recipe: The variant's recipe.
    """
    found = []
    for path, old, new in recipe_differences(base, recipe):
        if path in IGNORED:
            continue
        if not (isinstance(old, list) and isinstance(new, list)):
            found.append((path, old, new))
            continue
        matcher = difflib.SequenceMatcher(None, _items(old), _items(new), autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            if tag == "replace" and i2 - i1 == j2 - j1:
                found += [item for offset in range(i2 - i1) for item in recipe_differences(
                    old[i1 + offset], new[j1 + offset], f"{path}.{j1 + offset}")]
                continue
            found += [(f"{path}.{i}", old[i], ABSENT) for i in range(i1, i2)]
            found += [(f"{path}.{j}", ABSENT, new[j]) for j in range(j1, j2)]
    return found


def steps(results: StudyResults) -> dict[str, list[str]]:
    """Each variant's `extends` chain, oldest first and ending with itself.

    Read from the spec's `extends` of each variant (a store written before the
    spec kept it has none: every chain is then the variant alone).
    """
    variants = results.spec.get("variants") or {}
    chains = {}
    for name in results.variants:
        chain = [name]
        while (parent := (variants.get(chain[0]) or {}).get("extends")) in results.variants and (
                parent not in chain):
            chain.insert(0, parent)
        chains[name] = chain
    return chains


def _shown(value: Any) -> str:
    if value is ABSENT:
        return "(none)"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=70).strip()


def _diff_table(found: list[tuple[str, Any, Any]], against: str, name: str, caption: str) -> str:
    e = html.escape
    if not found:
        return (f'<p class="note same" data-against="{e(against)}">{caption}: '
                "no field differs.</p>")
    rows = "".join(
        f'<tr data-path="{e(path)}"><td class="path"><code>{e(path)}</code></td>'
        f'<td class="from"><code>{e(_shown(old))}</code></td>'
        f'<td class="to">→ <code>{e(_shown(new))}</code></td></tr>' for path, old, new in found)
    return (f'<table class="diff" data-against="{e(against)}"><caption>{caption}</caption>'
            f'<thead><tr><th>field</th><th>{e(against)}</th><th>{e(name)}</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _against_step(results: StudyResults, name: str, previous: str) -> str:
    """The compared metric's difference from the previous step, as a note, or `""`."""
    ours, theirs = results.variants[name].values, results.variants[previous].values
    if not ours or not theirs:
        return ""
    found = compare(ours, theirs, results.higher_is_better, results.analysis.confidence)
    interval = ""
    if math.isfinite(found.ci_low):
        percent = round(100 * results.analysis.confidence)
        interval = f" [{found.ci_low:+.4f}, {found.ci_high:+.4f}] ({percent}% CI)"
    if not found.detectable:
        verdict = "no detectable difference"
    else:
        verdict = "better" if (found.difference > 0) == results.higher_is_better else "worse"
    return (f'<p class="note step">Against the previous step ({html.escape(previous)}): '
            f"{html.escape(results.metric)} {found.difference:+.4f}{interval}, {verdict}.</p>")


def recipes_html(results: StudyResults, heading: Callable[[str], str]) -> str:
    """Every variant's recipe as its changes, in the spec's order: an HTML fragment.

    Args:
        results: The study's results.
        heading: A function of a variant's name giving the HTML that heads its part
            (its name, its verdict).
    """
    e = html.escape
    baseline = results.variants[results.baseline]
    chains = steps(results)
    parts = []
    for name, variant in results.variants.items():
        body = [f"<h3>{heading(name)}</h3>"]
        if variant.description:
            body.append(f'<p class="about">{e(variant.description)}</p>')
        chain = chains[name]
        if len(chain) > 1:
            body.append('<p class="chain">builds on: ' + " → ".join(
                f'<a href="#recipe-{e(step)}">{e(step)}</a>' if step != name else e(step)
                for step in chain) + "</p>")
        if name == results.baseline:
            body.append('<p class="note">The baseline: every other variant is shown as what '
                        "it changes from this recipe.</p>")
        else:
            body.append(_diff_table(changes(baseline.recipe, variant.recipe), results.baseline,
                                    name, f"changes from the baseline ({e(results.baseline)})"))
        previous = chain[-2] if len(chain) > 1 else None
        if previous is not None and previous != results.baseline:
            body.append(_diff_table(
                changes(results.variants[previous].recipe, variant.recipe), previous, name,
                f"changes from the previous step ({e(previous)})"))
            body.append(_against_step(results, name, previous))
        search = results.learning_rate_searches.get(name)
        if search is not None and search.chosen is not None:
            own = ((variant.recipe.get("train") or {}).get("optimizer") or {}).get(
                "learning_rate")
            own = ("" if own is None else ", the recipe's own" if own == search.chosen
                   else f" (the recipe's own: {own:g})")
            body.append(f'<p class="note">Learning rate chosen by the search: {search.chosen:g}'
                        f"{own}; its runs trained with it.</p>")
        text = yaml.safe_dump(variant.recipe, sort_keys=False, default_flow_style=None)
        body.append(f"<details><summary>full recipe</summary><pre>{e(text)}</pre></details>")
        parts.append(f'<div class="recipe" id="recipe-{e(name)}" data-variant="{e(name)}">'
                     f'{"".join(body)}</div>')
    return "".join(parts)
