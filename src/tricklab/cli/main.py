"""The `tricklab` command: train, study, tricks, summary, lr-find, predict, data, schema, list.

Results go to stdout (what a script reads: metrics, paths written, tables;
with `--json` one JSON object instead), progress and warnings to stderr.
All user errors end here as one line on stderr and exit code 2; the machine's
refusals (disk full, read-only, out of memory) as one line and exit code 4; a
diverged run exits 3, an interrupted one 130 (Ctrl-C) or 143 (SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup, TyperOption
from typer.exceptions import TyperException

from tricklab import __version__
from tricklab.atomic import json_safe
from tricklab.errors import (
    EXIT_INTERRUPTED,
    EXIT_SYSTEM,
    EXIT_USER_ERROR,
    TricklabError,
    UserInputError,
    is_environment_failure,
    system_error_line,
)
from tricklab.signals import stop_signals

if TYPE_CHECKING:
    from tricklab.recipe.snapshot import Snapshot

_typed_display = TyperOption.display_type_rich


def _flag_display(self: TyperOption, ctx: typer.Context) -> str | None:
    # A flag takes no value, so the `<bool>` typer shows beside it in help says nothing.
    return None if self.is_flag else _typed_display(self, ctx)


TyperOption.display_type_rich = _flag_display  # type: ignore[method-assign]

app = typer.Typer(
    name="tricklab",
    help="Train deep neural networks well, and measure what each trick buys.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: fetch them into the cache.", no_args_is_help=True)
app.add_typer(data_app, name="data")



class _DefaultCommandGroup(TyperGroup):
    """A group whose arguments go to `default_command` when they name none of its commands.

    So options may come first (`tricklab study --quick STUDY`), as with any command.
    """

    default_command = ""
    """The command that takes arguments naming no other, and no arguments where the
    group does not answer those with its help."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        elif not args and not self.no_args_is_help:
            args = [self.default_command]
        return super().parse_args(ctx, args)


class _StudyGroup(_DefaultCommandGroup):
    """`tricklab study FILE` runs a study; `tricklab study show DIR` shows one."""

    default_command = "run"


study_app = typer.Typer(
    cls=_StudyGroup,
    help="Studies: variants × seeds, with confidence intervals and an HTML report. "
    "`tricklab study STUDY.yaml` runs one (as `study run` does); `study show DIR` shows it.",
    no_args_is_help=True,
)
app.add_typer(study_app, name="study")


class _RunsGroup(_DefaultCommandGroup):
    """`tricklab runs [FOLDER]` lists runs (as `runs list` does); `runs diff A B` compares two."""

    default_command = "list"


runs_app = typer.Typer(
    cls=_RunsGroup,
    help="Runs and studies on disk: `tricklab runs [FOLDER]` lists them (as `runs list` "
    "does); `runs diff A B` compares two runs.",
)
app.add_typer(runs_app, name="runs")

RecipeArgument = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
MAX_STEPS = 1_000_000
"""Bound of `--steps` (doctor, lr-find): a million steps is days of training already."""
MAX_SAMPLES = 10_000
"""Bound of `predict --mc-samples`."""


def folder_option(value: str) -> Path:
    """Parse an `--out` folder; an empty one (an unset shell variable) is a usage error."""
    if not value.strip():
        raise typer.BadParameter("an empty path; give the folder to write into, e.g. runs/x")
    return Path(value)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="PATH=VALUE",
                 help="Override a field by dotted path, e.g. train.epochs=3 (repeats)."),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON object on stdout, for scripts; the lines "
                 "meant for a person go to stderr."),
]
MlflowOption = Annotated[
    str | None,
    typer.Option("--mlflow", metavar="URI",
                 help="Log to MLflow at this tracking URI, e.g. sqlite:///mlflow.db (default: "
                 "$MLFLOW_TRACKING_URI; needs pip install 'tricklab[mlflow]')."),
]
TensorboardOption = Annotated[
    bool,
    typer.Option("--tensorboard/--no-tensorboard",
                 help="Write TensorBoard event files into each run's tensorboard/ folder "
                 "(unless the recipe says train.tensorboard: false)."),
]


