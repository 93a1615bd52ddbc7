"""Residual block: a stack of layers plus a shortcut around it (He et al. 2016)."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Literal

import torch
from torch import nn

from tricklab.nn.activations import ActivationSpec, activations
from tricklab.nn.base import Layer, Shape, build_layer, is_image, output_shape_of
from tricklab.nn.base import layers as layer_registry
from tricklab.nn.builder import LayerBuildError, build_layers, resolve_layers
from tricklab.nn.layers import Dense
from tricklab.nn.normalization import BatchNormalization

LayerEntry = str | dict[str, Any]
"""One entry of a recipe's layer list: a name or `{name: {config}}`."""


@layer_registry.register(
    "residual",
    description="Residual block, y = activation(main(x) + shortcut(x)).",
    reference="He et al. 2016",
)
class Residual(Layer):
    """Residual block, `y = activation(main(x) + shortcut(x))` (He et al. 2016).

    As in "Deep Residual Learning for Image Recognition" and Géron's
    `ResidualUnit`, the block learns a residual added to its input.

    `main` is the stack `layers`, written exactly as a recipe's `model.layers`
    (any registered layer, residual blocks included, `trainable: false` allowed
    per entry). The shortcut is the identity when `main` keeps the shape and a
    learned linear projection, without bias, otherwise:

    - images `(h, w, c) -> (h', w', c')`: a 1×1 convolution with stride `s`
      along each spatial axis, the stride that makes a Keras convolution with
      `padding="same"` give `h'` from `h`, `s = ceil(h / h')` (the same for the
      width), written as the subsample `x[:, :, ::s, ::s]` followed by a Dense
      layer on the channels;
    - other samples whose last axis alone changes: a Dense layer on that axis.

    The projection's kernel starts from `glorot_uniform`, Keras's default for
    `Conv2D`. With `shortcut_batch_norm` it is followed by batch normalization
    (Keras defaults), as Géron's skip path `Conv2D(1×1, strides) + BatchNormalization`.

    The sublayers' weights are drawn from the global torch RNG in order, main
    stack first, then the projection. They are submodules (`main.0`, ...,
    `shortcut.dense`, `shortcut.batch_norm`), so their regularizers,
    constraints, freezing and state dict work as for top-level layers.

    PyTorch equivalent: a module whose `forward` returns
    `act(main(x) + shortcut(x))`, with `main` an `nn.Sequential` and `shortcut`
    `nn.Identity()` or `nn.Sequential(nn.Conv2d(c, c', 1, stride=s, bias=False),
    nn.BatchNorm2d(c'))`.

    Args:
        layers: The main path, a non-empty layer list as in a recipe's `model.layers`.
        shortcut: `"identity"`, `"projection"`, or `"auto"`: the identity when
            `main` keeps the input shape, else a projection. Defaults to `"auto"`.
        shortcut_batch_norm: Whether batch normalization follows a projection.
            Defaults to `True`.
        activation: Activation applied to the sum (name, `{name: {config}}` or
            module); `None` is linear. Defaults to `None`.
    """

    def __init__(
        self,
        layers: list[LayerEntry],
        shortcut: Literal["auto", "identity", "projection"] = "auto",
        shortcut_batch_norm: bool = True,
        activation: ActivationSpec | None = None,
    ) -> None:
        super().__init__()
        self.layer_specs = resolve_layers(layers, "Residual.layers")
        self.shortcut_kind = shortcut
        self.shortcut_batch_norm = shortcut_batch_norm
        self.activation = (
            None if activation is None else activations.get(activation, "Residual.activation")
        )

    @classmethod
    def resolve_config(cls, config: dict[str, Any], path: str) -> dict[str, Any]:
        """Return `config` with its layer list validated and fully defaulted (see `resolve_layers`).

        Args:
            config: The block's validated keyword arguments.
            path: Dotted location of the block, e.g. `model.layers.3.residual`.

        Raises:
            UserInputError: Naming e.g. `model.layers.3.residual.layers.0.dense.units`.
        """
        return {**config, "layers": resolve_layers(config["layers"], f"{path}.layers")}

    def build(self, input_shape: Shape) -> None:
        """Build the main stack, then the shortcut that fits its output shape.

        Args:
            input_shape: Shape of one input sample, without the batch dimension.

        Raises:
            UserInputError: When a sublayer does not fit (naming it, e.g.
                `layers.0.dense: ...`) or no shortcut of the requested kind maps
                the input shape to the main stack's output shape.
        """
        self.main = nn.ModuleList(build_layers(input_shape, self.layer_specs, "layers"))
        output_shape = self.compute_output_shape(input_shape)
        identity = self.shortcut_kind == "identity" or (
            self.shortcut_kind == "auto" and output_shape == tuple(input_shape)
        )
        if identity and output_shape != tuple(input_shape):
            raise LayerBuildError(
                "shortcut",
                f"an identity shortcut needs the main layers to keep the input shape "
                f"{tuple(input_shape)}, but they give {output_shape}; use 'projection' or 'auto'",
            )
        self._strides: tuple[int, int] | None = None
        self.shortcut = None if identity else self._projection(tuple(input_shape), output_shape)
        if self.activation is not None:
            build_layer(self.activation, output_shape)
        super().build(input_shape)

    def _projection(self, input_shape: Shape, output_shape: Shape) -> nn.Sequential:
        """Build the projection shortcut from `input_shape` to `output_shape`."""
        shape = input_shape
        if is_image(input_shape) and is_image(output_shape):
            strides = tuple(
                _stride(before, after, input_shape, output_shape)
                for before, after in zip(input_shape[:2], output_shape[:2], strict=True)
            )
            if strides != (1, 1):
                self._strides = strides
                shape = (*output_shape[:2], input_shape[-1])
        elif input_shape[:-1] != output_shape[:-1]:
            raise LayerBuildError(
                "shortcut",
                f"no projection maps the input shape {input_shape} to the main layers' "
                f"output shape {output_shape}; a projection changes the last axis of any "
                "sample, and an image's height and width by a stride",
            )
        modules = OrderedDict(dense=Dense(units=output_shape[-1], use_bias=False))
        if self.shortcut_batch_norm:
            modules["batch_norm"] = BatchNormalization()
        for module in modules.values():
            shape = build_layer(module, shape)
        return nn.Sequential(modules)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return the main stack's output shape (the block must be built).

        Args:
            input_shape: Shape of one input sample, without the batch dimension.
        """
        shape = tuple(input_shape)
        for module in self.main:
            shape = output_shape_of(module, shape)
        return shape

    def extra_repr(self) -> str:
        # The main layers print as the `main` children, not as their configuration.
        shown = {key: value for key, value in self._config.items() if key != "layers"}
        return ", ".join(f"{key}={value!r}" for key, value in shown.items())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for module in self.main:
            y = module(y)
        if self.shortcut is None:
            y = y + x
        elif self._strides is None:
            y = y + self.shortcut(x)
        else:
            y = y + self.shortcut(x[:, :, :: self._strides[0], :: self._strides[1]])
        return y if self.activation is None else self.activation(y)


def _stride(before: int, after: int, input_shape: Shape, output_shape: Shape) -> int:
    """The stride of a 1×1 convolution with `padding="same"` that takes `before` to `after`."""
    stride = math.ceil(before / after)
    if math.ceil(before / stride) != after:
        raise LayerBuildError(
            "shortcut",
            f"no strided 1×1 projection maps the input shape {input_shape} to the main "
            f"layers' output shape {output_shape}: a stride s gives ceil(size / s), and "
            f"no s takes {before} to {after}",
        )
    return stride
