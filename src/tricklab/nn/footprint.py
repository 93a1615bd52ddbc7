"""What a model costs in memory, estimated without allocating it; refusing what cannot fit.

`estimate_footprint(input_shape, layers)` builds the layer list on PyTorch's
`meta` device (tensors with shapes and dtypes but no storage, so even a
terabyte model costs nothing; initializers skip meta tensors) and reads, per
layer: the output shape, the parameter count (as `summarize` counts it), the
bytes of parameters and buffers, and the activation bytes per sample. The
weights are exactly the ones `build_model` makes; activations are an estimate.

`build_layers` (and so `build_model`, `load_model`, `clone_model` and
`reuse_layers`) calls `Footprint.check_build_fits` before allocating anything,
and a runner calls `check_training_fits` before loading data. Both raise a
one-line `DoesNotFitError` (a `UserInputError`) naming the input shape when the
input alone does not fit, else the layer with the largest share, with the
bytes and the knob that helps.

Rules:

- Activations per sample: with `trace` (the default, and what
  `check_training_fits` uses), a meta batch runs forward with gradients on,
  and each layer is charged every tensor its modules return or autograd saves
  for the backward pass (a recurrent layer's steps, a residual block's inner
  layers, dropout masks), once, a view counting as the tensor it views.
  Without `trace` (what building uses: no forward pass), each layer's output.
- Building needs the weights (parameters and buffers) plus one sample's input
  and activations: a model that cannot run one sample is refused.
- Training needs `TRAINING_STATE_FACTOR` (4) times the bytes of every trainable
  parameter (the weight, its gradient and two optimizer moments, as Adam,
  Nadam and Adamax keep; SGD with momentum keeps one, so 4 is the upper end of
  the shipped optimizers), frozen parameters and buffers once, the input batch
  once, and `ACTIVATION_FACTOR` (2) times the batch's activations: those kept
  for the backward pass, and as much again for the gradients it computes. The
  data set itself and the allocator's slack are not counted: the rule refuses
  the impossible, it does not promise that all it lets through will fit.
- Available memory: for the CPU, Linux's `MemAvailable` (`/proc/meminfo`),
  else `os.sysconf` (available pages, then physical pages); for a CUDA device,
  the free memory `torch.cuda.mem_get_info` reports. The environment variable
  `TRICKLAB_MEMORY_LIMIT` (bytes, or a number with `KiB`, `MiB`, `GiB` or
  `TiB`, e.g. `8GiB`) lowers it, never raises it: useful on a shared machine, in
  a container whose limit `MemAvailable` does not show, and in tests.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from tricklab.errors import UserInputError
from tricklab.memory import MEMORY_LIMIT_VARIABLE, host_available_memory
from tricklab.nn.base import Layer, Shape, as_shape, is_image, output_shape_of
from tricklab.nn.base import layers as layer_registry
from tricklab.nn.builder import META_FAILURES, build_layers, unchecked_build
from tricklab.nn.model import Sequential

TRAINING_STATE_FACTOR = 4
"""Bytes of training state per byte of trainable weight: the weight, its gradient, two moments."""

ACTIVATION_FACTOR = 2
"""Bytes held in training per byte of activation: the output kept for backward, its gradient."""

PROBE_BATCH = 2
"""Samples in the meta batch that measures activations (batch normalization needs two)."""

_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}

# The hyperparameter that sizes a layer's weights, in order of preference, and the advice.
_KNOBS = (
    ("units", "use fewer units"),
    ("filters", "use fewer filters"),
    ("input_dim", "use a smaller input_dim or output_dim"),
    ("output_dim", "use a smaller output_dim"),
)


class DoesNotFitError(UserInputError):
    """A model, input or batch too large for the memory available; one line, as any input error.

    Args:
        message: The path, the bytes, the memory available and what helps.
        path: Dotted location of the culprit, e.g. `model.layers.1.dense` or
            `model.input_shape`.
        required: Bytes the culprit's part needs.
        available: Bytes available.
    """

    def __init__(self, message: str, path: str, required: int, available: int) -> None:
        super().__init__(message)
        self.path = path
        self.required = required
        self.available = available

    def __reduce__(self) -> tuple[type[DoesNotFitError], tuple[str, str, int, int]]:
        # Whole across processes (a study's workers), where pickle would pass the message alone.
        return type(self), (str(self), self.path, self.required, self.available)


@dataclass(frozen=True)
class LayerFootprint:
    """What one layer of a layer list costs, sublayers (a residual block's) included.

    Args:
        path: Dotted location in the recipe, e.g. `model.layers.1.dense` or
            `model.layers.3.residual.layers.0.conv2d`.
        output_shape: Per-sample output shape, channels-last for images; `None`
            when unknown (a sublayer of a model the meta pass could not run).
        params: Parameters plus float buffers (moving statistics), as `summarize` counts.
        trainable_params: Parameters that train.
        weight_bytes: Bytes of every parameter and buffer.
        trainable_bytes: Bytes of the parameters that train.
        activation_values: Activation values per sample (see the module's rules),
            sublayers included.
        activation_bytes: Bytes of those values.
        dtype: The dtype of its weights (the default dtype when it has none).
        advice: What makes it smaller, e.g. `"use fewer units"`.
        sublayers: Footprints of the layers listed inside it, e.g. by a residual block.
    """

    path: str
    output_shape: Shape | None
    params: int
    trainable_params: int
    weight_bytes: int
    trainable_bytes: int
    activation_values: int
    activation_bytes: int
    dtype: torch.dtype
    advice: str
    sublayers: tuple[LayerFootprint, ...] = ()


@dataclass(frozen=True)
class Footprint:
    """What a layer list costs for a given per-sample input shape (see `estimate_footprint`).

    Args:
        input_shape: Per-sample input shape.
        input_path: Dotted location of the input shape, e.g. `model.input_shape`.
        input_bytes: Bytes of one input sample (default dtype).
        layers: One `LayerFootprint` per layer of the list, in order.
    """

    input_shape: Shape
    input_path: str
    input_bytes: int
    layers: tuple[LayerFootprint, ...] = ()

    @property
    def params(self) -> int:
        """Parameters plus float buffers, as `count_params(model).total`."""
        return sum(layer.params for layer in self.layers)

    @property
    def trainable_params(self) -> int:
        """Parameters that train."""
        return sum(layer.trainable_params for layer in self.layers)

    @property
    def weight_bytes(self) -> int:
        """Bytes of every parameter and buffer."""
        return sum(layer.weight_bytes for layer in self.layers)

    @property
    def trainable_bytes(self) -> int:
        """Bytes of the parameters that train."""
        return sum(layer.trainable_bytes for layer in self.layers)

    @property
    def activation_bytes(self) -> int:
        """Bytes of one sample's activations (see the module's rules), the input left out."""
        return sum(layer.activation_bytes for layer in self.layers)

    def build_bytes(self) -> int:
        """Bytes to build the model and run one sample forward (see the module's rules)."""
        return self.weight_bytes + self.input_bytes + self.activation_bytes

    def training_bytes(self, batch_size: int) -> int:
        """Bytes to train on batches of `batch_size` samples (see the module's rules).

        Args:
            batch_size: Samples per batch.
        """
        weights = self.weight_bytes + (TRAINING_STATE_FACTOR - 1) * self.trainable_bytes
        activations = self.input_bytes + ACTIVATION_FACTOR * self.activation_bytes
        return weights + batch_size * activations

    def check_build_fits(self, device: str | torch.device | None = None) -> None:
        """Refuse, before anything is allocated, a model that cannot be built and run once.

        Args:
            device: Where the model is built. Defaults to `None`: torch's default
                device (the CPU unless set otherwise).

        Raises:
            DoesNotFitError: Naming the input shape when one sample alone does not
                fit, else the layer with the largest share of `build_bytes()`.
        """
        device = torch.get_default_device() if device is None else torch.device(device)
        if device.type != "meta":
            self._check(*_available(device), batch=None, batch_path="")

    def check_training_fits(
        self,
        batch_size: int,
        device: str | torch.device,
        batch_path: str = "train.batch_size",
    ) -> None:
        """Refuse training that cannot fit on `device`, before data is loaded or a step taken.

        Args:
            batch_size: Samples per training batch.
            device: Where the model trains, e.g. `"cpu"`, `"cuda"` or `torch.device("cuda:0")`.
            batch_path: Dotted location of the batch size, for the advice.
                Defaults to `"train.batch_size"`.

        Raises:
            DoesNotFitError: Naming the input shape when the input batch alone does
                not fit, else the layer with the largest share of
                `training_bytes(batch_size)` and whether `batch_path` or the layer's
                size helps.
        """
        device = torch.device(device)
        if device.type != "meta":
            self._check(*_available(device), batch=batch_size, batch_path=batch_path)

    def _check(self, available: int, where: str, batch: int | None, batch_path: str) -> None:
        """Raise `DoesNotFitError` when the input, or the whole, exceeds `available` bytes.

        `where` names that memory in the message; `batch` is `None` for building
        (one sample, no training state).
        """
        samples = 1 if batch is None else batch
        dtype = _dtype_name(torch.get_default_dtype())
        amount = "for one sample" if batch is None else f"for a batch of {samples:,}"
        purpose = "" if batch is None else f" to train with batches of {samples:,}"
        total = self.build_bytes() if batch is None else self.training_bytes(samples)
        inputs = samples * self.input_bytes
        largest = max(_shares(self.layers, batch), key=lambda share: share[1], default=None)
        if inputs > available or (
            total > available and (largest is None or inputs >= largest[1])
        ):
            # One sample that fits is a batch too large; one that does not, an input too large.
            advice = (
                f"lower {batch_path}" if batch is not None and self.input_bytes <= available
                else "use a smaller input shape"
            )
            part = "" if inputs > available else (
                f", the largest part of the {format_bytes(total)} the model needs{purpose}"
            )
            raise DoesNotFitError(
                f"{self.input_path}: {list(self.input_shape)} is "
                f"{math.prod(self.input_shape):,} values per sample ({format_bytes(inputs)} as "
                f"{dtype} {amount}){part}, which does not fit in {where}; {advice}",
                self.input_path, inputs, available,
            )
        if total <= available or largest is None:
            return
        culprit, size, kind = largest
        if kind == "weights":
            what = (
                f"{culprit.params:,} parameters ({format_bytes(culprit.weight_bytes)} as "
                f"{_dtype_name(culprit.dtype)}"
            )
            if batch is not None and culprit.trainable_bytes:
                what += f"; {format_bytes(size)} to train, with gradients and optimizer state"
            what += ")"
            advice = culprit.advice
        else:
            kept = "" if batch is None else ", kept for the backward pass with their gradients"
            what = (
                f"activations of {culprit.activation_values:,} values per sample "
                f"({format_bytes(size)} as {dtype} {amount}{kept})"
            )
            advice = culprit.advice if batch is None else f"lower {batch_path} or {culprit.advice}"
        if size > available:
            message = f"{culprit.path}: {what} do not fit in {where}; {advice}"
        else:
            message = (
                f"{culprit.path}: {what} are the largest part of the {format_bytes(total)} "
                f"the model needs{purpose}, which does not fit in {where}; {advice}"
            )
        raise DoesNotFitError(message, culprit.path, size, available)


def _shares(
    layers: Sequence[LayerFootprint], batch: int | None
) -> Iterator[tuple[LayerFootprint, int, str]]:
    """Each layer's own part, its sublayers' apart: `(own footprint, bytes, "weights" or
    "activations")`, the bytes as `build_bytes` (`batch` None) or `training_bytes` count them."""
    for layer in layers:
        inner = layer.sublayers
        own = replace(
            layer,
            params=layer.params - sum(s.params for s in inner),
            trainable_params=layer.trainable_params - sum(s.trainable_params for s in inner),
            weight_bytes=layer.weight_bytes - sum(s.weight_bytes for s in inner),
            trainable_bytes=layer.trainable_bytes - sum(s.trainable_bytes for s in inner),
            activation_values=layer.activation_values - sum(s.activation_values for s in inner),
            activation_bytes=layer.activation_bytes - sum(s.activation_bytes for s in inner),
            sublayers=(),
        )
        if batch is None:
            yield own, own.weight_bytes, "weights"
            yield own, own.activation_bytes, "activations"
        else:
            state = (TRAINING_STATE_FACTOR - 1) * own.trainable_bytes
            yield own, own.weight_bytes + state, "weights"
            yield own, batch * ACTIVATION_FACTOR * own.activation_bytes, "activations"
        yield from _shares(inner, batch)


def estimate_footprint(
    input_shape: Sequence[int],
    layers: Sequence[str | dict[str, Any]],
    path: str = "model.layers",
    trace: bool = True,
) -> Footprint:
    """Estimate what `build_model(input_shape, layers)` costs, allocating nothing.

    The layers are built on the `meta` device (initializers skip meta tensors);
    the global random generator is left as it was, so a later `build_model`
    draws the same weights. See `footprint_of` for `trace`.

    Args:
        input_shape: Shape of one sample, e.g. `[28, 28]`.
        layers: A recipe's layer list (see `resolve_layers`).
        path: Dotted location of the list; the input shape is reported as its
            sibling `input_shape`. Defaults to `"model.layers"`.
        trace: Measure activations with a meta forward pass. Defaults to `True`.

    Raises:
        UserInputError: When the input shape or a layer is invalid, as `build_model`.
    """
    model, input_path = _meta_model(input_shape, layers, path)
    return footprint_of(model, path, input_path, trace)


def _meta_model(
    input_shape: Sequence[int], layers: Sequence[str | dict[str, Any]], path: str
) -> tuple[Sequential, str]:
    """The model `build_model` would make, on the `meta` device, and its input shape's path."""
    parent = path.rpartition(".")[0]
    input_path = f"{parent}.input_shape" if parent else "input_shape"
    shape = as_shape(input_shape, input_path)
    with torch.random.fork_rng(devices=[]), unchecked_build(), torch.device("meta"):
        return Sequential(*build_layers(shape, layers, path), input_shape=shape), input_path


def footprint_of(
    model: Sequential,
    path: str = "model.layers",
    input_path: str = "model.input_shape",
    trace: bool = True,
) -> Footprint:
    """Measure a built model, real or meta, without allocating anything for it.

    Weights are read from its tensors' shapes and dtypes. With `trace`, a meta
    batch runs through the model on meta copies of its weights, gradients on,
    and each layer is charged every tensor its modules return or autograd saves
    for the backward pass; without, each layer's output alone is counted (no
    forward pass, but a residual block's or recurrent layer's inner activations
    are missed). A model whose forward needs real values (`.item()`) cannot run
    on meta tensors: its outputs are counted then, as without `trace`.

    Useful for a model made otherwise than from one recipe list (`reuse_layers`),
    e.g. to call `check_training_fits` on it.

    Args:
        model: The model.
        path: Dotted location of its layer list, for the layers' paths.
            Defaults to `"model.layers"`.
        input_path: Dotted location of its input shape. Defaults to `"model.input_shape"`.
        trace: Measure activations with a meta forward pass. Defaults to `True`;
            its first use in a process imports parts of torch (about a second).
    """
    names = {info.factory: info.name for info in layer_registry}
    dtype = torch.get_default_dtype()
    nodes: list[_Node] = []
    owner: dict[nn.Module, _Node] = {}
    for index, module in enumerate(model):
        name = names.get(type(module), type(module).__name__.lower())
        node = _Node(f"{path}.{index}.{name}", module)
        nodes.append(node)
        _assign(module, node, owner)
    for module, node in owner.items():
        for tensor in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
            node.add_weight(tensor)
    traced = False
    if trace:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            traced = _trace_activations(model, owner, dtype)
    shape = model.input_shape
    footprints = []
    for node, module in zip(nodes, model, strict=True):
        shape = output_shape_of(module, shape)
        if not traced:
            node.activation_values = math.prod(shape)
            node.activation_bytes = node.activation_values * dtype.itemsize
        footprints.append(node.footprint(shape))
    input_bytes = math.prod(model.input_shape) * dtype.itemsize
    return Footprint(model.input_shape, input_path, input_bytes, tuple(footprints))


class _Node:
    """Running totals of one recipe-listed layer while measuring."""

    def __init__(self, path: str, module: nn.Module) -> None:
        self.path = path
        self.module = module
        self.children: list[_Node] = []
        self.params = self.trainable_params = self.weight_bytes = self.trainable_bytes = 0
        self.activation_values = self.activation_bytes = 0
        self.output_shape: Shape | None = None
        self.dtype: torch.dtype | None = None
        self.largest_weight = 0

    def add_weight(self, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        self.weight_bytes += size
        if isinstance(tensor, nn.Parameter):
            self.params += tensor.numel()
            if tensor.requires_grad:
                self.trainable_params += tensor.numel()
                self.trainable_bytes += size
        elif tensor.is_floating_point():
            self.params += tensor.numel()  # moving statistics count, as in Keras
        if tensor.is_floating_point() and size > self.largest_weight:
            self.largest_weight, self.dtype = size, tensor.dtype

    def footprint(self, output_shape: Shape | None) -> LayerFootprint:
        children = tuple(child.footprint(child.output_shape) for child in self.children)
        return LayerFootprint(
            path=self.path,
            output_shape=output_shape,
            params=self.params + sum(c.params for c in children),
            trainable_params=self.trainable_params + sum(c.trainable_params for c in children),
            weight_bytes=self.weight_bytes + sum(c.weight_bytes for c in children),
            trainable_bytes=self.trainable_bytes + sum(c.trainable_bytes for c in children),
            activation_values=self.activation_values + sum(c.activation_values for c in children),
            activation_bytes=self.activation_bytes + sum(c.activation_bytes for c in children),
            dtype=self.dtype or torch.get_default_dtype(),
            advice=_advice(self.module),
            sublayers=children,
        )


def _assign(module: nn.Module, node: _Node, owner: dict[nn.Module, _Node]) -> None:
    """Map `module` and its submodules to the innermost recipe-listed layer holding them."""
    owner[module] = node
    for child in module.children():
        relative = getattr(child, "recipe_path", None) if isinstance(child, Layer) else None
        if relative:
            inner = _Node(f"{node.path}.{relative}", child)
            node.children.append(inner)
            _assign(child, inner, owner)
        else:
            _assign(child, node, owner)


def _trace_activations(
    model: Sequential, owner: dict[nn.Module, _Node], dtype: torch.dtype
) -> bool:
    """Run a meta batch through `model`, on meta copies of its weights, with gradients on.

    Each tensor a module returns or autograd saves for the backward pass while
    the module runs is added, once, to the module's owner (a view counts as the
    tensor it views). Returns whether the pass ran: code that needs real
    values (`.item()`, a value-sized output) cannot run on meta tensors.
    """
    state = {
        name: torch.empty_like(tensor, device="meta").requires_grad_(tensor.requires_grad)
        for name, tensor in (*model.named_parameters(), *model.named_buffers())
    }
    batch = torch.zeros((PROBE_BATCH, *model.input_shape), dtype=dtype, device="meta")
    # Weights are counted as weights; the input as the input. Tensors are kept
    # alive in `seen`, so that no other tensor takes their id.
    seen: dict[int, torch.Tensor] = {id(t): t for t in (batch, *state.values())}
    running: list[_Node] = []

    def count(tensor: torch.Tensor, node: _Node) -> None:
        while tensor._base is not None:
            tensor = tensor._base
        if id(tensor) not in seen:
            seen[id(tensor)] = tensor
            values = tensor.numel() // PROBE_BATCH
            node.activation_values += values
            node.activation_bytes += values * tensor.element_size()

    def enter(module: nn.Module, inputs: Any) -> None:
        running.append(owner[module])

    def leave(module: nn.Module, inputs: Any, output: Any) -> None:
        running.pop()
        node = owner[module]
        for tensor in _tensors(output):
            count(tensor, node)
        first = next(_tensors(output), None)
        if module is node.module and first is not None and node.output_shape is None:
            held = tuple(first.shape[1:])
            node.output_shape = (*held[1:], held[0]) if is_image(held) else held

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if running:
            count(tensor, running[-1])
        return tensor

    handles = [
        handle
        for module in owner
        for handle in (module.register_forward_pre_hook(enter), module.register_forward_hook(leave))
    ]
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            torch.func.functional_call(model, state, (batch,))
    except META_FAILURES:
        for node in owner.values():
            node.activation_values = node.activation_bytes = 0
            node.output_shape = None
        return False
    finally:
        for handle in handles:
            handle.remove()
    return True


def _tensors(output: Any) -> Iterator[torch.Tensor]:
    """The tensors of a module's output: a tensor, or a (nested) tuple or list of them."""
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, tuple | list):
        for item in output:
            yield from _tensors(item)


def _advice(module: nn.Module) -> str:
    """What makes `module`'s weights smaller, read from its configuration."""
    config = module.get_config() if isinstance(module, Layer) else {}
    for key, advice in _KNOBS:
        if key in config:
            return advice
    if any(isinstance(m, Layer) and m.recipe_path for m in module.modules() if m is not module):
        # A block's own weights (a residual shortcut) are sized by the layers inside it.
        return "make the layers inside it smaller"
    return "make this layer smaller"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_training_fits(
    input_shape: Sequence[int],
    layers: Sequence[str | dict[str, Any]],
    batch_size: int,
    device: str | torch.device,
    path: str = "model.layers",
    batch_path: str = "train.batch_size",
) -> None:
    """Refuse, before data is loaded, training that cannot fit in `device`'s memory.

    `estimate_footprint(input_shape, layers, path).check_training_fits(batch_size,
    device, batch_path)`, but refusing what its weights or outputs alone rule out
    before measuring the activations; see the module's docstring for the rule.

    Args:
        input_shape: The recipe's `model.input_shape`.
        layers: The recipe's `model.layers`.
        batch_size: The recipe's `train.batch_size`.
        device: Where the model trains (`"cpu"`, `"cuda"`, a `torch.device`).
        path: Dotted location of `layers`. Defaults to `"model.layers"`.
        batch_path: Dotted location of `batch_size`. Defaults to `"train.batch_size"`.

    Raises:
        DoesNotFitError: One line naming `model.input_shape` or the layer with the
            largest share, the bytes, the memory available, and the knob that helps.
        UserInputError: When the input shape, a layer or the batch size is invalid.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"{batch_path}: expected a positive integer (got {batch_size!r})")
    try:
        model, input_path = _meta_model(input_shape, layers, path)
    except META_FAILURES:
        return  # a layer that needs real values to build cannot be measured (as build_layers)
    # The absurd is refused from the weights and outputs alone, before the meta
    # forward pass (whose first use in a process imports parts of torch).
    for trace in (False, True):
        footprint = footprint_of(model, path, input_path, trace)
        footprint.check_training_fits(batch_size, device, batch_path)


def available_memory(device: str | torch.device = "cpu") -> int:
    """Bytes free for tensors on `device`, lowered by `TRICKLAB_MEMORY_LIMIT` when it is set.

    Args:
        device: `"cpu"` (the machine's `MemAvailable`) or a CUDA device (its free
            memory); any other device counts as the CPU. Defaults to `"cpu"`.

    Raises:
        UserInputError: When `TRICKLAB_MEMORY_LIMIT` is not a size.
    """
    return _available(torch.device(device))[0]


def _available(device: torch.device) -> tuple[int, str]:
    """`available_memory(device)` and how a refusal names it: the machine's, a GPU's or the
    limit's memory."""
    limit = memory_limit()
    if device.type == "cuda" and torch.cuda.is_available():
        free, where = torch.cuda.mem_get_info(device)[0], f"{device}'s {{}} of free memory"
    else:
        free, where = host_available_memory(), "this machine's {} of available memory"
    if limit is not None and (free is None or limit < free):
        return limit, f"the {format_bytes(limit)} of memory {MEMORY_LIMIT_VARIABLE} allows"
    if free is None:
        # Nothing tells how much is free: refuse nothing rather than everything.
        return 2**63 - 1, "this machine's memory"
    return free, where.format(format_bytes(free))


def memory_limit() -> int | None:
    """The bytes `TRICKLAB_MEMORY_LIMIT` allows, or `None` when it is unset or empty.

    Raises:
        UserInputError: When it is set to anything but a positive size such as
            `8589934592`, `8GiB` or `512 MiB`.
    """
    text = os.environ.get(MEMORY_LIMIT_VARIABLE, "").strip()
    if not text:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]iB|B)?", text, flags=re.IGNORECASE)
    limit = int(float(match[1]) * _UNITS[(match[2] or "").lower()]) if match else 0
    if limit <= 0:
        raise UserInputError(
            f"{MEMORY_LIMIT_VARIABLE}: {text!r} is not a memory size; expected a positive "
            "number of bytes (e.g. 8589934592) or one with KiB, MiB, GiB or TiB (e.g. 8GiB)"
        )
    return limit


def format_bytes(size: int) -> str:
    """Write a byte count with a binary unit and one decimal: `3136000000000` -> `2.9 TiB`.

    Args:
        size: Bytes, >= 0.
    """
    if size < 1024:
        return f"{size:,} B"
    value, units = size / 1024, ["KiB", "MiB", "GiB", "TiB", "PiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"
