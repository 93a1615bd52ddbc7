"""Initializers, activations, layers, regularizers, constraints and the model builder.

Five registries, `initializers`, `activations`, `layers`, `regularizers` and
`constraints`, map recipe names to factories with Keras names and defaults;
`build_model(input_shape, layers)` turns a recipe's layer list into a
`Sequential`, and `format_summary` prints it as Keras's `model.summary()` does.
`estimate_footprint(input_shape, layers)` says what a model costs in memory
without allocating it; `build_model` refuses a model that cannot fit, and
`check_training_fits` refuses training that cannot.
A trainer adds `model.regularization_loss()` to the loss when
`model.has_regularizers` and calls `model.apply_constraints()` after each
optimizer step when `model.has_constraints`.

The registries share their names with the modules that define them: import
classes from the modules (`from tricklab.nn.layers import Dense`) and the
registries from here (`from tricklab.nn import layers`).
"""

# These modules are imported for their registrations only; the module
# `tricklab.nn.layers` is then shadowed here by the registry `layers`.
from tricklab.nn import convolutional as _convolutional
from tricklab.nn import dropout as _dropout
from tricklab.nn import embedding as _embedding
from tricklab.nn import layers as _layer_module
from tricklab.nn import normalization as _normalization
from tricklab.nn import pooling as _pooling
from tricklab.nn import recurrent as _recurrent
from tricklab.nn import reshaping as _reshaping
from tricklab.nn import residual as _residual
from tricklab.nn import separable_convolution as _separable_convolution
from tricklab.nn import transposed_convolution as _transposed_convolution
from tricklab.nn import variance_scaling as _variance_scaling
from tricklab.nn.activations import activations
from tricklab.nn.base import Layer, layers
from tricklab.nn.builder import (
    LayerSummary,
    ParamCounts,
    build_layers,
    build_model,
    count_params,
    format_summary,
    resolve_layers,
    summarize,
)
from tricklab.nn.constraints import Constraint, constraints
from tricklab.nn.footprint import (
    DoesNotFitError,
    Footprint,
    LayerFootprint,
    available_memory,
    check_training_fits,
    estimate_footprint,
    footprint_of,
)
from tricklab.nn.initializers import Initializer, compute_fans, initializers
from tricklab.nn.model import Sequential
from tricklab.nn.regularizers import Regularizer, regularizers

del (_convolutional, _dropout, _embedding, _layer_module, _normalization, _pooling, _recurrent,
     _reshaping, _residual, _separable_convolution, _transposed_convolution, _variance_scaling)

__all__ = [
    "Constraint",
    "DoesNotFitError",
    "Footprint",
    "Initializer",
    "Layer",
    "LayerFootprint",
    "LayerSummary",
    "ParamCounts",
    "Regularizer",
    "Sequential",
    "activations",
    "available_memory",
    "build_layers",
    "build_model",
    "check_training_fits",
    "compute_fans",
    "constraints",
    "count_params",
    "estimate_footprint",
    "footprint_of",
    "format_summary",
    "initializers",
    "layers",
    "regularizers",
    "resolve_layers",
    "summarize",
]
