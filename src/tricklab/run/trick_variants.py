"""The chapter's tricks as changes of one recipe: what each changes, and where it does not apply.

A `Subject` is a user's recipe as `tricklab tricks` reads it: the raw document
(what a study's `base:` names), its resolved form, and its layers with any
preset filled in. Each `Trick` looks at a subject and returns either a
`Change` (a description and the study's `set:` overrides, dotted paths to
values) or the one-line reason it does not apply. The overrides are written
in the recipe's own short form (`{dense: {units: 300, activation: elu}}`) and
replace whole entries (`model.layers`, `train.optimizer`, ...), so the change
is read as written and a preset in the recipe fills in nothing it contradicts.

Layer rewrites treat the dense and convolutional layers before the output
layer (the last of them) as the hidden layers; an activation is the layer's
own `activation` or the activation layer after it (past a normalization).

References: Géron, Hands-On Machine Learning (2nd ed.), ch. 11; each trick
names its paper.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tricklab.nn import activations
from tricklab.optim import optimizers
from tricklab.recipe.load import recipe_from_dict
from tricklab.recipe.presets import apply_preset, presets
from tricklab.recipe.reported import has_validation
from tricklab.recipe.schema import Recipe

WEIGHTED = ("dense", "conv2d", "conv2d_transpose")
"""Layers with a kernel initializer and an activation of their own: the ones tricks rewrite."""
RECURRENT = ("simple_rnn", "lstm", "gru")
CONVOLUTIONAL = ("conv2d", "conv2d_transpose", "separable_conv2d", "max_pool2d", "avg_pool2d",
                 "global_avg_pool2d")
NORMALIZATION = ("batch_norm", "layer_norm")
DROPOUT = ("dropout", "alpha_dropout", "mc_dropout", "mc_alpha_dropout")
PLAIN_STACK = ("flatten", "reshape", "dense", "dropout", "alpha_dropout")
"""With the activation layers, what a self-normalizing net may hold (Klambauer et al. 2017)."""
UNREWRITABLE = ("residual", "separable_conv2d")
"""Layers whose inner or separate kernels the layer rewrites leave alone, so they skip."""
HE = ("he_normal", "he_uniform")
CLIPPING = ("clipvalue", "clipnorm", "global_clipnorm")
CARRIED = ("weight_decay", *CLIPPING)
"""Optimizer settings an optimizer variant keeps: changing the algorithm changes nothing else."""


def _name(entry: Any) -> str:
    """`name`, `{name: config}` -> `name`; `None` -> `"linear"`."""
    if entry is None:
        return "linear"
    return entry if isinstance(entry, str) else str(next(iter(entry)))


def _entry(entry: Any) -> dict[str, dict[str, Any]]:
    """A raw layer entry as `{name: config}`, the config its own: `flatten` -> `{flatten: {}}`."""
    if isinstance(entry, str):
        return {entry: {}}
    ((name, config),) = entry.items()
    return {name: copy.deepcopy(config) if isinstance(config, dict) else {}}


def _all_names(node: Any) -> set[str]:
    """Every layer name in a resolved layer list, through nested blocks."""
    names: set[str] = set()
    for entry in node:
        ((name, config),) = entry.items()
        names.add(name)
        if isinstance(config, dict) and isinstance(config.get("layers"), list):
            names |= _all_names(config["layers"])
    return names


@dataclass
class Subject:
    """A recipe as the tricks see it.

    Args:
        document: The raw recipe document (what the study's `base:` holds).
        recipe: Its resolved form.
        layers: Its layers with the preset filled in, each `{name: config}`, in
            the raw short form; one per resolved layer.
        epochs: The epochs each run trains (the study's budget, or the recipe's).
    """

    document: dict[str, Any]
    recipe: Recipe
    layers: list[dict[str, dict[str, Any]]]
    epochs: int

    @classmethod
    def of(cls, document: dict[str, Any], epochs: int | None = None,
           source: str = "recipe") -> Subject:
        """Read a raw recipe document; `epochs` replaces its own. Raises `UserInputError`."""
        recipe = recipe_from_dict(document, source)
        expanded = copy.deepcopy(document)
        apply_preset(expanded)
        raw = (expanded.get("model") or {}).get("layers") or []
        return cls(document, recipe, [_entry(entry) for entry in raw],
                   epochs or recipe.train.epochs)

    def name(self, index: int) -> str:
        return _name(self.recipe.model.layers[index])

    def config(self, index: int) -> dict[str, Any]:
        """The resolved config of the layer at `index`."""
        return next(iter(self.recipe.model.layers[index].values()))

    @property
    def names(self) -> set[str]:
        return _all_names(self.recipe.model.layers)

    @property
    def kind(self) -> str:
        """`recurrent`, `convolutional` or `dense`."""
        if self.names & set(RECURRENT):
            return "recurrent"
        return "convolutional" if self.names & set(CONVOLUTIONAL) else "dense"

    @property
    def hidden(self) -> list[int]:
        """Indices of the dense and convolutional layers before the output layer."""
        weighted = [i for i in range(len(self.layers)) if self.name(i) in WEIGHTED]
        return weighted[:-1]

    def activation_layer(self, index: int) -> int | None:
        """The activation layer after the layer at `index` (past a normalization), if any."""
        for position in range(index + 1, len(self.layers)):
            name = self.name(position)
            if name in activations or name == "activation":
                return position
            if name not in NORMALIZATION:
                return None
        return None

    def activation(self, index: int) -> str:
        """The name of the activation the layer at `index` ends in (`linear` for none)."""
        position = self.activation_layer(index)
        if position is None:
            return _name(self.config(index).get("activation"))
        if self.name(position) == "activation":
            return _name(self.config(position)["activation"])
        return self.name(position)

    def rewrite_blocker(self, top_level: bool = False) -> str | None:
        """Why the model's layers cannot be rewritten, or `None` when they can.

        Args:
            top_level: The rewrite touches only top-level dense layers, so blocks
                and separable convolutions do not stand in its way. Defaults to `False`.
        """
        if self.recipe.model.reuse is not None:
            return "the model reuses layers of another (model.reuse), which tricks leaves alone"
        inner = sorted(self.names & set(UNREWRITABLE))
        if inner and not top_level:
            return f"the model has {inner[0]} layers, which tricks does not rewrite"
        if len(self.layers) != len(self.recipe.model.layers):
            return "the model's layers could not be matched with the recipe's entries"
        return None

    @property
    def optimizer(self) -> dict[str, Any]:
        return self.recipe.train.optimizer

    @property
    def self_normalizing(self) -> bool:
        """Whether the hidden layers are SELU (the self-normalizing net of Klambauer et al.)."""
        hidden = self.hidden
        return self.recipe.preset == "self_normalizing" or (bool(hidden) and all(
            self.activation(i) == "selu" for i in hidden))

    def carried(self) -> dict[str, Any]:
        """The optimizer's settings that a change of optimizer keeps."""
        return {key: self.optimizer[key] for key in CARRIED if self.optimizer.get(key) is not None}


@dataclass(frozen=True)
class Change:
    """What a trick does to a recipe.

    Args:
        description: One line for the report and the user.
        set: Dotted recipe paths and their new values, as a study variant's `set:`.
    """

    description: str
    set: dict[str, Any]


Derive = Callable[[Subject], Change | str]


@dataclass(frozen=True)
class Trick:
    """One variant `tricklab tricks` may try.

    Args:
        name: The variant's name in the study.
        family: Its family, e.g. `optimizer`.
        touches: What it changes; two tricks touching the same thing are never
            recommended together.
        derive: The change on a subject, or why it does not apply.
    """

    name: str
    family: str
    touches: frozenset[str]
    derive: Derive


def _layer_changes(subject: Subject, needs_hidden: str | None = None,
                   top_level: bool = False) -> str | None:
    """Why the layer rewrite cannot be made; `top_level`: it touches no layer inside a block."""
    blocker = subject.rewrite_blocker(top_level)
    if blocker is not None:
        return blocker
    if needs_hidden is not None and not subject.hidden:
        return needs_hidden
    return None


def _set_activation(subject: Subject, layers: list[dict], index: int, activation: str,
                    initializer: str) -> None:
    """Give hidden layer `index` an initializer and an activation, where its activation was."""
    config = next(iter(layers[index].values()))
    config["kernel_initializer"] = initializer
    position = subject.activation_layer(index)
    if position is None:
        config["activation"] = activation
    else:  # an activation layer keeps its place (after a normalization, say)
        layers[position] = {activation: {}}


NO_HIDDEN = ("the model has no hidden dense or convolutional layers (recurrent layers keep "
             "their own tanh and sigmoid)")


def _he(activation: str, label: str, reference: str) -> Derive:
    def derive(subject: Subject) -> Change | str:
        reason = _layer_changes(subject, NO_HIDDEN)
        if reason is not None:
            return reason
        if all(subject.activation(i) == activation and
               _name(subject.config(i)["kernel_initializer"]) in HE for i in subject.hidden):
            return "the recipe already uses it"
        layers = copy.deepcopy(subject.layers)
        for index in subject.hidden:
            _set_activation(subject, layers, index, activation, "he_normal")
        count = len(subject.hidden)
        where = "the hidden layer" if count == 1 else f"the {count} hidden layers"
        return Change(f"He initialization with {label} in {where} ({reference})",
                      {"model.layers": layers})
    return derive


def _self_normalizing(subject: Subject) -> Change | str:
    reason = _layer_changes(subject)
    if reason is not None:
        return reason
    names = subject.names
    if names & set(CONVOLUTIONAL):
        return "the model has convolutions (it needs a plain dense stack)"
    if names & set(RECURRENT):
        return "the model has recurrent layers (it needs a plain dense stack)"
    others = sorted(name for name in names - set(PLAIN_STACK)
                    if name not in activations and name != "activation")
    if others:
        return f"the model is not a plain dense stack (it has {others[0]})"
    if not subject.hidden:
        return "the model has no hidden layers"
    if "scale" not in subject.recipe.data:
        return f"dataset '{subject.recipe.data['dataset']}' has no data.scale to standardize with"
    if subject.self_normalizing and subject.recipe.data["scale"] == "standardize" and all(
            _name(subject.config(i)["kernel_initializer"]) == "lecun_normal"
            for i in subject.hidden):
        return "the recipe already uses it"
    layers = copy.deepcopy(subject.layers)
    for index in subject.hidden:
        _set_activation(subject, layers, index, "selu", "lecun_normal")
    for index, entry in enumerate(layers):
        if "dropout" in entry:  # plain dropout would break the self-normalization
            layers[index] = {"alpha_dropout": entry["dropout"]}
    changes: dict[str, Any] = {"model.layers": layers}
    if subject.recipe.data["scale"] != "standardize":
        changes["data.scale"] = "standardize"
    return Change("self-normalizing net: SELU with LeCun normal initialization, standardized "
                  "inputs, alpha dropout for dropout (Klambauer et al. 2017)", changes)


def _batch_norm(subject: Subject) -> Change | str:
    reason = _layer_changes(subject, NO_HIDDEN + "; the chapter gives recurrent nets layer "
                            "normalization")
    if reason is not None:
        return reason
    if subject.names & set(NORMALIZATION):
        return "the model already has normalization layers"
    if subject.self_normalizing:
        return "the model is a self-normalizing net (SELU), which batch normalization defeats"
    layers = copy.deepcopy(subject.layers)
    for index in reversed(subject.hidden):
        config = next(iter(layers[index].values()))
        config["use_bias"] = False  # batch norm's beta replaces the bias
        inserted: list[dict[str, Any]] = [{"batch_norm": {}}]
        own = subject.config(index).get("activation")
        if subject.activation_layer(index) is None and _name(own) != "linear":
            # As the recipe wrote it (`elu`), else as resolved (a preset's choice).
            inserted.append({"activation": {"activation": config.get("activation", own)}})
            config["activation"] = None
        layers[index + 1:index + 1] = inserted
    return Change("batch normalization after each hidden layer, before its activation; the "
                  "layers lose their bias (Ioffe & Szegedy 2015)", {"model.layers": layers})


def _clip_norm(subject: Subject) -> Change | str:
    if subject.kind != "recurrent":
        return "the model has no recurrent layers (the chapter clips gradients for those)"
    clipping = [f"{key} {subject.optimizer[key]:g}" for key in CLIPPING
                if subject.optimizer.get(key) is not None]
    if clipping:
        return f"the recipe already clips gradients ({clipping[0]})"
    return Change("gradient clipping: each gradient tensor rescaled to norm <= 1 (Keras "
                  "clipnorm=1.0; Pascanu et al. 2013)", {"train.optimizer.clipnorm": 1.0})


def default_learning_rate(name: str) -> float:
    """An optimizer's default learning rate, read from its registered signature (Keras's)."""
    return inspect.signature(optimizers.info(name).factory).parameters["learning_rate"].default


def _optimizer(name: str, description: str, **settings: Any) -> Derive:
    def derive(subject: Subject) -> Change | str:
        if subject.recipe.train.phases is not None:
            return "the recipe trains in phases (train.phases), each with its own optimizer"
        current = subject.optimizer
        if current["name"] == name and all(
                bool(current.get(key)) == bool(value) for key, value in settings.items()):
            return "the recipe already uses it"
        rate = current["learning_rate"] if current["name"] == name else default_learning_rate(name)
        spec = {"name": name, "learning_rate": rate, **settings, **subject.carried()}
        return Change(description, {"train.optimizer": spec})
    return derive


def _schedule_applies(subject: Subject, name: str) -> str | None:
    if subject.recipe.train.phases is not None:
        return "the recipe trains in phases (train.phases), each with its own schedule"
    if _name(subject.recipe.train.schedule) == name:
        return "the recipe already uses it"
    return None


def _one_cycle(subject: Subject) -> Change | str:
    reason = _schedule_applies(subject, "one_cycle")
    if reason is not None:
        return reason
    rate = subject.optimizer["learning_rate"]
    # The book finds the peak with a range test and starts 10x below it; here the
    # recipe's own rate is the start, so the peak is 10x the rate the user chose.
    schedule: dict[str, Any] = {"max_learning_rate": 10 * rate}
    momentum = "momentum the other way"
    if subject.optimizer["name"] == "rmsprop" and not subject.optimizer.get("momentum"):
        # Cycling would switch on a momentum of 0.85-0.95 that RMSprop runs without,
        # which multiplies its steps about tenfold.
        schedule["cycle_momentum"] = False
        momentum = "momentum left off as RMSprop has it"
    return Change(f"1cycle: the learning rate climbs from {rate:g} to {10 * rate:g} and back, "
                  f"{momentum}, then falls 1000x (Smith 2018)",
                  {"train.schedule": {"one_cycle": schedule}})


def _exponential(subject: Subject) -> Change | str:
    reason = _schedule_applies(subject, "exponential")
    if reason is not None:
        return reason
    epochs = subject.epochs
    return Change(f"exponential decay: the learning rate falls tenfold over the {epochs} epochs, "
                  f"lr0 * 0.1^(epoch/{epochs})",
                  {"train.schedule": {"exponential": {"decay_steps": epochs, "decay_rate": 0.1,
                                                      "per": "epoch"}}})


def _patience(subject: Subject, share: int, least: int, most: int) -> int:
    """Epochs without improvement to wait: 1/`share` of the run, from `least` to `most`."""
    return max(least, min(most, round(subject.epochs / share)))


def _epochs(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def _performance(subject: Subject) -> Change | str:
    reason = _schedule_applies(subject, "performance")
    if reason is not None:
        return reason
    if not has_validation(subject.recipe):
        return "it watches val_loss, but the recipe holds out no validation data"
    # The book halves the rate after 5 epochs without progress in a 25-epoch run.
    patience = _patience(subject, 5, 1, 5)
    return Change(f"performance scheduling: halve the learning rate when val_loss has not "
                  f"improved for {_epochs(patience)} (Keras ReduceLROnPlateau)",
                  {"train.schedule": {"performance": {"factor": 0.5, "patience": patience}}})


def _dropout(subject: Subject) -> Change | str:
    reason = _layer_changes(subject, top_level=True)
    if reason is not None:
        return reason
    if subject.names & set(DROPOUT):
        return "the model already has dropout"
    dense = [i for i in range(len(subject.layers)) if subject.name(i) == "dense"]
    if not dense:
        return "the model has no dense layers"
    kind = "alpha_dropout" if subject.self_normalizing else "dropout"
    layers = copy.deepcopy(subject.layers)
    for index in reversed(dense):
        layers.insert(index, {kind: {"rate": 0.2}})
    what = "alpha dropout (the net is self-normalizing)" if kind != "dropout" else "dropout"
    return Change(f"{what} 0.2 before each dense layer (Srivastava et al. 2014)",
                  {"model.layers": layers})


def _with_kernel_option(subject: Subject, option: str, value: dict[str, Any],
                        indices: list[int]) -> dict[str, Any]:
    """`model.layers` with `option` set to `value` in the layers at `indices`."""
    layers = copy.deepcopy(subject.layers)
    for index in indices:
        next(iter(layers[index].values()))[option] = value
    return {"model.layers": layers}


def _l2(subject: Subject) -> Change | str:
    reason = _layer_changes(subject)
    if reason is not None:
        return reason
    kernels = [i for i in range(len(subject.layers)) if "kernel_regularizer" in subject.config(i)]
    if any(subject.config(i)["kernel_regularizer"] is not None for i in kernels):
        return "the model already regularizes its kernels"
    return Change("l2(0.01) on every kernel: 0.01 * sum(w^2) added to the loss (the chapter's "
                  "value)", _with_kernel_option(subject, "kernel_regularizer",
                                                {"l2": {"l2": 0.01}}, kernels))


def _max_norm(subject: Subject) -> Change | str:
    reason = _layer_changes(subject, top_level=True)
    if reason is not None:
        return reason
    hidden = [i for i in subject.hidden if subject.name(i) == "dense"]
    if not hidden:
        return "the model has no hidden dense layers"
    if any(subject.config(i).get("kernel_constraint") is not None for i in hidden):
        return "the model already constrains its kernels"
    return Change("max-norm: each hidden dense unit's incoming weights rescaled to norm <= 1 "
                  "after every step (Srivastava et al. 2014)",
                  _with_kernel_option(subject, "kernel_constraint",
                                      {"max_norm": {"max_value": 1.0}}, hidden))


def _callbacks(subject: Subject) -> list[Any]:
    return copy.deepcopy((subject.document.get("train") or {}).get("callbacks") or [])


def _early_stopping(subject: Subject) -> Change | str:
    if any(_name(entry) == "early_stopping" for entry in subject.recipe.train.callbacks):
        return "the recipe already uses it"
    if not has_validation(subject.recipe):
        return "it watches val_loss, but the recipe holds out no validation data"
    # The chapter waits 10 epochs in a 100-epoch run: a tenth of the run here, at least 2.
    patience = _patience(subject, 10, 2, 10)
    entry = {"early_stopping": {"patience": patience, "restore_best_weights": True}}
    return Change(f"early stopping when val_loss has not improved for {_epochs(patience)}, the "
                  "best weights restored", {"train.callbacks": [*_callbacks(subject), entry]})


def _default_dnn(subject: Subject) -> Change | str:
    if subject.recipe.preset == "default_dnn":
        return "the recipe already uses it"
    if subject.recipe.train.phases is not None:
        return "the recipe trains in phases (train.phases), each with its own optimizer"
    reason = _layer_changes(subject, top_level=True)
    if reason is not None:
        return reason
    # The preset fills in what a recipe leaves unsaid: unsay what it decides, then let it.
    layers = copy.deepcopy(subject.layers)
    dense = [i for i in range(len(layers)) if subject.name(i) == "dense"][:-1]
    dropped = {subject.activation_layer(i) for i in dense} - {None}
    for index in dense:
        for key in ("kernel_initializer", "activation"):
            layers[index]["dense"].pop(key, None)
    train = {key: value for key, value in (subject.document.get("train") or {}).items()
             if key not in ("optimizer", "schedule", "callbacks")}
    document = {"preset": "default_dnn", "train": train, "model": {
        "layers": [entry for index, entry in enumerate(layers) if index not in dropped]}}
    decisions = presets.info("default_dnn").factory(document)
    callbacks = document["train"]["callbacks"]
    what = "He initialization and ELU, early stopping, Nadam and 1cycle"
    if not has_validation(subject.recipe):  # early stopping would watch a missing val_loss
        callbacks = []
        what = "He initialization and ELU, Nadam and 1cycle (no early stopping: no validation data)"
    if any("batch_norm" in decision for decision in decisions):
        what += ", batch normalization (the net is deep)"
    return Change(f"the chapter's default DNN configuration (Table 11-3) as a whole: {what}", {
        "preset": "default_dnn", "model.layers": document["model"]["layers"],
        "train.optimizer": {**document["train"]["optimizer"], **subject.carried()},
        "train.schedule": document["train"]["schedule"], "train.callbacks": callbacks})


def _trick(name: str, family: str, touches: str, derive: Derive) -> Trick:
    return Trick(name, family, frozenset(touches.split()), derive)


TRICKS = (
    _trick("he_relu", "init_activation", "activation", _he("relu", "ReLU", "He et al. 2015")),
    _trick("he_elu", "init_activation", "activation", _he("elu", "ELU", "Clevert et al. 2016")),
    _trick("he_leaky_relu", "init_activation", "activation",
           _he("leaky_relu", "leaky ReLU (slope 0.3)", "Maas et al. 2013")),
    _trick("self_normalizing", "init_activation", "activation normalization scale",
           _self_normalizing),
    _trick("batch_norm", "batch_norm", "normalization", _batch_norm),
    _trick("clip_norm", "clipping", "clipping", _clip_norm),
    _trick("momentum", "optimizer", "optimizer",
           _optimizer("sgd", "momentum optimization: SGD with momentum 0.9 (Polyak 1964)",
                      momentum=0.9, nesterov=False)),
    _trick("nesterov", "optimizer", "optimizer",
           _optimizer("sgd", "Nesterov accelerated gradient: SGD with Nesterov momentum 0.9 "
                      "(Nesterov 1983)", momentum=0.9, nesterov=True)),
    _trick("rmsprop", "optimizer", "optimizer", _optimizer("rmsprop", "RMSprop (Hinton 2012)")),
    _trick("adam", "optimizer", "optimizer", _optimizer("adam", "Adam (Kingma & Ba 2015)")),
    _trick("nadam", "optimizer", "optimizer",
           _optimizer("nadam", "Nadam, Adam with Nesterov momentum (Dozat 2016)")),
    _trick("one_cycle", "schedule", "schedule", _one_cycle),
    _trick("exponential_decay", "schedule", "schedule", _exponential),
    _trick("performance", "schedule", "schedule", _performance),
    _trick("dropout", "regularization", "dropout", _dropout),
    _trick("l2", "regularization", "l2", _l2),
    _trick("max_norm", "regularization", "max_norm", _max_norm),
    _trick("early_stopping", "regularization", "early_stopping", _early_stopping),
    _trick("default_dnn", "preset", "activation optimizer schedule early_stopping",
           _default_dnn),
)
"""Every trick, in the chapter's order: initialization and activations, batch normalization,
gradient clipping, optimizers, schedules, regularization, then its summary table (the preset)."""

FAMILIES = tuple(dict.fromkeys(trick.family for trick in TRICKS))
"""The families, in the chapter's order."""
