"""Glue: a resolved recipe becomes a model, an optimizer, a Trainer and a run directory."""

from tricklab.run.lr_find import lr_find_recipe
from tricklab.run.rundir import RunDirectory
from tricklab.run.runner import RunOutcome, build, load_data, train_recipe
from tricklab.run.seed_group import train_seed_group

__all__ = ["RunDirectory", "RunOutcome", "build", "load_data", "lr_find_recipe", "train_recipe",
           "train_seed_group"]