def _human_lines(as_json: bool) -> contextlib.AbstractContextManager[Any]:
    """With `--json`, what would go to stdout goes to stderr: stdout then holds the JSON alone."""
    return contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()


def _print_json(data: dict[str, Any]) -> None:
    """Print `data` on stdout as strict JSON (NaN and Inf as null, as the files on disk have it)."""
    typer.echo(json.dumps(json_safe(data), indent=2, allow_nan=False))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tricklab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """tricklab: every technique of the 'Training Deep Neural Networks' chapter, measured."""


_snapshot_missing = False
"""Whether this command found no registry snapshot in the cache: it writes one at its end."""


def _snapshot() -> Snapshot | None:
    """The cached registry snapshot, or `None` (noted, so that `main` writes one)."""
    global _snapshot_missing
    from tricklab.recipe.snapshot import cached_snapshot

    snapshot = cached_snapshot()
    _snapshot_missing = snapshot is None
    return snapshot


def _check_recipe(recipe: Path, overrides: list[str] | None) -> None:
    """The recipe's first error, before PyTorch is imported (`tricklab.recipe.quick_check`)."""
    from tricklab.recipe.quick_check import quick_check_recipe

    quick_check_recipe(recipe, overrides or [], _snapshot())


@app.command()
def train(
    recipe: RecipeArgument,
    out: Annotated[Path | None, typer.Option(
        parser=folder_option, help="Run directory (default: runs/<name>).")] = None,
    set_: SetOption = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in the run directory.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a run already in the folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="One plain line per epoch, no progress bar.")] = False,
    doctor: Annotated[
        bool, typer.Option(help="Probe every layer through the run; write doctor.json.")
    ] = False,
    as_json: JsonOption = False,
    mlflow: MlflowOption = None,
    tensorboard: TensorboardOption = True,
) -> int:
    """Train the network a recipe describes; results go to the run directory.

    Prints the final metrics and the run directory on stdout (with `--json`,
    `result.json` and `run_dir` as one JSON object); progress goes to stderr.
    """
    _check_recipe(recipe, set_)
    from tricklab.run.mlflow_uri import tracking_uri

    uri = tracking_uri(mlflow)
    if uri is not None:  # MLflow's import, in a process of its own, overlaps PyTorch's
        from tricklab.run.mlflow_client import start_logger

        start_logger(uri)
    from tricklab.recipe import load_recipe
    from tricklab.run import train_recipe

    with _human_lines(as_json):
        resolved = load_recipe(recipe, set_ or [])
        outcome = train_recipe(
            resolved, out=out, resume=resume, overwrite=overwrite,
            progress="lines" if quiet else "auto", doctor=doctor, mlflow=uri,
            tensorboard=tensorboard,
        )
        metrics = outcome.result["metrics"]
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if v is not None)
        typer.echo(f"{outcome.result['status']}: {shown}")
        if doctor:
            _show_diagnosis(outcome.run_dir)
        typer.echo(f"run directory: {outcome.run_dir}")
    if as_json:
        result = json.loads((outcome.run_dir / "result.json").read_text(encoding="utf-8"))
        if doctor:
            result["doctor"] = _diagnosis_data(outcome.run_dir)
        _print_json({**result, "run_dir": outcome.run_dir})
    return outcome.exit_code


@app.command(name="doctor")
def doctor_command(
    recipe: RecipeArgument,
    out: Annotated[
        Path | None, typer.Option(parser=folder_option,
                                  help="Output directory (default: runs/<name>-doctor).")
    ] = None,
    set_: SetOption = None,
    steps: Annotated[
        int, typer.Option(min=1, max=MAX_STEPS, help="Training steps with probes.")
    ] = 300,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier doctor run.")] = False,
    quiet: Annotated[bool, typer.Option(help="One plain line per epoch, no progress bar.")] = False,
    as_json: JsonOption = False,
) -> int:
    """Train briefly with probes on every layer; say what is wrong and the chapter's fix.

    Prints the verdict, its findings and the `doctor.json` path on stdout (with
    `--json`, the verdict, findings, steps and `run_dir` as one JSON object).
    """
    _check_recipe(recipe, set_)
    from tricklab.recipe import load_recipe
    from tricklab.run.doctor import doctor_recipe

    with _human_lines(as_json):
        resolved = load_recipe(recipe, set_ or [])
        outcome = doctor_recipe(resolved, out=out, steps=steps, overwrite=overwrite,
                                progress="lines" if quiet else "auto")
        _show_diagnosis(outcome.run_dir)
        typer.echo(f"doctor: {outcome.run_dir / 'doctor.json'}")
    if as_json:
        _print_json({**_diagnosis_data(outcome.run_dir), "steps": outcome.steps,
                     "run_dir": outcome.run_dir})
    return 0


