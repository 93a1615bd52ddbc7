"""Save and load whole models, and weights alone, without ever unpickling.

`save_model(model, directory, optimizer=None)` writes a directory:

- `model.json`: `{"format": "tricklab-model", "version": 1, "tricklab": <version>,
  "input_shape": [...], "layers": [{name: config}, ...], "frozen_layers": [...],
  "optimizer": true|false}`. `layers` is the same list `build_model` accepts (a
  recipe's `model.layers`), nested initializers, regularizers, constraints and
  activations written as a recipe writes them (`"he_normal"`, `{l2: {l2: 0.01}}`);
  `frozen_layers` lists the indices of layers whose `trainable` is off.
- `weights.safetensors`: the model's `state_dict()`, parameters and buffers
  (batch-normalization moving statistics included), keyed as PyTorch keys them
  (`"1.weight"`).
- with an optimizer, `optimizer.safetensors` (every tensor of its state, keyed
  `state.<param index>.<name>`, e.g. `state.0.m`) and `optimizer.json` (its
  registry name, its config, its param groups with the model names of their
  parameters, and the state values that are not tensors, such as `step`).

`load_model(directory)` rebuilds the architecture with `build_model` and loads
the weights strictly: every stored tensor must match the rebuilt model's names
and shapes, or nothing is loaded and a `UserInputError` lists the first
mismatches. The model is returned as built, in training mode (Keras models have
no modes; call `model.eval()` to predict with dropout off and batch
normalization on its moving statistics). `load_model(directory, optimizer=True)`
returns `(model, optimizer)`, the optimizer rebuilt over the loaded model's
parameters with its state restored, so training continues as if never saved.

`save_weights(module, path)` / `load_weights(module, path)` store and restore the
`state_dict()` of any `torch.nn.Module` in one safetensors file, strictly.

No pickle, ever: tensors are read with `safetensors.torch.load_file` only (never
`torch.load`), everything else is JSON, and layers are rebuilt from registry names,
so a crafted file can at worst be refused, never run code. Every file is written
atomically, all of them in place or none: a failure leaves the directory as it was.

Keras equivalents: `model.save("x.keras")` / `keras.models.load_model("x.keras")`
(`include_optimizer` is `optimizer=` here) and `model.save_weights("x.weights.h5")` /
`model.load_weights(...)`. PyTorch equivalents: `torch.save(model.state_dict(), f)`
with `model.load_state_dict(torch.load(f, weights_only=True))`, or
`safetensors.torch.save_model` / `load_model`.
"""

from __future__ import annotations

FORMAT = "tricklab-model"
VERSION = 1
MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.json"
OPTIMIZER_WEIGHTS_FILE = "optimizer.safetensors"
