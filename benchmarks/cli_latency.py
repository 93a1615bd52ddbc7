"""How long the command line takes to answer (an error <= 1.0 s; list, schema, summary <= 1.5 s).

Each case runs `tricklab` as a user would, a fresh process each time, in a
cache that already holds the registry snapshot (as after any first command),
and prints the median wall time of `--repeats` runs next to the two
references measured in the same run: `python -c pass` (the interpreter alone)
and `tricklab --help` (the command line itself).

The errors are the ones a tired user makes in a recipe or a study file: an
unknown key, a bad value, an unknown name (a layer, an optimizer), YAML that
does not parse, and a file that is not there; the shape error is a
convolution on a flat input. The answers are those of `list layers`,
`schema` and `summary` of the chapter's Leaky ReLU/He network.

Run: `.venv/bin/python benchmarks/cli_latency.py [--repeats 5]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parent.parent
TRICKLAB = [sys.executable, "-m", "tricklab"]
RECIPE = REPOSITORY / "recipes" / "chapter11" / "leaky_relu_he.yaml"


def broken_files(folder: Path) -> dict[str, tuple[list[str], int]]:
    """Each case's command and the exit code it must end with."""
    base = yaml.safe_load(RECIPE.read_text())

    def recipe(name: str, change) -> str:
        document = yaml.safe_load(yaml.safe_dump(base))
        change(document)
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return str(path)

    (folder / "not_yaml.yaml").write_text("name: [unclosed\nmodel: {\n")
    study = folder / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "s", "base": str(RECIPE),
                                     "variants": {"a": {"train.optimizer.nmae": "adam"}}}))
    train = [*TRICKLAB, "train"]
    return {
        "python -c pass": ([sys.executable, "-c", "pass"], 0),
        "tricklab --help": ([*TRICKLAB, "--help"], 0),
        "error: unknown key": ([*train, recipe("key", lambda d: d["train"].update(epoch=3))], 2),
        "error: bad value": ([*train, recipe("value", lambda d: d["train"].update(epochs=-1))], 2),
        "error: unknown layer": ([*train, recipe("layer", lambda d: d["model"]["layers"].insert(
            1, {"dens": {"units": 3}}))], 2),
        "error: unknown optimizer": ([*train, recipe("optimizer", lambda d: d["train"].update(
            optimizer={"name": "adamm"}))], 2),
        "error: bad YAML": ([*train, str(folder / "not_yaml.yaml")], 2),
        "error: missing file": ([*train, str(folder / "missing.yaml")], 2),
        "error: study file": ([*TRICKLAB, "study", str(study), "--out", str(folder / "s")], 2),
        "error: shape": ([*train, recipe("shape", lambda d: d["model"].update(
            layers=[{"conv2d": {"filters": 4, "kernel_size": 3}}, *d["model"]["layers"]]))], 2),
        "list layers": ([*TRICKLAB, "list", "layers"], 0),
        "schema": ([*TRICKLAB, "schema"], 0),
        "summary": ([*TRICKLAB, "summary", str(RECIPE)], 0),
    }


def timed(command: list[str], code: int, environment: dict[str, str]) -> float:
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, env=environment, cwd=REPOSITORY)
    elapsed = time.perf_counter() - started
    if finished.returncode != code:
        raise SystemExit(f"{' '.join(command)} exited {finished.returncode}, not {code}: "
                         f"{finished.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        environment = {**os.environ, "TRICKLAB_CACHE": str(folder / "cache")}
        cases = broken_files(folder)
        timed(*cases["summary"], environment)  # writes the registry snapshot, as a first run does
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):  # interleaved, so drift of the machine affects all alike
            for name, (command, code) in cases.items():
                times[name].append(timed(command, code, environment))
    medians = {name: statistics.median(values) for name, values in times.items()}
    interpreter, helped = medians["python -c pass"], medians["tricklab --help"]
    print(f"median of {args.repeats} runs each; ratios against `tricklab --help` "
          f"({helped:.2f} s) in the same run")
    for name, median in medians.items():
        # A shape error needs the model built (PyTorch), not the data: it has no 1 s target.
        target = 1.0 if name.startswith("error") and name != "error: shape" else 1.5 if name in (
            "list layers", "schema", "summary") else None
        line = (f"{name:26s} {median:6.2f} s  {median / helped:5.2f}x --help  "
                f"{median - interpreter:+6.2f} s over python")
        if target is not None:
            line += f"  (target <= {target} s) {'ok' if median <= target else 'OVER'}"
        print(line)

if __name__ == "__main__":
    main()