def _diagnosis_data(folder: Path) -> dict[str, Any]:
    """`doctor.json`'s verdict and findings (its probes stay in the file: they are the raw data)."""
    stored = json.loads((folder / "doctor.json").read_text(encoding="utf-8"))
    return {"verdict": stored["verdict"], "findings": stored["findings"]}


def _show_diagnosis(folder: Path) -> None:
    from rich.console import Console

    from tricklab.doctor.diagnosis import diagnose, format_diagnosis

    # The rules are deterministic: diagnosing the stored probes again gives the stored verdict.
    probes = json.loads((folder / "doctor.json").read_text(encoding="utf-8"))["probes"]
    Console().print(format_diagnosis(diagnose(probes)))


@app.command()
def summary(recipe: RecipeArgument, set_: SetOption = None) -> int:
    """Print the recipe's network as a Keras-like table: layers, output shapes, parameters."""
    _check_recipe(recipe, set_)
    from tricklab.model_summary import format_summary_table, summarize_layers
    from tricklab.recipe.quick_check import snapshot_resolved_recipe

    # Without PyTorch where the snapshot resolves the layers and the rules are sure of
    # every row; otherwise the model is built, which gives the table or the exact error.
    resolved = snapshot_resolved_recipe(recipe, set_ or [], _snapshot())
    quick = None if resolved is None else summarize_layers(resolved.model.input_shape,
                                                           resolved.model.layers)
    if quick is not None:
        table = format_summary_table(quick)
    else:
        from tricklab.nn import build_model, format_summary
        from tricklab.recipe import load_recipe

        resolved = load_recipe(recipe, set_ or [])
        if resolved.model.reuse is None:
            # The model alone: an optimizer (and what training imports) would only cost time.
            model = build_model(resolved.model.input_shape, resolved.model.layers)
        else:
            from tricklab.run import build

            model, _ = build(resolved)
        table = format_summary(model)
    typer.echo(f"Recipe: {resolved.name}")
    typer.echo(table)
    if resolved.preset:
        typer.echo(f"\nPreset {resolved.preset} decided:")
        for decision in resolved.preset_decisions or ["nothing: the recipe says it all"]:
            typer.echo(f"  {decision}")
    return 0


@app.command(name="lr-find")
def lr_find(
    recipe: RecipeArgument,
    out: Annotated[
        Path | None, typer.Option(parser=folder_option,
                                  help="Output directory (default: runs/<name>-lr-find).")
    ] = None,
    set_: SetOption = None,
    steps: Annotated[
        int, typer.Option(min=2, max=MAX_STEPS, help="Steps of the range test.")
    ] = 300,
    min_lr: Annotated[float, typer.Option(min=0, help="First learning rate.")] = 1e-6,
    max_lr: Annotated[float, typer.Option(min=0, help="Last learning rate.")] = 10.0,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier test.")] = False,
) -> int:
    """Learning-rate range test: loss against an exponentially growing learning rate."""
    _check_recipe(recipe, set_)
    from tricklab.recipe import load_recipe
    from tricklab.run import lr_find_recipe

    if not min_lr < max_lr:
        raise UserInputError(f"--min-lr ({min_lr}) must be below --max-lr ({max_lr})")
    resolved = load_recipe(recipe, set_ or [])
    folder, summary = lr_find_recipe(resolved, out, overwrite, steps, min_lr, max_lr)
    suggestion = summary["suggestion"]
    if suggestion is None:
        typer.echo("the loss never fell: try a larger --max-lr or more --steps")
    else:
        typer.echo(
            f"loss lowest at learning rate {summary['best_learning_rate']:.3g}; "
            f"suggested max learning rate for 1cycle: {suggestion:.3g}"
        )
        typer.echo(one_cycle_line(resolved.to_dict(), suggestion))
    typer.echo(f"plot: {folder / 'plots' / 'lr_find.png'}")
    return 0


