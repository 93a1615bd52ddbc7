"""Transfer: move trained models between runs, tasks and processes.

`save_model(model, directory, optimizer=None)` / `load_model(directory)` store a
model's architecture (`model.json`, the `build_model` layer list) and weights
(`weights.safetensors`), optionally with its optimizer state;
`save_weights(module, path)` / `load_weights(module, path)` store the weights of
any `torch.nn.Module`. Loading never unpickles (safetensors and JSON only).
"""

from tricklab.transfer.loading import load_model, load_weights
from tricklab.transfer.saving import save_model, save_weights

__all__ = ["load_model", "load_weights", "save_model", "save_weights"]
