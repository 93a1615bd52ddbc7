"""Torch-free rules for each layer of the `layers` registry: output shape and parameters.

A rule mirrors its layer's `build` and `compute_output_shape`: the output
shape, and the parameters as `tricklab.nn.count_params` counts them (Keras's
way: moving statistics and a frozen layer's parameters are non-trainable).
Where the layer would refuse its input, or a value is not what its signature
promises (an `Undecided` stand-in, a name the rules do not know), the rule is
unsure and raises `Unsure`: only building the model can tell then.
`tricklab.model_summary` runs them; this module imports no layer package
(docs/DESIGN.md, "Layers of the house").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Shape = tuple[int, ...]


class Unsure(Exception):
    """Only PyTorch can tell: the layer may refuse, or a value is not what was expected."""


def _require(condition: Any) -> None:
    if not condition:
        raise Unsure


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_int_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(_is_int(item) for item in value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_pair(value: Any) -> bool:
    """A positive int, or a list of two (a window, stride or dilation)."""
    if _is_int(value):
        return value > 0
    return _is_int_list(value) and len(value) == 2 and min(value) > 0


_MISSING = object()


class _Config:
    """A resolved config, read with the types its signature promises; anything else is unsure.

    Args:
        values: The keyword arguments of a layer (or of a nested entry), defaults included.
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values

    def get(self, key: str, accepts: Callable[[Any], Any]) -> Any:
        value = self.values.get(key, _MISSING)
        _require(value is not _MISSING and accepts(value))
        return value

    def count(self, key: str) -> int:
        return self.get(key, lambda value: _is_int(value) and value > 0)

    def integer(self, key: str) -> int:
        return self.get(key, _is_int)

    def flag(self, key: str) -> bool:
        return self.get(key, lambda value: isinstance(value, bool))

    def choice(self, key: str, *options: str) -> str:
        return self.get(key, lambda value: isinstance(value, str) and value in options)

    def pair(self, key: str) -> tuple[int, int]:
        value = self.get(key, _is_pair)
        return (value, value) if _is_int(value) else (value[0], value[1])

    def axes(self, key: str) -> list[int]:
        """One int or a list of them; `None` (nothing shared) as none."""
        value = self.get(key, lambda v: v is None or _is_int(v) or _is_int_list(v))
        return [] if value is None else [value] if _is_int(value) else list(value)

    def spec(self, key: str) -> tuple[str, _Config] | None:
        """A nested registry entry, `name` or `{name: config}`, or `None`."""
        value = self.get(key, lambda _: True)
        if value is None or isinstance(value, str):
            return None if value is None else (value, _Config({}))
        _require(isinstance(value, Mapping) and len(value) == 1)
        ((name, options),) = value.items()
        _require(isinstance(options, Mapping))
        return name, _Config(options)


@dataclass(frozen=True)
class Built:
    """What a rule finds for one layer: its output shape and its parameter counts.

    Args:
        output_shape: Per-sample output shape.
        trainable: Parameters that train.
        non_trainable: Frozen parameters and float buffers (moving statistics).
    """

    output_shape: Shape
    trainable: int = 0
    non_trainable: int = 0


Rule = Callable[[_Config, Shape], Built]

_RULES: dict[str, tuple[str, Rule]] = {}
"""Each layer's class name (the row's type) and rule, by its name in the `layers` registry."""

_ACTIVATIONS: dict[str, tuple[str, Rule]] = {}
"""The same for activations, which are layers of the same name too."""


def _rule(**types: str) -> Callable[[Rule], Rule]:
    """Register a rule for each layer `name=ClassName`."""

    def register(rule: Rule) -> Rule:
        _RULES.update({name: (type_name, rule) for name, type_name in types.items()})
        return rule

    return register


def _activation_rule(**types: str) -> Callable[[Rule], Rule]:
    """Register a rule for each activation `name=ClassName`, a layer of that name too."""

    def register(rule: Rule) -> Rule:
        _ACTIVATIONS.update({name: (type_name, rule) for name, type_name in types.items()})
        return _rule(**types)(rule)

    return register


def row_stem(type_name: str) -> str:
    """The stem of a class's row names. As `summarize` maps each class to its name over the
    sorted registry, a class registered twice (`silu`, `swish`) takes the last."""
    return max(name for name, (found, _) in _RULES.items() if found == type_name)