def one_cycle_line(recipe: dict[str, Any], rate: float) -> str:
    """The line `lr-find` ends with: the `--set` options that give `recipe` a 1cycle peak of `rate`.

    The options go to `tricklab train RECIPE` as they are: they set the peak of
    the recipe's 1cycle schedule, add 1cycle where the recipe has no schedule,
    or replace another schedule (saying so). With `train.phases`, they apply to
    the first phase, whose optimizer the range test used. Where the optimizer
    runs without momentum (RMSprop by default), 1cycle is told not to cycle one.

    Args:
        recipe: The resolved recipe, as plain data (`Recipe.to_dict()`).
        rate: The peak learning rate.
    """
    train = recipe["train"]
    where, schedule, optimizer = "train", train.get("schedule"), train["optimizer"]
    if train.get("phases"):
        phase = train["phases"][0]
        where, schedule = "train.phases.0", phase.get("schedule")
        optimizer = phase.get("optimizer") or optimizer
    peak = _yaml_float(rate)
    current = next(iter(schedule)) if schedule else None
    if current == "one_cycle":
        return f"use it: --set {where}.schedule.one_cycle.max_learning_rate={peak}"
    settings = {"max_learning_rate": peak}
    if optimizer["name"] == "rmsprop" and not optimizer.get("momentum"):
        settings["cycle_momentum"] = "false"
    phases = bool(train.get("phases"))
    if current is None:
        options = [f"{where}.schedule.one_cycle.{key}={value}" for key, value in settings.items()]
        what = "adds a 1cycle schedule" + " to the first phase" * phases
    else:
        inner = ", ".join(f"{key}: {value}" for key, value in settings.items())
        options = [f"{where}.schedule={{one_cycle: {{{inner}}}}}"]
        what = f"1cycle in place of the {current} schedule" + " of the first phase" * phases
    return f"use it ({what}): " + " ".join(f"--set {shlex.quote(option)}" for option in options)


def _yaml_float(value: float) -> str:
    """`value` to 3 significant digits, written so YAML reads a float (`1.0e-05`, not `1e-05`)."""
    text = f"{value:.3g}"
    mantissa, exponent = text.partition("e")[::2]
    if exponent and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


@app.command(name="predict")
def predict_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of a finished run.",
                                            show_default=False)],
    input_path: Annotated[
        Path | None,
        typer.Option("--input", help="New raw inputs: a .csv/.tsv/.parquet table, an .npz "
                     "file, an image or a folder of images (or of class subfolders), prepared "
                     "as the run's training data was. Without it, the run's --split."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="CSV file to write, one row per sample; its summary .json and "
                     "confusion-matrix .png go beside it (default: RUN_DIR/predictions.csv)."),
    ] = None,
    mc_samples: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_SAMPLES,
                     help="Passes with dropout on, averaged (Monte Carlo dropout); "
                                 "without it, one deterministic pass."),
    ] = None,
    split: Annotated[str, typer.Option(help="Data to predict: test, val or train.")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of the dropout masks.")] = 0,
    batch_size: Annotated[
        int, typer.Option(min=1, max=MAX_STEPS, help="Samples per forward pass.")
    ] = 1024,
    best: Annotated[
        bool, typer.Option("--best", help="Use the best epoch's model (RUN_DIR/model_best, "
                           "by train.best_monitor) instead of the final one.")
    ] = False,
    as_json: JsonOption = False,
) -> int:
    """Predict with a finished run's model: its own data or new files; one row per sample.

    Prints the scores and the paths written on stdout (with `--json`, the
    summary written beside the CSV as one JSON object).
    """
    from tricklab.run.predict import predict_run

    with _human_lines(as_json):
        summary = predict_run(run_dir, mc_samples, split, batch_size, seed, input_path, output,
                              best)
        _show_predictions(summary, run_dir)
    if as_json:
        _print_json(summary)
    return 0


