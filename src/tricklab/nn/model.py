"""`Sequential`: a `torch.nn.Sequential` that knows its per-sample shapes, Keras style.

It also gathers its layers' weight regularizers and constraints once, when
layers join it, so a trainer adds `regularization_loss()` to the loss and
calls `apply_constraints()` after each optimizer step, and skips both when
`has_regularizers` / `has_constraints` say there is nothing to do.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from tricklab.nn.base import (
    Layer,
    Projection,
    Shape,
    as_shape,
    build_layer,
    channels_first,
    channels_last,
    is_image,
    output_shape_of,
)
from tricklab.nn.regularizers import Regularizer


class Sequential(nn.Sequential):
    """A stack of layers built for a known per-sample input shape (Keras `Sequential`).

    Unbuilt tricklab layers are built in order (each learning its input shape
    from the previous one's output), so the weights are drawn from the global
    torch RNG in layer order. `forward` is `torch.nn.Sequential`'s own loop,
    plus, for image inputs or outputs, one view between Keras's channels-last
    batches `[N, H, W, C]` and the channels-first layout the layers hold
    inside (see `tricklab.nn.base.is_image`).

    `forward_logits` runs the same stack but stops before a final softmax or
    sigmoid (`final_activation`), so a trainer can use the numerically stable
    fused losses on logits (`F.cross_entropy`, `F.binary_cross_entropy_with_logits`).

    Weight regularizers and constraints of every layer and sublayer are
    collected when the model is built or edited (`[]=`, `del`, `append`,
    `insert`), never during a step; a layer's regularizers and constraints are
    fixed once it has joined the model.

    PyTorch equivalent: `torch.nn.Sequential(*layers)`; modules are named
    `"0"`, `"1"`, ... as there, so state dict keys match a hand-written model.

    Args:
        *layers: The modules, in order (tricklab layers or any `nn.Module`), or one
            `OrderedDict` of named modules as `torch.nn.Sequential` accepts.
        input_shape: Shape of one sample, without the batch dimension.
    """

    def __init__(self, *layers: nn.Module, input_shape: Sequence[int]) -> None:
        super().__init__(*layers)
        self.input_shape: Shape = as_shape(input_shape)
        shape = self.input_shape
        for module in self:
            shape = build_layer(module, shape)
        self._collect_weight_rules()

    def _collect_weight_rules(self) -> None:
        """List every `(layer, parameter name, regularizer or projection)` of the model once,
        and note whether images enter or leave it."""
        self._image_input = is_image(self.input_shape)
        self._image_output = is_image(self.output_shape)
        layers = [module for module in self.modules() if isinstance(module, Layer)]
        # Parameters are looked up by name at each use, so a parameter a layer
        # replaces later (a reused or reloaded weight) is still the one penalized.
        self._regularized: list[tuple[nn.Module, str, Regularizer]] = [
            (layer, name, regularizer)
            for layer in layers
            for name, regularizer in layer.weight_regularizers().items()
        ]
        self._constrained: list[tuple[nn.Module, str, Projection]] = [
            (layer, name, projection)
            for layer in layers
            for name, projection in layer.weight_constraints().items()
        ]
        self._factor_cache: dict[str, object] = {}

    @property
    def has_regularizers(self) -> bool:
        """Whether any weight of the model has a regularizer (frozen ones included)."""
        return bool(self._regularized)

    @property
    def has_constraints(self) -> bool:
        """Whether any weight of the model has a constraint (frozen ones included)."""
        return bool(self._constrained)

    def regularization_loss(self) -> torch.Tensor | None:
        """Return the sum of every trainable weight's penalty; `None` without regularizers.

        This is what Keras adds to the loss from `model.losses`: penalties of
        frozen weights (`requires_grad` off, e.g. `layer.trainable = False`) are
        left out, as Keras sums over `trainable_weights` only, so a model whose
        regularized weights are all frozen returns a scalar zero. The result
        carries gradients; add it to the data loss before `backward()`.

        PyTorch equivalent: `sum(a * w.square().sum() for each regularized w)` by hand.
        """
        if not self._regularized:
            return None
        total = None
        for layer, name, regularizer in self._regularized:
            weight = getattr(layer, name)
            if weight.requires_grad:
                penalty = regularizer(weight)
                total = penalty if total is None else total + penalty
        if total is None:
            layer, name, _ = self._regularized[0]
            total = getattr(layer, name).new_zeros(())
        return total

    @property
    def regularizers_have_closed_form(self) -> bool:
        """Whether every regularizer is `l1·Σ|w| + l2·Σw²` (see `add_regularization_gradients`)."""
        return all(regularizer.factors is not None for _, _, regularizer in self._regularized)

    @torch.no_grad()
    def add_regularization_gradients(self) -> torch.Tensor:
        """Add each trainable weight's penalty gradient to its `.grad`; return the total penalty.

        The same as adding `regularization_loss()` to the loss before
        `backward()`, for penalties `l1·Σ|w| + l2·Σw²` (the built-in `l1`, `l2`
        and `l1_l2`; see `regularizers_have_closed_form`): their gradient
        `l1·sign(w) + 2·l2·w` is added with a few multi-tensor operations for
        all weights at once, where autograd would record several nodes per
        weight at every step. Call it after `backward()`, before the optimizer
        step (so clipping sees the full gradient, as in Keras).

        PyTorch equivalent: `w.grad += 2 * l2 * w` for each regularized `w` by hand.
        """
        weights, l1, l2 = [], [], []
        for layer, name, regularizer in self._regularized:
            weight = getattr(layer, name)
            if weight.requires_grad and weight.grad is not None:
                weights.append(weight)
                l1.append(regularizer.factors[0])
                l2.append(regularizer.factors[1])
        if not weights:
            layer, name, _ = self._regularized[0]
            return getattr(layer, name).new_zeros(())
        # Each step pays per operation here: one reduction per weight (a BLAS dot
        # for Σw², twice as fast as a norm), one multi-tensor gradient update per
        # factor, and one dot product of the reductions with the factors.
        terms, factors = [], []
        if any(l2):
            terms += [torch.dot(flat, flat) for flat in (w.reshape(-1) for w in weights)]
            factors += l2
            for factor, group in _grouped(weights, l2):
                torch._foreach_add_([w.grad for w in group], group, alpha=2 * factor)
        if any(l1):
            terms += torch._foreach_norm(weights, 1)
            factors += l1
            for factor, group in _grouped(weights, l1):
                torch._foreach_add_([w.grad for w in group], torch._foreach_sign(group),
                                    alpha=factor)
        if not terms:
            return weights[0].new_zeros(())
        return torch.dot(torch.stack(terms), self._factor_tensor(factors, weights[0]))

    def _factor_tensor(self, factors: list[float], like: torch.Tensor) -> torch.Tensor:
        """The penalty factors as a tensor, made once per distinct list (not every step)."""
        key = (tuple(factors), like.dtype, like.device)
        if self._factor_cache.get("key") != key:
            self._factor_cache = {"key": key, "tensor": like.new_tensor(factors)}
        return self._factor_cache["tensor"]

    def apply_constraints(self) -> None:
        """Project every trainable constrained weight in place; call after each optimizer step.

        Keras applies constraints to the variables the optimizer has just
        updated, so frozen weights are left as they are. A no-op without constraints.

        PyTorch equivalent: rescaling `layer.weight` under `torch.no_grad()` after
        `optimizer.step()` by hand.
        """
        # One gradient-free region for all of them: entering it costs as much as a small operation.
        with torch.no_grad():
            for layer, name, projection in self._constrained:
                weight = getattr(layer, name)
                if weight.requires_grad:
                    projection(weight)

    def frozen_prefix_length(self) -> int:
        """Number of leading layers whose outputs can be computed once and reused every epoch.

        Those layers hold no trainable parameter and are `deterministic_in_training`
        (no dropout, no random slopes, batch normalization frozen and so in
        inference mode), so their training-mode output for a sample never
        changes. The prefix stops before the last layer, is 0 when it holds no
        weight or statistic (caching a `flatten` alone saves nothing), and any
        non-tricklab module ends it (it cannot say whether it is deterministic).
        """
        length = 0
        for module in list(self)[:-1]:
            frozen = not any(p.requires_grad for p in module.parameters())
            if not (isinstance(module, Layer) and frozen and module.deterministic_in_training):
                break
            length += 1
        holds_state = any(list(m.parameters()) or list(m.buffers()) for m in list(self)[:length])
        return length if holds_state else 0

    @property
    def output_shape(self) -> Shape:
        """Per-sample output shape."""
        return self.input_shape_at(len(self))

    def input_shape_at(self, index: int) -> Shape:
        """Per-sample input shape of layer `index`.

        Args:
            index: Position of the layer, from 0; `len(self)` gives the output shape.
        """
        shape = self.input_shape
        for module in list(self._modules.values())[:index]:
            shape = output_shape_of(module, shape)
        return shape

    @property
    def final_activation(self) -> str | None:
        """`"softmax"` or `"sigmoid"` when the last operation is that, else `None`."""
        if not len(self):
            return None
        return getattr(self[-1], "output_activation", None)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return the output before `final_activation`; `forward(x)` when there is none.

        Runs each layer once, like `forward`. When the last layer is a Dense with
        that activation, its pre-activation is computed directly, so forward
        hooks registered on that last layer do not fire.

        Args:
            x: A batch of inputs.
        """
        if self._image_input:
            x = channels_first(x)
        *body, head = self._modules.values()
        for module in body:
            x = module(x)
        x = head.forward_logits(x) if isinstance(head, Layer) else head(x)
        return channels_last(x) if self._image_output else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the layers in order on a batch `[N, *input_shape]`.

        Args:
            x: A batch of inputs; images channels-last, as the input shape says.
        """
        if self._image_input:
            x = channels_first(x)
        for module in self._modules.values():
            x = module(x)
        return channels_last(x) if self._image_output else x

    def __getitem__(self, index: int | slice) -> nn.Module:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("Sequential slices must be contiguous (step 1)")
            items = list(self._modules.items())[start:stop]
            return type(self)(OrderedDict(items), input_shape=self.input_shape_at(start))
        return super().__getitem__(index)

    def __setitem__(self, index: int, module: nn.Module) -> None:
        # Replacing a layer (e.g. a new head for transfer learning) builds it in place.
        build_layer(module, self.input_shape_at(index % len(self)))
        super().__setitem__(index, module)
        self._collect_weight_rules()

    def __delitem__(self, index: int | slice) -> None:
        super().__delitem__(index)
        self._collect_weight_rules()

    def append(self, module: nn.Module) -> Sequential:
        """Build `module` for the current output shape and add it at the end (Keras `add`).

        Args:
            module: A tricklab layer or any PyTorch module.
        """
        build_layer(module, self.output_shape)
        super().append(module)
        self._collect_weight_rules()
        return self

    def insert(self, index: int, module: nn.Module) -> Sequential:
        """Build `module` for the input shape at `index` and insert it there.

        Args:
            index: Position of the new layer.
            module: A tricklab layer or any PyTorch module.

        Raises:
            ValueError: When `module` changes the shape: the layers after it are
                already built for the shape at `index`.
        """
        shape = self.input_shape_at(index if index >= 0 else index + len(self))
        if build_layer(module, shape) != shape:
            raise ValueError(f"an inserted layer must keep the per-sample shape {shape}")
        super().insert(index, module)
        self._collect_weight_rules()
        return self


def _grouped(
    weights: list[torch.Tensor], factors: list[float]
) -> list[tuple[float, list[torch.Tensor]]]:
    """Weights sharing a non-zero factor, so each group costs one multi-tensor pass."""
    groups: dict[float, list[torch.Tensor]] = {}
    for weight, factor in zip(weights, factors, strict=True):
        if factor:
            groups.setdefault(factor, []).append(weight)
    return list(groups.items())
