"""`tricklab runs diff A B`: the recipe fields two runs differ in, and their results side by side.

The recipes are read with the bounded YAML reader and compared field by field
(`tricklab.differences`); the results are `result.json`'s status, epochs,
wall time and final metrics, with B − A beside each number. Nothing here
imports PyTorch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tricklab.differences import ABSENT, recipe_differences
from tricklab.errors import UserInputError, shown_value
from tricklab.recipe.yaml_input import read_yaml_file
from tricklab.run.runs_store import STORE_NAME, finite_number
from tricklab.run.runs_table import read_json_object
from tricklab.run.runs_view import duration_text, score_text


@dataclass(frozen=True)
class RunSide:
    """What `runs diff` reads of one run: its recipe and its `result.json` (if any).

    Args:
        path: The run folder.
        recipe: Its resolved recipe.
        result: Its result (`{}` for a run that has none yet).
    """

    path: Path
    recipe: dict[str, Any]
    result: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        """The final metrics of `result.json`."""
        metrics = self.result.get("metrics")
        return metrics if isinstance(metrics, dict) else {}

    @property
    def status(self) -> str:
        """The result's status, or `incomplete` without one."""
        status = self.result.get("status")
        return status if isinstance(status, str) else "incomplete"


def read_run(folder: str | Path) -> RunSide:
    """A run folder's recipe and result, for `runs diff`.

    Args:
        folder: The run folder, holding `recipe.yaml` (and `result.json` once finished).

    Raises:
        UserInputError: The folder does not exist, is a study, holds no
            `recipe.yaml`, or its recipe is not a mapping.
    """
    path = Path(folder)
    recipe_path = path / "recipe.yaml"
    if not recipe_path.is_file():
        if not path.exists():
            why = "does not exist"
        elif (path / STORE_NAME).is_file():
            example = path / "runs" / "<variant>" / "seed-0"
            why = f"is a study, not a run; compare two of its runs, e.g. {example}"
        else:
            why = "is not a run folder (no recipe.yaml)"
        raise UserInputError(f"runs diff: {path} {why}; `tricklab runs` lists the runs there are")
    recipe = read_yaml_file(recipe_path)
    if not isinstance(recipe, dict):
        raise UserInputError(f"runs diff: {recipe_path} is not a run's resolved recipe (a mapping)")
    return RunSide(path, recipe, read_json_object(path / "result.json") or {})


def diff_runs(a: str | Path, b: str | Path) -> dict[str, Any]:
    """Two runs compared: the recipe fields that differ and the metrics side by side.

    Args:
        a: The first run folder.
        b: The second.

    Returns:
        `a` and `b` (the folders), `recipe`: one `{"field", "a", "b"}` per field
        that differs, in document order (a side without the field has no key),
        and `results`: `status`, `epochs`, `wall_time_s` and every metric of either
        run, each `{"a": value, "b": value}` (`None` where a run has none).

    Raises:
        UserInputError: Either folder is not a run (`read_run`).
    """
    first, second = read_run(a), read_run(b)
    fields = []
    for path, left, right in recipe_differences(first.recipe, second.recipe):
        item: dict[str, Any] = {"field": path}
        if left is not ABSENT:
            item["a"] = left
        if right is not ABSENT:
            item["b"] = right
        fields.append(item)
    results: dict[str, dict[str, Any]] = {
        "status": {"a": first.status, "b": second.status},
        "epochs": {"a": first.result.get("epochs_run"), "b": second.result.get("epochs_run")},
        "wall_time_s": {"a": first.result.get("wall_time_s"),
                        "b": second.result.get("wall_time_s")},
    }
    for name in [*first.metrics, *(n for n in second.metrics if n not in first.metrics)]:
        results[name] = {"a": first.metrics.get(name), "b": second.metrics.get(name)}
    return {"a": str(first.path), "b": str(second.path), "recipe": fields, "results": results}


def format_diff(diff: dict[str, Any]) -> str:
    """`diff_runs`'s answer as lines: each differing field `path: A → B`, then the results
    in two columns with B − A beside the numbers.

    Args:
        diff: What `diff_runs` returned.
    """
    lines = [f"A: {diff['a']}", f"B: {diff['b']}"]
    if diff["recipe"]:
        count = len(diff["recipe"])
        lines.append(f"recipe: {count} field{'s' * (count != 1)} differ{'s' * (count == 1)}")
        lines += [f"  {item['field']}: {_shown(item, 'a')} → {_shown(item, 'b')}"
                  for item in diff["recipe"]]
    else:
        lines.append("recipe: the same")
    rows = [("", "A", "B", "B - A"), *(
        (_LABELS.get(name, name), _result_text(name, pair["a"]), _result_text(name, pair["b"]),
         _change(name, pair["a"], pair["b"])) for name, pair in diff["results"].items())]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines.append("results:")
    for row in rows:
        lines.append("  " + "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))).rstrip())
    return "\n".join(lines)


_LABELS = {"wall_time_s": "wall time"}
"""Result rows shown under another name than their key."""


def _shown(item: dict[str, Any], side: str) -> str:
    if side not in item:
        return "(not set)"
    value = item[side]
    if isinstance(value, str):
        # A plain word as YAML shows it; an empty or unusual text as its repr.
        return value if value.isprintable() and 0 < len(value) <= 60 else shown_value(value, 60)
    text = json.dumps(value, separators=(", ", ": "), default=str)
    if len(text) > 60:
        return f"a list of {len(value)}" if isinstance(value, list) else f"{text[:57]}..."
    return text


def _result_text(name: str, value: Any) -> str:
    if name == "wall_time_s":
        return duration_text(finite_number(value)) or "-"
    if name == "epochs" or isinstance(value, str):
        return "-" if value is None else str(value)
    return score_text(finite_number(value))


def _change(name: str, a: Any, b: Any) -> str:
    left, right = finite_number(a), finite_number(b)
    if left is None or right is None:
        return ""
    if name == "epochs":
        return f"{right - left:+g}"
    if name == "wall_time_s":
        return ("-" if right < left else "+") + duration_text(abs(right - left))
    return f"{right - left:+.4f}"


__all__ = ["RunSide", "diff_runs", "format_diff", "read_run"]