def entry_output(entry: Any, shape: Shape) -> tuple[str, Built, bool]:
    """`(type, built, trainable)` of one resolved entry `{name: config}` taking `shape`."""
    _require(isinstance(entry, Mapping) and len(entry) == 1)
    ((name, values),) = entry.items()
    _require(isinstance(values, Mapping))
    values = dict(values)
    trainable = values.pop("trainable", True)
    _require(isinstance(trainable, bool))
    type_name, built = _apply(_RULES, name, _Config(values), shape)
    if not trainable:
        built = Built(built.output_shape, 0, built.trainable + built.non_trainable)
    return type_name, built, trainable


def _apply(rules: Mapping[str, tuple[str, Rule]], name: str, config: _Config,
           shape: Shape) -> tuple[str, Built]:
    _require(name in rules)
    _check_references(config)
    type_name, rule = rules[name]
    return type_name, rule(config, shape)


# Initializers that fill a tensor of any shape, whatever their configuration.
_PLAIN_INITIALIZERS = frozenset({
    "constant", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "lecun_normal",
    "lecun_uniform", "ones", "random_normal", "truncated_normal", "variance_scaling", "zeros",
})
_REGULARIZERS = frozenset({"l1", "l1_l2", "l2"})
_AXIS_CONSTRAINTS = frozenset({"max_norm", "min_max_norm", "unit_norm"})
_CONSTRAINTS = _AXIS_CONSTRAINTS | {"non_neg"}

KNOWN_NAMES = {
    "initializers": _PLAIN_INITIALIZERS | {"orthogonal", "random_uniform"},
    "regularizers": _REGULARIZERS,
    "constraints": _CONSTRAINTS,
}
"""The names a layer's config may give that the rules know, by registry (any other is unsure);
`tests/test_model_summary.py` holds them to the registries."""


def _check_references(config: _Config) -> None:
    """Each `*_initializer`, `*_regularizer` and `*_constraint` names one the rules know.

    `random_uniform` needs `minval <= maxval` (its constructor refuses the
    reverse); `orthogonal` is checked where it draws (`_weight`).
    """
    for key in config.values:
        suffix = key.rpartition("_")[2]
        spec = config.spec(key) if suffix in ("initializer", "regularizer", "constraint") else None
        if spec is None:
            continue
        name, options = spec
        if suffix == "regularizer":
            _require(name in _REGULARIZERS)
        elif suffix == "constraint":
            _require(name in _CONSTRAINTS)
        elif name == "random_uniform":
            _require(options.get("minval", _is_number) <= options.get("maxval", _is_number))
        else:
            _require(name in _PLAIN_INITIALIZERS or name == "orthogonal")


def _weight(config: _Config, role: str, shape: Shape) -> int:
    """Entries of the weight `role` (e.g. `kernel`), drawn and constrained with `shape`: `Π shape`.

    `orthogonal` needs two dimensions or more; a norm constraint's Keras axes
    must lie in `[−n, n)` for an `n`-dimensional weight.
    """
    initializer = config.spec(f"{role}_initializer")
    _require(initializer is None or initializer[0] != "orthogonal" or len(shape) >= 2)
    constraint = config.spec(f"{role}_constraint")
    if constraint is not None and constraint[0] in _AXIS_CONSTRAINTS:
        _require(all(-len(shape) <= axis < len(shape) for axis in constraint[1].axes("axis")))
    return math.prod(shape)


def _bias(config: _Config, units: int) -> int:
    """A bias of `units` entries with `use_bias`, else none."""
    return _weight(config, "bias", (units,)) if config.flag("use_bias") else 0


def _activation(config: _Config, shape: Shape) -> int:
    """Parameters of the `activation` a layer builds for its output `shape` (PReLU's slopes)."""
    spec = config.spec("activation")
    return 0 if spec is None else _apply(_ACTIVATIONS, *spec, shape)[1].trainable


# ----- Activations, dropout, flatten, reshape: no weights but PReLU's.


@_activation_rule(elu="ELU", gelu="GELU", leaky_relu="LeakyReLU", linear="Linear", relu="ReLU",
                  rrelu="RReLU", selu="SELU", sigmoid="Sigmoid", silu="Swish", swish="Swish",
                  tanh="Tanh")