def _show_predictions(summary: dict[str, Any], run_dir: Path) -> None:
    from rich.console import Console

    from tricklab.report.uncertainty import confidence_bins_table
    from tricklab.run.predict import PLOT_FILE

    what = summary.get("split") or summary.get("input")
    line = f"{what}: {summary['count']} samples, {summary['mc_samples']} pass(es)"
    if "accuracy" in summary:
        line += f"; accuracy {summary['accuracy']:.4f}"
    if "mae" in summary:
        line += f"; MAE {summary['mae']:.4g}, RMSE {summary['rmse']:.4g}"
    if "mean_entropy" in summary:
        line += (f"; mean entropy {summary['mean_entropy']:.4f} nats, mean std "
                 f"{summary['mean_std']:.4f}")
    typer.echo(line)
    if "per_class" in summary:
        typer.echo("per class: " + "; ".join(
            f"{name} precision {_score(scores['precision'])} recall {_score(scores['recall'])}"
            for name, scores in summary["per_class"].items()))
    if "confidence_bins" in summary:
        typer.echo("accuracy by confidence, in equal-count bins, least confident first:")
        Console(width=max(80, Console().width)).print(
            confidence_bins_table(summary["confidence_bins"]))
        share = f"{summary['tail_fraction']:.0%}"
        typer.echo(f"accuracy of the {share} least confident: "
                   f"{summary['least_confident_accuracy']:.4f}, {share} most confident: "
                   f"{summary['most_confident_accuracy']:.4f}")
    rows = Path(summary["rows"])
    typer.echo(f"predictions: {rows}")
    typer.echo(f"summary: {rows.with_suffix('.json')}")
    if "per_class" in summary:
        typer.echo(f"plot: {rows.with_name(rows.stem + '_confusion_matrix.png')}")
        if "split" in summary:
            typer.echo(f"plot: {Path(run_dir) / 'plots' / PLOT_FILE}")


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@study_app.command(name="run")
def study_run(
    study: Annotated[Path, typer.Argument(help="Study YAML file.", show_default=False)],
    out: Annotated[
        Path | None, typer.Option(parser=folder_option,
                                  help="Study directory (default: runs/<name>).")
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(help="Seeds per variant (default: the file's).")
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="Fewer seeds and epochs (the file's quick:), in runs/<name>-quick.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Runs in parallel (default: the number of cores).")
    ] = None,
    backend: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address, e.g. 127.0.0.1:6379.")
    ] = None,
    force_new: Annotated[
        bool, typer.Option(help="Discard a stored study made from another spec and start over.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="One plain line per finished run.")] = False,
    doctor: Annotated[
        bool, typer.Option(help="Probe every run (as train --doctor); the report shows it.")
    ] = False,
    batch_seeds: Annotated[
        bool | None,
        typer.Option(
            "--batch-seeds/--no-batch-seeds",
            help="Train a variant's seeds together as one batched model where its recipe "
            "allows (default: on a GPU only, where it pays).",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="PATH=VALUE",
                     help="Override a field of every variant's recipe by dotted path, e.g. "
                     "train.epochs=3 (repeats); kept with the study, so a rerun with other "
                     "--set values is another study."),
    ] = None,
    as_json: JsonOption = False,
    mlflow: MlflowOption = None,
    tensorboard: TensorboardOption = True,
) -> int:
    """Run a study (or resume it: finished runs are kept), then write its report.

    Prints the ranked table and the report's path on stdout (with `--json`,
    the table as data with the report's path and the study folder, as one JSON
    object); progress goes to stderr.
    """
    from tricklab.recipe.quick_check import quick_check_study

    quick_check_study(study, seeds, quick, set_ or [], _snapshot())
    from tricklab.run.mlflow_uri import tracking_uri

    uri = tracking_uri(mlflow)
    from tricklab.report.study_report import write_study_report
    from tricklab.run.study import run_study, study_summary

    with _human_lines(as_json):
        outcome = run_study(
            study, out=out, seeds=seeds, quick=quick, workers=workers, backend=backend,
            address=address, force_new=force_new, progress="lines" if quiet else "auto",
            report=lambda folder: write_study_report(folder)[0], doctor=doctor,
            batch_seeds=batch_seeds, overrides=set_ or [], mlflow=uri, tensorboard=tensorboard,
        )
        counts = ", ".join(f"{count} {status}" for status, count in sorted(outcome.counts.items()))
        typer.echo(f"runs: {counts}", err=True)
        _show_study(outcome.study_dir)
        if outcome.report is not None:
            typer.echo(f"report: {outcome.report}")
    if as_json:
        _print_json({**study_summary(outcome.study_dir), "runs": outcome.counts,
                     "report": outcome.report, "study_dir": outcome.study_dir})
    return outcome.exit_code


@app.command(name="tricks")
def tricks_command(
    recipe: RecipeArgument,
    seeds: Annotated[
        int | None, typer.Option(help="Seeds per variant (default: 5).")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Epochs per run (default: the recipe's).")
    ] = None,
    budget: Annotated[
        str | None, typer.Option(help="Finish within this time, e.g. 90s, 20m, 1.5h: one "
                                 "epoch of the baseline is timed, then seeds (at least 3), "
                                 "epochs (at most --epochs) and, if it must, the variants "
                                 "are chosen to fit.")
    ] = None,
    families: Annotated[
        str | None, typer.Option(help="Families to try, comma-separated, of init_activation, "
                                 "batch_norm, clipping, optimizer, schedule, regularization, "
                                 "preset (default: all).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(parser=folder_option,
                                  help="Study directory (default: runs/<name>-tricks).")
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="2 seeds of 1 epoch, one variant per family, in "
                           "runs/<name>-tricks-quick.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Runs in parallel (default: the number of cores).")
    ] = None,
    backend: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address, e.g. 127.0.0.1:6379.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="One plain line per finished run.")] = False,
    batch_seeds: Annotated[
        bool | None,
        typer.Option(
            "--batch-seeds/--no-batch-seeds",
            help="Train a variant's seeds together as one batched model where its recipe "
            "allows (default: on a GPU only, where it pays).",
        ),
    ] = None,
    tensorboard: TensorboardOption = True,
) -> int:
    """Try the chapter's tricks one at a time on a recipe; recommend the ones that help."""
    started = time.perf_counter()
    _check_recipe(recipe, None)
    from tricklab.run.tricks import (
        DEFAULT_SEEDS,
        TricksPlan,
        parse_families,
        plan_tricks,
        run_tricks,
    )
    from tricklab.run.tricks_probe import parse_budget

    budget_seconds = None if budget is None else parse_budget(budget)
    plan = plan_tricks(recipe, parse_families(families),
                       DEFAULT_SEEDS if seeds is None else seeds, epochs, quick)

    def announce(folder: Path, arranged: TricksPlan, lines: list[str]) -> None:
        for line in lines:
            typer.echo(line, err=True)
        searched = [variant.name for variant in arranged.variants if variant.searched]
        typer.echo(f"tricks: the baseline and {len(arranged.variants)} variants in {folder}"
                   + (f"; learning rates of {', '.join(searched)} searched on "
                      f"{arranged.search_metric}" if searched else ""), err=True)
        for name, reason in arranged.skipped.items():
            typer.echo(f"skipped {name}: {reason}", err=True)

    outcome = run_tricks(
        plan, out=out, workers=workers, backend=backend, address=address,
        progress="lines" if quiet else "auto", batch_seeds=batch_seeds, announce=announce,
        budget_seconds=budget_seconds, started=started, tensorboard=tensorboard,
    )
    counts = ", ".join(f"{count} {status}" for status, count in sorted(
        outcome.study.counts.items()))
    typer.echo(f"runs: {counts}", err=True)
    _show_study(outcome.study_dir)
    for line in outcome.recommended_lines:
        typer.echo(line)
    if outcome.timing is not None:
        typer.echo(outcome.timing)
    if outcome.study.report is not None:
        typer.echo(f"report: {outcome.study.report}")
    if outcome.recommendation is not None and outcome.recommendation.document is not None:
        typer.echo(f"recommended: {outcome.study_dir / 'recommended.yaml'}")
    typer.echo(f"study: {outcome.study_dir / 'tricks.yaml'}")
    return outcome.exit_code


