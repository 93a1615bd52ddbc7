"""Which MLflow tracking URI a command logs its runs to, told before PyTorch is imported.

`--mlflow URI`, else the `MLFLOW_TRACKING_URI` environment variable, as MLflow
itself reads it; neither means no tracking, and MLflow is then never imported.
The logging itself is `tricklab.run.mlflow_tracking`'s.
"""

from __future__ import annotations

import importlib.util
import os
import warnings

from tricklab.errors import UserInputError

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
INSTALL = "pip install 'tricklab[mlflow]'"


def installed() -> bool:
    """Whether MLflow can be imported (without importing it)."""
    return importlib.util.find_spec("mlflow") is not None


def tracking_uri(option: str | None) -> str | None:
    """The URI to log runs to: `--mlflow`'s, else `$MLFLOW_TRACKING_URI`'s; `None` for neither.

    Args:
        option: The `--mlflow` value, or `None` when it was not given.

    Raises:
        UserInputError: `--mlflow` is empty, or given while MLflow is not installed.
            Only set in the environment, a tracking URI without MLflow is a warning.
    """
    if option is not None:
        if not option.strip():
            raise UserInputError("--mlflow: an empty URI; give a tracking URI, e.g. "
                                 "sqlite:///mlflow.db or http://127.0.0.1:5000")
        if not installed():
            raise UserInputError(f"--mlflow: {option} needs MLflow, which is not installed; "
                                 f"{INSTALL}")
        return option
    uri = os.environ.get(TRACKING_URI_ENV, "").strip()
    if not uri:
        return None
    if not installed():
        warn(f"{TRACKING_URI_ENV} is {uri}, but MLflow is not installed, so this run is not "
             f"logged; {INSTALL}")
        return None
    return uri


def warn(message: str) -> None:
    """One warning line, `mlflow: <message>` (the CLI prints it as `warning: mlflow: ...`)."""
    warnings.warn(f"mlflow: {message}", RuntimeWarning, stacklevel=2)