@_rule(alpha_dropout="AlphaDropout", dropout="Dropout", mc_alpha_dropout="MCAlphaDropout",
       mc_dropout="MCDropout")
def _same(config: _Config, shape: Shape) -> Built:
    """An element-wise layer (activation, dropout): `y` has the shape of `x`, no parameters."""
    return Built(shape)


@_activation_rule(softmax="Softmax")
def _softmax(config: _Config, shape: Shape) -> Built:
    """Softmax over `axis`, an axis of the batch: `−(r + 1) ≤ axis ≤ r`, `r` the sample's rank."""
    rank = len(shape) + 1
    _require(-rank <= config.integer("axis") < rank)
    return Built(shape)


@_activation_rule(prelu="PReLU")
def _prelu(config: _Config, shape: Shape) -> Built:
    """PReLU: one slope per element, `Π_k (1 if k in shared_axes else shape[k − 1])` slopes.

    A shared axis beyond the sample's rank (Keras counts from 1) is refused.
    """
    shared = config.axes("shared_axes")
    _require(all(axis <= len(shape) for axis in shared))
    alpha = tuple(1 if axis in shared else size for axis, size in enumerate(shape, 1))
    return Built(shape, _weight(config, "alpha", alpha))


@_rule(activation="Activation")
def _activation_layer(config: _Config, shape: Shape) -> Built:
    """`Activation(f)`: the shape of `x`, and `f`'s parameters built for it."""
    _require(config.spec("activation") is not None)
    return Built(shape, _activation(config, shape))


@_rule(flatten="Flatten")
def _flatten(config: _Config, shape: Shape) -> Built:
    """Flatten: `(d1, ..., dk) -> (d1·...·dk,)`."""
    return Built((math.prod(shape),))


