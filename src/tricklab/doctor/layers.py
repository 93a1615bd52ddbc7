"""Which modules the doctor probes, and what activation each one's output has been through.

A probed layer is a weight layer (its own floating-point `weight` of 2 or more
dimensions: tricklab's Dense, `nn.Linear`, `nn.Conv*`) or an activation module
(tricklab's activation layers, `torch.nn`'s activations). The activation's
lower-case name decides which statistics apply: saturation for sigmoid and
tanh, dead units for the ReLU family.
"""

from __future__ import annotations

import re

from torch import nn

from tricklab.nn import activations as activation_registry
from tricklab.nn.layers import Activation

RELU_LIKE = frozenset({"relu", "leaky_relu", "elu", "selu", "prelu", "rrelu", "relu6", "celu"})
SQUASHING = frozenset({"sigmoid", "tanh", "softmax", "log_softmax", "softmin", "log_sigmoid",
                        "hardtanh", "hardsigmoid", "softsign", "tanhshrink"})
_TORCH_NAMES = {"ReLU": "relu", "ReLU6": "relu6", "LeakyReLU": "leaky_relu", "PReLU": "prelu",
                "RReLU": "rrelu", "SiLU": "silu", "ELU": "elu", "SELU": "selu", "CELU": "celu",
                "GELU": "gelu", "GLU": "glu"}


def activation_of(module: nn.Module | None) -> tuple[bool, str | None]:
    """Whether `module` is an activation module, and its lower-case name (None: linear)."""
    if isinstance(module, Activation):
        return True, activation_of(module.function)[1]
    kind = type(module)
    for info in activation_registry:
        if info.factory is kind:
            return True, None if info.name == "linear" else info.name
    if kind.__module__ == "torch.nn.modules.activation" and kind is not nn.MultiheadAttention:
        name = kind.__name__
        return True, _TORCH_NAMES.get(name) or re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return False, None


def has_weight(module: nn.Module) -> bool:
    """Whether `module` has its own floating-point `weight` of 2+ dimensions (Dense, Conv)."""
    weight = module._parameters.get("weight")  # its own, not a submodule's
    return weight is not None and weight.is_floating_point() and weight.ndim >= 2