@study_app.command(name="show")
def study_show(
    folder: Annotated[Path, typer.Argument(help="Study directory.", show_default=False)],
    as_json: JsonOption = False,
) -> int:
    """Print a study's ranked table with confidence intervals (with `--json`, as data)."""
    from tricklab.run.study_folder import check_study_folder

    check_study_folder(folder)
    if as_json:
        from tricklab.run.study import study_summary

        report = folder / "report.html"
        _print_json({**study_summary(folder), "report": report if report.is_file() else None,
                     "study_dir": folder})
    else:
        _show_study(folder)
    return 0


def _show_study(folder: Path) -> None:
    from rich.console import Console

    from tricklab.report.study_report import study_table

    console = Console()
    if console.is_terminal:
        console.print(study_table(folder, width=console.width))
    else:  # into a file or a log: the whole table, however wide
        Console(width=250).print(study_table(folder))


@runs_app.command(name="list")
def runs_list(
    folder: Annotated[Path, typer.Argument(help="Folder holding runs and studies.")] = Path("runs"),
    sort: Annotated[str, typer.Option(
        metavar="COLUMN", help="Order by a column: name, kind, status, runs, epochs, metric "
        "(its value), val_loss, best, wall_time, date, note; a leading - for largest first.")
    ] = "name",
    desc: Annotated[bool, typer.Option("--desc", help="Largest first.")] = False,
    filter_: Annotated[list[str] | None, typer.Option(
        "--filter", metavar="COLUMN=VALUE", help="Keep the rows whose column matches, e.g. "
        "status=completed or 'name=chapter11/*' (repeats: all must match).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of the rows.")] = False,
) -> int:
    """List the runs and studies under a folder: kind, status, epochs, key metric, time, date."""
    from tricklab.run.runs_table import find_runs
    from tricklab.run.runs_view import filter_entries, format_table, sort_entries

    entries = sort_entries(filter_entries(find_runs(folder), filter_ or []), sort, desc)
    if as_json:
        typer.echo(json.dumps(json_safe([entry.to_dict() for entry in entries]), indent=2))
    elif entries:
        typer.echo(format_table(entries))
    else:
        typer.echo(f"no runs or studies in {folder}"
                   + (" match the filters" if filter_ else ""), err=True)
    return 0