@_rule(reshape="Reshape")
def _reshape(config: _Config, shape: Shape) -> Built:
    """Reshape to `target_shape`, its `−1` being `Π shape / Π other sizes` (a whole number).

    Refused when the value counts cannot match.
    """
    target = config.get("target_shape", lambda v: _is_int_list(v) and v and all(
        size > 0 or size == -1 for size in v) and list(v).count(-1) <= 1)
    values, known = math.prod(shape), math.prod(size for size in target if size != -1)
    if -1 in target:
        _require(values % known == 0)
        return Built(tuple(values // known if size == -1 else size for size in target))
    _require(values == known)
    return Built(tuple(target))


# ----- Dense, normalization, embedding.


@_rule(dense="Dense")
def _dense(config: _Config, shape: Shape) -> Built:
    """Dense on the last axis: `(..., n) -> (..., units)`; `units·n` weights, `units` biases."""
    units = config.count("units")
    output = (*shape[:-1], units)
    params = _weight(config, "kernel", (units, shape[-1])) + _bias(config, units)
    return Built(output, params + _activation(config, output))


@_rule(batch_norm="BatchNormalization")
def _batch_norm(config: _Config, shape: Shape) -> Built:
    """Batch normalization over the feature axis `a` (`1 ≤ a ≤ r` once made non-negative).

    With `f = shape[a − 1]`: `gamma` (with `scale`) and `beta` (with `center`)
    train, `f` each; the moving mean and variance, `2·f`, do not.
    """
    rank = len(shape) + 1
    axis = config.integer("axis")
    axis = axis + rank if axis < 0 else axis
    _require(1 <= axis < rank)
    features = shape[axis - 1]
    return Built(shape, features * (config.flag("scale") + config.flag("center")), 2 * features)


@_rule(layer_norm="LayerNormalization")
def _layer_norm(config: _Config, shape: Shape) -> Built:
    """Layer normalization over `axis`, distinct feature axes `1 ≤ a ≤ r` (made non-negative).

    `gamma` (with `scale`) and `beta` (with `center`) have `Π_a shape[a − 1]`
    entries each, drawn as `(shape[a − 1] for a in sorted axes)`.
    """
    rank = len(shape) + 1
    axes = sorted(axis + rank if axis < 0 else axis for axis in config.axes("axis"))
    _require(axes and all(1 <= axis < rank for axis in axes) and len(set(axes)) == len(axes))
    drawn = tuple(shape[axis - 1] for axis in axes)
    params = sum(_weight(config, role, drawn)
                 for role, kept in (("gamma", "scale"), ("beta", "center")) if config.flag(kept))
    return Built(shape, params)


@_rule(embedding="Embedding")
def _embedding(config: _Config, shape: Shape) -> Built:
    """Embedding: ids `s -> (*s, output_dim)`; `input_dim·output_dim` table entries, drawn
    transposed."""
    output_dim = config.count("output_dim")
    table = _weight(config, "embeddings", (output_dim, config.count("input_dim")))
    return Built((*shape, output_dim), table)


# ----- Convolutions and pooling, on images `(height, width, channels)`.


def _window(shape: Shape, extent: tuple[int, int], strides: tuple[int, int],
            padding: str) -> tuple[int, int]:
    """`(h', w')` of a window sliding over an image, Keras's length per axis.

    `ceil(n / s)` with `"same"`, `floor((n − k) / s) + 1` with `"valid"`, `k` the
    window's (dilated) extent; refused for samples that are not images, or an
    empty output.
    """
    _require(len(shape) == 3)
    height, width = (
        math.ceil(size / stride) if padding == "same" else (size - window) // stride + 1
        for size, window, stride in zip(shape[:2], extent, strides, strict=True)
    )
    _require(min(height, width) >= 1)
    return height, width


def _dilated_kernel(config: _Config) -> tuple[int, int]:
    """The dilated kernel's extent, `(k − 1)·d + 1` per axis."""
    (kh, kw), (dh, dw) = config.pair("kernel_size"), config.pair("dilation_rate")
    return (kh - 1) * dh + 1, (kw - 1) * dw + 1


def _convolved(config: _Config, shape: Shape, filters: int) -> Shape:
    """`(h', w', filters)` out of a Conv2D or SeparableConv2D (see `_window`)."""
    height, width = _window(shape, _dilated_kernel(config), config.pair("strides"),
                            config.choice("padding", "valid", "same"))
    return height, width, filters


@_rule(conv2d="Conv2D")
def _conv2d(config: _Config, shape: Shape) -> Built:
    """Conv2D: `(h, w, c) -> (h', w', filters)`; `filters·c·kh·kw` weights, `filters` biases."""
    filters = config.count("filters")
    output = _convolved(config, shape, filters)
    kernel = _weight(config, "kernel", (filters, shape[-1], *config.pair("kernel_size")))
    return Built(output, kernel + _bias(config, filters) + _activation(config, output))


@_rule(separable_conv2d="SeparableConv2D")
def _separable_conv2d(config: _Config, shape: Shape) -> Built:
    """SeparableConv2D: shapes as Conv2D's; with `m` the depth multiplier, `c·m·kh·kw`
    depthwise weights (drawn as `(m, c, kh, kw)`), `filters·c·m` pointwise ones and
    `filters` biases."""
    filters, multiplier = config.count("filters"), config.count("depth_multiplier")
    output = _convolved(config, shape, filters)
    channels = shape[-1]
    depthwise = _weight(config, "depthwise", (multiplier, channels, *config.pair("kernel_size")))
    pointwise = _weight(config, "pointwise", (filters, channels * multiplier, 1, 1))
    extra = _bias(config, filters) + _activation(config, output)
    return Built(output, depthwise + pointwise + extra)


@_rule(conv2d_transpose="Conv2DTranspose")
def _conv2d_transpose(config: _Config, shape: Shape) -> Built:
    """Conv2DTranspose: `(h, w, c) -> (n·s per axis, filters)` with `"same"`, else
    `(n − 1)·s + max(k', s)` per axis (`k'` the dilated extent); `c·filters·kh·kw`
    weights, `filters` biases."""
    _require(len(shape) == 3)
    filters, strides = config.count("filters"), config.pair("strides")
    if config.choice("padding", "valid", "same") == "same":
        sizes = tuple(size * stride for size, stride in zip(shape[:2], strides, strict=True))
    else:
        sizes = tuple((size - 1) * stride + max(extent, stride) for size, extent, stride
                      in zip(shape[:2], _dilated_kernel(config), strides, strict=True))
    output = (*sizes, filters)
    kernel = _weight(config, "kernel", (shape[-1], filters, *config.pair("kernel_size")))
    return Built(output, kernel + _bias(config, filters) + _activation(config, output))


@_rule(avg_pool2d="AveragePooling2D", max_pool2d="MaxPooling2D")
def _pool2d(config: _Config, shape: Shape) -> Built:
    """Pooling: `(h, w, c) -> (h', w', c)` (`_window`, strides defaulting to the pool), no
    parameters."""
    pool = config.pair("pool_size")
    strides = pool if config.get("strides", lambda _: True) is None else config.pair("strides")
    height, width = _window(shape, pool, strides, config.choice("padding", "valid", "same"))
    return Built((height, width, shape[-1]))


@_rule(global_avg_pool2d="GlobalAveragePooling2D")
def _global_avg_pool2d(config: _Config, shape: Shape) -> Built:
    """Global average pooling: `(h, w, c) -> (c,)`, or `(1, 1, c)` with `keepdims`."""
    _require(len(shape) == 3)
    return Built((1, 1, shape[-1]) if config.flag("keepdims") else (shape[-1],))


# ----- Recurrent layers and residual blocks.


def _recurrent(gates: int, biases: int) -> Rule:
    """The rule of a recurrent layer with `gates` gate blocks and `biases` bias vectors.

    `(T, f) -> (T, u)` with `return_sequences`, else `(u,)`; `g·u·f` input
    weights, `g·u·u` recurrent ones and, with `use_bias`, `b·g·u` biases (GRU's
    `b = 2`, input and recurrent, drawn as `(g·u, 2)`). Samples that are not
    sequences `(timesteps, features)` are refused.
    """

    def rule(config: _Config, shape: Shape) -> Built:
        _require(len(shape) == 2)
        units = config.count("units")
        rows = gates * units
        params = _weight(config, "kernel", (rows, shape[-1]))
        params += _weight(config, "recurrent", (rows, units))
        if config.flag("use_bias"):
            params += _weight(config, "bias", (rows,) if biases == 1 else (rows, biases))
        output = (shape[0], units) if config.flag("return_sequences") else (units,)
        return Built(output, params)

    return rule


_rule(simple_rnn="SimpleRNN")(_recurrent(gates=1, biases=1))
_rule(lstm="LSTM")(_recurrent(gates=4, biases=1))
_rule(gru="GRU")(_recurrent(gates=3, biases=2))


@_rule(residual="Residual")
def _residual(config: _Config, shape: Shape) -> Built:
    """Residual block, `y = activation(main(x) + shortcut(x))` (`tricklab.nn.residual`).

    The main layers take `shape` to `shape'`, each entry frozen or not on its
    own. The shortcut is the identity when asked, or with `auto` when
    `shape' = shape` (an identity between other shapes is refused); else a
    projection with `c·c'` weights (no bias) and, with `shortcut_batch_norm`,
    `2·c'` trainable parameters and `2·c'` moving statistics. Between images
    each axis needs the stride `s = ceil(n / n')` to give `ceil(n / s) = n'`;
    between other samples only the last axis may change.
    """
    output, trainable, non_trainable = shape, 0, 0
    for entry in config.get("layers", lambda value: isinstance(value, list) and value):
        _, built, _ = entry_output(entry, output)
        output = built.output_shape
        trainable, non_trainable = trainable + built.trainable, non_trainable + built.non_trainable
    kind = config.choice("shortcut", "auto", "identity", "projection")
    if kind == "identity" or (kind == "auto" and output == shape):
        _require(output == shape)
    else:
        if len(shape) == len(output) == 3:
            for before, after in zip(shape[:2], output[:2], strict=True):
                _require(math.ceil(before / math.ceil(before / after)) == after)
        else:
            _require(shape[:-1] == output[:-1])
        trainable += shape[-1] * output[-1]
        if config.flag("shortcut_batch_norm"):
            trainable, non_trainable = trainable + 2 * output[-1], non_trainable + 2 * output[-1]
    return Built(output, trainable + _activation(config, output), non_trainable)


RULE_NAMES = frozenset(_RULES)
"""The layer names the rules cover; `tests/test_model_summary.py` holds it to the registry."""

__all__ = ["KNOWN_NAMES", "RULE_NAMES", "Built", "Shape", "Unsure", "entry_output", "row_stem"]
