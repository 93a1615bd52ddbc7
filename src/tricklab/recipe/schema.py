"""The recipe's shape: pydantic models for the sections of a recipe YAML file.

This module checks the structure (sections, keys, types). Entries that name a
registered technique (layers, optimizer, loss, metrics, callbacks, dataset
options) are checked against that technique's own signature in `resolve.py`,
so the registries stay the one source of truth for names and defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

NamedSpec = Any
"""`name` or `{name: {config}}` (`{name: ..., **config}` for the optimizer); checked by resolve."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ReuseSection(_Section):
    """`model.reuse:` — start from some layers of a trained model (transfer learning).

    The layers are loaded from disk, so the source model is never changed;
    the recipe's `model.layers` are added on top of them.

    Args:
        from_: (`from` in YAML) A run directory (its final `model/`), a directory
            written by `save_model`, or a recipe file: that recipe is trained first
            unless a finished run of it is there already (beside this run, or in a
            study's `pretrained/` folder). Relative paths are from the current directory.
        layers: Which of its layers to take, as a Python slice of layer indices.
            Defaults to `":-1"` (all but the output layer).
        trainable: Whether the reused layers train; `false` freezes them (batch
            normalization then runs in inference mode). Defaults to `True`.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    from_: str = Field(alias="from", min_length=1)
    layers: str = ":-1"
    trainable: bool = True


class ModelSection(_Section):
    """`model:` — the network as a list of layers, Keras `Sequential` style.

    Args:
        input_shape: Per-sample input shape (no batch dimension). Defaults to the
            dataset's shape, e.g. `[28, 28]` for Fashion-MNIST.
        reuse: Layers of a trained model to start from; `layers` then lists the new
            layers added on top (possibly none). Defaults to `None`.
        layers: Layer entries, each `name` or `{name: {config}}`; a layer is frozen
            with `{name: {..., trainable: false}}`. Defaults to `[]` (allowed only
            with `reuse`).
    """

    input_shape: list[Annotated[int, Field(gt=0)]] | None = None
    reuse: ReuseSection | None = None
    layers: list[NamedSpec] = []

    @model_validator(mode="after")
    def _has_layers(self) -> ModelSection:
        if not self.layers and self.reuse is None:
            raise ValueError("layers: a model needs at least one layer (or model.reuse)")
        return self


class PhaseSection(_Section):
    """One entry of `train.phases:`: some epochs with their own optimizer and trainable layers.

    Args:
        epochs: Epochs in this phase.
        optimizer: Optimizer of this phase, rebuilt at its start (fresh state) over
            the parameters it trains. Defaults to `train.optimizer`.
        schedule: Learning-rate schedule of this phase, counted from its start.
            Defaults to `None` (the optimizer's constant learning rate).
        trainable: Which layers train: `all`, `new` (those after `model.reuse`'s
            layers), or a slice of layer indices such as `"-2:"`; the others are
            frozen. Defaults to `None` (as the model section says).
    """

    epochs: Annotated[int, Field(gt=0)]
    optimizer: NamedSpec | None = None
    schedule: NamedSpec | None = None
    trainable: str | None = None


class TrainSection(_Section):
    """`train:` — what Keras's `compile` and `fit` take.

    Args:
        optimizer: `name` or `{name: ..., hyperparameter: value, ...}`.
        loss: Loss `name` or `{name: {config}}`. Defaults to `"sparse_categorical_crossentropy"`.
        target: What the model learns to output: `labels`, or `inputs` for an
            autoencoder (Keras `fit(X, X)`; the run then plots reconstructions).
            Defaults to `"labels"`.
        metrics: Metric entries. Defaults to `[]` (Keras's default).
        batch_size: Samples per step. Defaults to `32` (Keras's default).
        epochs: Epochs to train. Defaults to `1` (Keras's default).
        shuffle: Reshuffle the training set each epoch. Defaults to `True`.
        callbacks: Callback entries, each `name` or `{name: {config}}`. Defaults to `[]`.
        best_monitor: History key whose best epoch the run keeps in `model_best/`, as
            Keras's `ModelCheckpoint(save_best_only=True)` (PyTorch: save a copy of
            `state_dict()` whenever the value improves); lower is better for losses
            and errors, higher for `accuracy`, `auc` and the like. A run without
            validation data watches `loss` instead of `val_loss` (Keras would keep
            nothing). Defaults to `"val_loss"` (Keras's default).
        schedule: Learning-rate schedule, `name` or `{name: {config}}`, e.g.
            `{one_cycle: {max_learning_rate: 0.05}}`; its `per: step | epoch`
            says what it counts. Defaults to `None` (constant learning rate).
        phases: Train in phases, in order, each with its own epochs, optimizer,
            schedule and trainable layers (the book: reused layers frozen for a
            few epochs, then all trained with a lower learning rate). History is
            continuous; `epochs` is their sum. Defaults to `None` (one phase).
        cache_frozen_features: When the bottom layers are frozen and deterministic,
            compute their outputs once and train the layers above on them (logged
            at the start of training; `false` runs every layer every step).
            Defaults to `True`.
        device: `cpu`, `cuda`, or `auto` (a CUDA GPU when there is one). The data
            moves there once. Defaults to `"auto"`.
        precision: `fp32`, `bf16` (autocast in bfloat16) or `fp16` (autocast in
            float16 with dynamic loss scaling); weights stay float32. Defaults to `"fp32"`.
        channels_last: Hold convolution weights and image batches in the
            channels-last memory format (faster convolutions on GPUs with tensor
            cores); `auto` does so on CUDA for models with convolutions. Defaults
            to `"auto"`.
        tensorboard: Write TensorBoard event files into the run directory's
            `tensorboard/` (curves, final metrics, the recipe; histograms with the
            doctor); `false`, like `--no-tensorboard`, writes none. Defaults to `True`.
    """

    optimizer: NamedSpec
    loss: NamedSpec = "sparse_categorical_crossentropy"
    target: Literal["labels", "inputs"] = "labels"
    metrics: list[NamedSpec] = []
    batch_size: Annotated[int, Field(gt=0)] = 32
    epochs: Annotated[int, Field(gt=0)] = 1
    shuffle: bool = True
    callbacks: list[NamedSpec] = []
    best_monitor: str = "val_loss"
    schedule: NamedSpec | None = None
    phases: Annotated[list[PhaseSection], Field(min_length=1)] | None = None
    cache_frozen_features: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool | Literal["auto"] = "auto"
    tensorboard: bool = True

    @model_validator(mode="after")
    def _epochs_of_phases(self) -> TrainSection:
        if self.phases is None:
            return self
        if self.schedule is not None:
            raise ValueError("schedule: with phases, give each phase its own schedule")
        total = sum(phase.epochs for phase in self.phases)
        if "epochs" in self.model_fields_set and self.epochs != total:
            raise ValueError(
                f"epochs: {self.epochs} differs from the phases' total {total}; "
                "leave train.epochs out with phases"
            )
        self.epochs = total
        return self


class Recipe(_Section):
    """A whole recipe: one training run, reproducible from this file and the seed.

    Args:
        name: Run name; the run directory is `runs/<name>/`. Letters, digits, `._-`.
        seed: Seed for initialization, dropout and shuffling. Defaults to `42`.
        preset: `default_dnn` or `self_normalizing`: the chapter's summary tables
            as defaults for what the recipe leaves unsaid. Defaults to `None`.
        data: The dataset and its preparation, `{dataset: fashion_mnist, ...}`.
            Defaults to Fashion-MNIST with its defaults.
        model: The network.
        train: Optimizer, loss, metrics, batch size, epochs, callbacks.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)]
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 42
    preset: str | None = None
    data: dict[str, Any] = {}
    model: ModelSection
    train: TrainSection
    _preset_decisions: list[str] = PrivateAttr(default_factory=list)

    @property
    def preset_decisions(self) -> list[str]:
        """What the preset filled in, as `path = value` lines (empty without a preset)."""
        return list(self._preset_decisions)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python data, ready for YAML."""
        return self.model_dump(mode="json", by_alias=True)


def validate_structure(raw: Any) -> Recipe:
    """Check a parsed YAML document against the recipe's structure (not its names).

    Raises:
        pydantic.ValidationError: Formatted into one line by the caller.
    """
    return Recipe.model_validate(raw)