@runs_app.command(name="diff")
def runs_diff(
    a: Annotated[Path, typer.Argument(help="A run folder.", show_default=False)],
    b: Annotated[Path, typer.Argument(help="Another run folder.", show_default=False)],
    as_json: JsonOption = False,
) -> int:
    """Compare two runs: the recipe fields that differ (A → B) and their results side by side."""
    from tricklab.run.runs_diff import diff_runs, format_diff

    diff = diff_runs(a, b)
    if as_json:
        _print_json(diff)
    else:
        typer.echo(format_diff(diff))
    return 0


@app.command()
def schema() -> int:
    """Print the JSON Schema of a recipe (for editors and validators)."""
    from tricklab.recipe.snapshot import current_snapshot

    typer.echo(json.dumps(current_snapshot().json_schema, indent=2))
    return 0


FAMILIES = {
    "initializers": "how a layer's weights start (kernel_initializer, bias_initializer)",
    "activations": "nonlinearities (a layer's activation, or a layer of their own)",
    "layers": "the network's building blocks (model.layers)",
    "regularizers": "weight penalties added to the loss (kernel_regularizer, bias_regularizer)",
    "constraints": "limits on the weights after every step (kernel_constraint, bias_constraint)",
    "optimizers": "how the weights are updated (train.optimizer)",
    "schedules": "how the learning rate changes during training (train.schedule)",
    "losses": "what training minimizes (train.loss)",
    "metrics": "what is measured each epoch (train.metrics)",
    "callbacks": "what acts between epochs, e.g. early stopping (train.callbacks)",
    "datasets": "built-in datasets and readers of your own data (data.dataset)",
    "splits": "a dataset's classes split into tasks, for transfer learning (data.split)",
    "augmentations": "random changes to the training images (data.augment)",
    "presets": "the chapter's default networks: what a recipe leaves out is filled in (preset)",
}
"""Every family `tricklab list` knows, with one line on what it holds and where a recipe uses it;
kept here, not read from the registries, so listing them imports no PyTorch."""


