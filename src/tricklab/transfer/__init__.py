"""Transfer: move trained models between runs, tasks and processes.

`save_model(model, directory, optimizer=None)` / `load_model(directory)` store a
model's architecture (`model.json`, the `build_model` layer list) and weights
(`weights.safetensors`), optionally with its optimizer state;
`save_weights(module, path)` / `load_weights(module, path)` store the weights of
any `torch.nn.Module`. Loading never unpickles (safetensors and JSON only).
`clone_model(model, weights=True)` copies a model without sharing a tensor, and
`reuse_layers(source, ":-1", new_layers)` starts a model from another's layers
(a clone, so training it never changes the source).
`predict(model, x, mc_samples=T)` averages T Monte Carlo dropout passes into a
`Prediction` (mean probabilities, their spread and entropy);
`predict_raw(model, "new.csv")` predicts raw rows, images or arrays prepared as
the run's training data was, one row per sample.
"""

from tricklab.transfer.loading import load_model, load_weights
from tricklab.transfer.mc_dropout import Prediction, predict
from tricklab.transfer.raw_prediction import predict_raw
from tricklab.transfer.reuse import clone_model, reuse_layers
from tricklab.transfer.saving import save_model, save_weights

__all__ = [
    "Prediction", "clone_model", "load_model", "load_weights", "predict", "predict_raw",
    "reuse_layers", "save_model", "save_weights",
]
