"""Every registry by family name, for `tricklab list`, the JSON schema and parametrized tests."""

from __future__ import annotations

from tricklab.data import datasets, splits
from tricklab.data.augment import augmentations
from tricklab.errors import UserInputError, unknown_name_message
from tricklab.nn import activations, constraints, initializers, layers, regularizers
from tricklab.optim import optimizers
from tricklab.optim.schedules import schedules
from tricklab.recipe.presets import presets
from tricklab.registry import Registry
from tricklab.train.callbacks import callbacks
from tricklab.train.losses import losses
from tricklab.train.metrics import metrics

REGISTRIES: dict[str, Registry] = {
    "initializers": initializers,
    "activations": activations,
    "layers": layers,
    "regularizers": regularizers,
    "constraints": constraints,
    "optimizers": optimizers,
    "losses": losses,
    "metrics": metrics,
    "callbacks": callbacks,
    "datasets": datasets,
    "splits": splits,
    "augmentations": augmentations,
    "presets": presets,
    "schedules": schedules,
}


def registry_for(family: str) -> Registry:
    """The registry of `family` (plural, e.g. `"optimizers"`).

    Raises:
        UserInputError: For an unknown family, naming the known ones.
    """
    if family not in REGISTRIES:
        raise UserInputError(unknown_name_message("family", "family", family, REGISTRIES))
    return REGISTRIES[family]
