"""Glue: a resolved recipe becomes a model, an optimizer, a Trainer and a run directory.

The names below load lazily (PEP 562): a module of this package that needs no
PyTorch (reading a study folder, say) is imported without it.
"""

from __future__ import annotations

from tricklab.lazy import lazy_exports

_EXPORTS = {
    "lr_find_recipe": "tricklab.run.lr_find",
    "RunDirectory": "tricklab.run.rundir",
    "RunOutcome": "tricklab.run.runner",
    "build": "tricklab.run.runner",
    "load_data": "tricklab.run.runner",
    "train_recipe": "tricklab.run.runner",
    "train_seed_group": "tricklab.run.seed_group",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