@app.command(name="list")
def list_(
    family: Annotated[
        str | None,
        typer.Argument(help="A family such as layers, optimizers or schedules (default: list "
                       "the families).", show_default=False),
    ] = None,
) -> int:
    """List a family's registered techniques: name, description, reference; or the families."""
    if family is None:
        width = max(map(len, FAMILIES))
        for name, description in FAMILIES.items():
            typer.echo(f"{name:<{width}}  {description}")
        typer.echo("`tricklab list FAMILY` lists a family's techniques.", err=True)
        return 0
    from rich.console import Console
    from rich.table import Table

    from tricklab.recipe.snapshot import current_snapshot

    registry = current_snapshot().family(family)
    table = Table(title=f"tricklab {family}")
    for column in ("name", "description", "reference", "keras"):
        table.add_column(column, overflow="fold")
    for info in registry:
        table.add_row(info.name, info.description, info.reference, info.keras_name)
    Console(width=max(120, Console().width)).print(table)
    return 0


@data_app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. fashion_mnist.")],
    url: Annotated[str | None, typer.Option(help="Base URL to download from.")] = None,
) -> int:
    """Find a dataset locally or download it (SHA-256 verified) into the cache."""
    from tricklab.data import fetch as fetch_dataset

    typer.echo(str(fetch_dataset(name, base_url=url)))
    return 0


@data_app.command()
def locate(name: Annotated[str, typer.Argument(help="Dataset name, e.g. fashion_mnist.")]) -> int:
    """Print the folder holding a dataset's files; exit 1 when it is not on this machine."""
    from tricklab.data import locate as locate_dataset

    folder = locate_dataset(name)
    if folder is None:
        typer.echo(f"{name}: not found on this machine", err=True)
        return 1
    typer.echo(str(folder))
    return 0


def _show_warning(message: Warning | str, category: type[Warning], *_: object) -> None:
    # One line, as every message of the CLI: no file, line number or source line.
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script's entry point).

    Ctrl-C and SIGTERM stop a run the same way (status `interrupted`, checkpoint
    kept); the exit code says which: 130 or 143.
    """
    global _snapshot_missing
    _snapshot_missing = False  # this command's own finding (`main` may run many in one process)
    with stop_signals() as signals, warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            code = app(args=argv, standalone_mode=False)
        except TricklabError as error:
            code = getattr(error, "exit_code", EXIT_SYSTEM)
            kind = "interrupted" if code == EXIT_INTERRUPTED else "error"
            print(f"{kind}: {error}", file=sys.stderr)
        except typer.Abort:
            print("interrupted", file=sys.stderr)
            code = EXIT_INTERRUPTED
        except TyperException as error:
            print(f"error: {error.format_message()}", file=sys.stderr)
            code = error.exit_code
        except typer.Exit as exit_:
            code = exit_.exit_code
        except (OSError, MemoryError, RuntimeError) as error:
            # The machine's refusal (exit 4), or a path that cannot be used as given
            # (exit 2: a file where a folder is needed, a name too long); anything
            # else is a bug and keeps its traceback.
            if is_environment_failure(error):
                code = EXIT_SYSTEM
            elif isinstance(error, OSError) and error.filename is not None:
                code = EXIT_USER_ERROR
            else:
                raise
            print(f"error: {system_error_line(error)}", file=sys.stderr)
    code = code if isinstance(code, int) else 0
    if _snapshot_missing and "torch" in sys.modules and code not in (EXIT_INTERRUPTED,
                                                                      EXIT_SYSTEM):
        # Built from what this command imported anyway: the next one's errors come fast.
        from tricklab.recipe.snapshot import current_snapshot

        current_snapshot()
    return signals.exit_code if code == EXIT_INTERRUPTED and signals.received else code


def run() -> None:
    """Console-script entry point: exit with `main()`'s code."""
    sys.exit(main())
