"""Per-layer health probes for any `nn.Module` under any training loop, by hooks only.

`with watch(model) as probe:` samples, every few training steps, each weight
layer's and activation's output (mean, std, exact zeros, saturation, histogram,
units dead over a window), its weight gradient (norm, std, norm relative to the
last weight layer's), its update-to-weight ratio ‖Δw‖/‖w‖ and its distance from
initialization, and notes NaN/Inf and loss spikes. Glorot & Bengio (2010) follow
these activation and gradient statistics across depth to show saturation and
vanishing gradients; the update ratio is Karpathy's rule of thumb (CS231n
notes: about 1e-3; far lower learns slowly, far higher is unstable).

Rules (thresholds also in `to_dict()["thresholds"]`):

- Standard deviations are population ones (divided by n), of all elements of a
  layer's output or weight gradient; the histogram spans the output's [min, max].

- A step is a forward of the model in training mode with gradients enabled,
  counted by a pre-hook on the model, or on its first child when a caller runs
  the children without calling the model (tricklab's `forward_logits`, where
  a head run by `forward_logits` has gradient statistics but no output ones).
- `every=N` probes steps 0, N, 2N, ...; `every=None` probes steps 0-10, then
  every 10 steps, doubling the interval whenever, over three or more probes at
  the current interval, their measured host time (including the one transfer,
  which waits for queued device work) exceeds 5% of the time between them.
- Saturation (sigmoid and tanh only): outputs within 3% of the output range of a
  bound: sigmoid y < 0.03 or y > 0.97, tanh |y| > 0.94.
- Dead units: a unit (output dim 1: features, or channels of a convolution) is
  active when its output is > 0 for some sample; after `window` probed steps the
  fraction never active is that window's last sample's `dead_fraction`, for
  ReLU-like activations and for other non-squashing outputs that stayed >= 0.
- The update ratio compares the weight at the probed step with the weight at the
  next forward (after the optimizer step), or when the probe is read.
- Non-finite: a layer whose output or gradient statistics are NaN/Inf. The event
  names the first layer in computation order (the lowest with a bad output,
  else the highest with a bad gradient) and is recorded when the run turns
  non-finite, not at every later sample.
- Loss spike: a loss > 3× the median of the last 20 probed steps' losses (needs
  3). Non-probed steps' losses count through their running maximum.
- Memory: no activations are kept; beyond 2000 samples each pair merges into its
  later sample, which keeps the earlier one's `dead_fraction` and NaN flags.
- Cost: a few passes over each output and gradient, all on their device, and one
  host transfer per probed step for all layers; other steps run three tiny hooks.
"""

from __future__ import annotations

import math
import statistics
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tricklab.doctor.layers import RELU_LIKE, SQUASHING, activation_of, has_weight

SATURATION = 0.03
LOSS_SPIKE = 3.0
MAX_SAMPLES = 2000
WARMUP = 10
BUDGET = 0.05
LOSS_HISTORY = 20
MAX_EVENTS = 1000

# Per-layer slots of a sample. The device sends counts and norms (cheaper than
# fractions and stds there), which the host turns into these.
FIELDS = (
    "act_mean", "act_std", "act_zero_fraction", "act_low", "act_high", "act_saturated_fraction",
    "dead_fraction", "grad_norm", "grad_std", "weight_norm", "distance_from_init", "update_ratio",
)
_K = len(FIELDS)
_ROW = ("act_mean", "act_std", "act_zero_fraction", "act_saturated_fraction", "act_hist",
        "dead_fraction", "grad_norm", "grad_std", "weight_norm", "update_ratio",
        "distance_from_init", "grad_ratio_to_last", "nonfinite")  # a sample's layer keys
_ZERO, _LOW, _SAT, _DEAD, _GRAD, _WEIGHT, _UPDATE = 2, 3, 5, 6, 7, 9, 11
_BOUNDS = {"sigmoid": (0.5, 0.5), "tanh": (0.0, 1.0)}  # centre and half-range
def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _nan_max(a: float, b: float) -> float:
    """`max` that keeps NaN, so a non-finite loss is not hidden by a later finite one."""
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


@dataclass
class _Layer:
    index: int
    name: str
    module: nn.Module
    activation: str | None
    has_weight: bool
    units: int | None

    def record(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "type": type(self.module).__name__,
                "activation": self.activation, "has_weight": self.has_weight,
                "units": self.units}


@dataclass
class _Pending:
    """What a probed step has left on the device until its one transfer."""

    step: int
    start: float
    parts: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (slot, values)
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)  # output elements, per layer seen
    grads: set[int] = field(default_factory=set)
    loss: float | torch.Tensor | None = None
    cost: float = 0.0


@dataclass(slots=True)
class _Sample:
    step: int
    values: array  # _K per layer, then `bins` counts per layer, then loss and peak; NaN: none
    nonfinite: int  # bit i: layer i's output or gradient was not finite


class Probe:
    """Hooks that sample a model's layer health; the rules are in the module docstring.

    Args:
        model: Any `nn.Module`.
        every: Probe every `every` steps; `None` adapts the interval. Defaults to `None`.
        bins: Histogram bins per layer output. Defaults to `30`.
        window: Probed steps per dead-unit window. Defaults to `10`.

    Raises:
        ValueError: When `every`, `bins` or `window` is not a positive integer.
    """

    def __init__(
        self, model: nn.Module, every: int | None = None, bins: int = 30, window: int = 10
    ) -> None:
        for name, value in (("every", every), ("bins", bins), ("window", window)):
            if value is not None and (type(value) is not int or value < 1):
                raise ValueError(f"{name} must be a positive integer (got {value!r})")
        self.model, self.every, self.bins, self.window = model, every, bins, window
        self._layers: list[_Layer] = []
        for name, module in model.named_modules():
            # A probed module's output covers its submodules (Dense's fused activation).
            if any(not layer.name or name.startswith(f"{layer.name}.") for layer in self._layers):
                continue
            weighted = has_weight(module)
            is_activation, activation = activation_of(module)
            if weighted:
                activation = activation_of(getattr(module, "activation", None))[1]
            if weighted or is_activation:
                units = int(module.weight.shape[0]) if weighted else None
                self._layers.append(
                    _Layer(len(self._layers), name, module, activation, weighted, units)
                )
        self._last = max((la.index for la in self._layers if la.has_weight), default=None)
        self.steps = 0
        self.interval = every or 1
        self._samples: list[_Sample] = []
        self.events: list[dict[str, Any]] = []
        self._next = 0
        self._pending: _Pending | None = None
        self._handles: list[Any] = []
        self._transient: list[Any] = []
        self._in_root = False
        self._initial: dict[int, torch.Tensor] = {}
        self._unit_max: dict[int, torch.Tensor] = {}
        self._window_count = 0
        self._window_low = [math.inf] * len(self._layers)
        self._peak: torch.Tensor | None = None
        self._peak_float = -math.inf
        self._peak_from: int | None = None
        self._losses: deque[float] = deque(maxlen=LOSS_HISTORY)
        self._bad = self._bad_loss = False
        self._span: list[float] | None = None  # start time, summed cost, probes
        self._size = len(self._layers) * (_K + bins) + 2

    def attach(self) -> Probe:
        """Register the hooks and copy each weight as its initial value; returns `self`.

        Raises:
            RuntimeError: When the probe is attached already.
        """
        if self._handles:
            raise RuntimeError("this probe is already attached")
        self._initial = {
            la.index: la.module.weight.detach().clone() for la in self._layers if la.has_weight
        }
        self._handles.append(self.model.register_forward_pre_hook(self._root_pre))
        first = next(iter(self.model.children()), None)
        if first is not None:
            self._handles.append(
                self.model.register_forward_hook(self._root_post, always_call=True)
            )
            self._handles.append(first.register_forward_pre_hook(self._child_pre))
        return self

    def detach(self) -> None:
        """Finish the pending sample and remove every hook; the results stay readable."""
        self._flush()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._initial, self._unit_max = {}, {}

    def __enter__(self) -> Probe:
        return self.attach()

    def __exit__(self, *exc_info: object) -> None:
        self.detach()

    def record_loss(self, step_loss: float | torch.Tensor) -> None:
        """Give the probe the loss of the step just run; optional, as hooks cannot see it.

        On a probed step the value is kept (a tensor stays on its device until the
        step's one transfer). On other steps only a running maximum is kept, for
        a tensor one device operation without host sync, so this may be called
        every step.

        Args:
            step_loss: The scalar loss, a float or a tensor.
        """
        if self._pending is not None:
            is_tensor = torch.is_tensor(step_loss)
            self._pending.loss = step_loss.detach() if is_tensor else float(step_loss)
            return
        if self._peak_from is None:
            self._peak_from = max(self.steps - 1, 0)
        if torch.is_tensor(step_loss):
            value = step_loss.detach().reshape(())
            # torch.maximum propagates NaN, so a non-finite loss is not lost.
            self._peak = value.clone() if self._peak is None else torch.maximum(self._peak, value)
        else:
            self._peak_float = _nan_max(self._peak_float, float(step_loss))

    # Hooks. Steps that are not probed run only the three permanent ones.

    def _root_pre(self, module: nn.Module, args: Any) -> None:
        self._in_root = True
        self._begin_forward()

    def _root_post(self, module: nn.Module, args: Any, output: Any) -> None:
        self._in_root = False

    def _child_pre(self, module: nn.Module, args: Any) -> None:
        if not self._in_root:
            self._begin_forward()

    def _begin_forward(self) -> None:
        if self._pending is not None:
            self._finalize()  # the optimizer has stepped since: the update is measurable
        if not (self.model.training and torch.is_grad_enabled()):
            return
        step, self.steps = self.steps, self.steps + 1
        if step >= self._next:
            self._start(step)

    @torch.no_grad()
    def _start(self, step: int) -> None:
        start = time.perf_counter()
        pending = self._pending = _Pending(step, start)
        # Hooks live only during a probed step, so other steps keep PyTorch's fast path.
        for layer in self._layers:
            self._transient.append(layer.module.register_forward_hook(self._output_hook(layer)))
            if not layer.has_weight:
                continue
            weight = layer.module.weight
            if weight.requires_grad:
                hook = self._grad_hook(layer)
                self._transient.append(weight.register_post_accumulate_grad_hook(hook))
            snapshot = pending.snapshots[layer.index] = weight.detach().clone()
            norms = [torch.linalg.vector_norm(snapshot)]
            initial = self._initial.get(layer.index)
            if initial is not None and initial.shape == snapshot.shape:
                norms.append(torch.linalg.vector_norm(snapshot - initial))
            pending.parts.append((layer.index * _K + _WEIGHT, torch.stack(norms)))
        pending.cost += time.perf_counter() - start

    def _output_hook(self, layer: _Layer) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            pending = self._pending
            if pending is None or layer.index in pending.sizes or not torch.is_tensor(output):
                return
            start = time.perf_counter()
            with torch.no_grad():
                self._output_stats(layer, output.detach(), pending)
            pending.cost += time.perf_counter() - start

        return hook

    def _output_stats(self, layer: _Layer, y: torch.Tensor, pending: _Pending) -> None:
        flat = y.reshape(-1)
        if flat.numel() == 0 or not flat.is_floating_point():
            return
        # Few full passes and no host reads; counts and norms become fractions and the
        # std on the host. Two-pass std: saturated outputs have std << mean.
        mean = flat.mean()
        low, high = torch.aminmax(flat)
        stats = [mean, torch.linalg.vector_norm(flat - mean), (flat == 0).sum(), low, high]
        if layer.activation in _BOUNDS:
            centre, half = _BOUNDS[layer.activation]
            stats.append(((flat - centre).abs_() > half * (1 - 2 * SATURATION)).sum())
        pending.parts.append((layer.index * _K, torch.stack(stats)))
        # Binned by hand: torch.histc and bincount read the range on the host. NaN and
        # Inf become extreme integers, which the clamp puts in the end bins.
        scale = self.bins / (high - low).clamp_min(torch.finfo(flat.dtype).tiny)
        index = (flat - low).mul_(scale).to(torch.int64).clamp_(0, self.bins - 1)
        ones = index.new_ones(1).expand_as(index)
        counts = index.new_zeros(self.bins).scatter_add_(0, index, ones)
        pending.parts.append((len(self._layers) * _K + layer.index * self.bins, counts))
        unit_max = y.amax(dim=[d for d in range(y.ndim) if d != 1]) if y.ndim > 1 else high[None]
        layer.units = unit_max.numel()
        previous = self._unit_max.get(layer.index)
        same = previous is not None and previous.shape == unit_max.shape
        self._unit_max[layer.index] = torch.fmax(previous, unit_max) if same else unit_max
        pending.sizes[layer.index] = flat.numel()

    def _grad_hook(self, layer: _Layer) -> Any:
        def hook(weight: torch.Tensor) -> None:
            pending = self._pending
            if pending is None or weight.grad is None:
                return
            start = time.perf_counter()
            with torch.no_grad():
                grad, norm = weight.grad, torch.linalg.vector_norm
                # Two-pass std: torch.std_mean is several times slower on CPU.
                stats = torch.stack([norm(grad), norm(grad - grad.mean())])
            pending.parts.append((layer.index * _K + _GRAD, stats))
            pending.grads.add(layer.index)
            pending.cost += time.perf_counter() - start

        return hook

    # Finishing a probed step: one transfer, then bookkeeping on the host.

    def _flush(self) -> None:
        if self._pending is not None:
            self._finalize()

    @torch.no_grad()
    def _finalize(self) -> None:
        start = time.perf_counter()
        pending, self._pending = self._pending, None
        for handle in self._transient:
            handle.remove()
        self._transient.clear()
        parts = pending.parts
        for index, snapshot in pending.snapshots.items():
            weight = self._layers[index].module.weight.detach()
            if weight.shape == snapshot.shape:
                parts.append((index * _K + _UPDATE, torch.linalg.vector_norm(weight - snapshot)))
        self._window_count += 1
        window_end = self._window_count >= self.window
        if window_end:
            for index, unit_max in self._unit_max.items():
                parts.append((index * _K + _DEAD, (unit_max <= 0).float().mean()))
        values = array("d", [math.nan]) * self._size
        for slot, value in ((self._size - 2, pending.loss), (self._size - 1, self._peak)):
            if torch.is_tensor(value):
                parts.append((slot, value))
            elif value is not None:
                values[slot] = value
        if parts:
            device = parts[0][1].device
            flat = torch.cat(
                [(t if t.device == device else t.to(device)).reshape(-1) for _, t in parts]
            ).tolist()  # the one host transfer of this probed step
            position = 0
            for slot, tensor in parts:
                size = tensor.numel()
                values[slot : slot + size] = array("d", flat[position : position + size])
                position += size
        self._record(pending, values, window_end)
        peak = None
        if self._peak_from is not None:
            peak = _nan_max(-math.inf if self._peak is None else values[-1], self._peak_float)
            values[-1] = peak
        loss = None if pending.loss is None else values[-2]
        self._check_loss(pending.step, loss, peak, self._peak_from or 0)
        self._peak, self._peak_float, self._peak_from = None, -math.inf, None
        pending.cost += time.perf_counter() - start
        self._adapt(pending)

    def _record(self, pending: _Pending, values: array, window_end: bool) -> None:
        bad_outputs, bad_grads, mask = [], [], 0
        for layer in self._layers:
            i, base = layer.index, layer.index * _K
            if i in pending.sizes:
                size = pending.sizes[i]
                values[base + 1] /= math.sqrt(size)
                values[base + _ZERO] /= size
                values[base + _SAT] /= size
                self._window_low[i] = min(self._window_low[i], values[base + _LOW])
                if not math.isfinite(values[base] + values[base + 1]):
                    bad_outputs.append(layer)
                    mask |= 1 << i
            if i in pending.grads:
                values[base + _GRAD + 1] /= math.sqrt(layer.module.weight.numel())
                if not math.isfinite(values[base + _GRAD]):
                    bad_grads.append(layer)
                    mask |= 1 << i
            norm = values[base + _WEIGHT]
            values[base + _UPDATE] = values[base + _UPDATE] / norm if norm else math.nan
            if window_end and not (
                layer.activation in RELU_LIKE
                or (layer.activation not in SQUASHING and self._window_low[i] >= 0)
            ):
                values[base + _DEAD] = math.nan
        if window_end:
            self._window_count, self._unit_max = 0, {}
            self._window_low = [math.inf] * len(self._layers)
        if mask and not self._bad:
            first = bad_outputs[0] if bad_outputs else bad_grads[-1]
            where = "output" if bad_outputs else "gradient"
            kind = type(first.module).__name__
            detail = f"NaN/Inf first in the {where} of layer {first.name!r} ({kind})"
            self._event(pending.step, "nonfinite", first.name,
                        f"{detail}; {mask.bit_count()} layer(s) affected")
        self._bad = bool(mask)
        self._samples.append(_Sample(pending.step, values, mask))
        if len(self._samples) > MAX_SAMPLES:
            odd = self._samples[-1:] if len(self._samples) % 2 else []
            pairs = zip(self._samples[0::2], self._samples[1::2], strict=False)
            self._samples = [self._merge(earlier, later) for earlier, later in pairs] + odd

    def _merge(self, earlier: _Sample, later: _Sample) -> _Sample:
        for index in range(len(self._layers)):
            if math.isnan(later.values[index * _K + _DEAD]):
                later.values[index * _K + _DEAD] = earlier.values[index * _K + _DEAD]
        later.nonfinite |= earlier.nonfinite
        return later

    def _check_loss(self, step: int, loss: float | None, peak: float | None, since: int) -> None:
        recorded = [value for value in (loss, peak) if value is not None]
        bad = not all(math.isfinite(value) for value in recorded)
        if bad and not self._bad_loss:
            self._event(step, "nonfinite_loss", None, f"non-finite loss by step {step}")
        self._bad_loss = bad
        if len(self._losses) >= 3:
            median = statistics.median(self._losses)
            for value, where in ((loss, f"at step {step}"), (peak, f"in steps {since}-{step - 1}")):
                if value is not None and math.isfinite(value) and value > LOSS_SPIKE * median:
                    rule = f"{LOSS_SPIKE:g} x median {median:.4g} of the last {len(self._losses)}"
                    self._event(step, "loss_spike", None,
                                f"loss {value:.4g} {where} > {rule} probed steps' losses")
                    break
        if loss is not None and math.isfinite(loss):
            self._losses.append(loss)

    def _event(self, step: int, kind: str, layer: str | None, detail: str) -> None:
        if len(self.events) < MAX_EVENTS:
            self.events.append({"step": step, "kind": kind, "layer": layer, "detail": detail})

    def _adapt(self, pending: _Pending) -> None:
        step = pending.step
        if self.every is not None or step < WARMUP:
            self._next = step + (self.every or 1)
            return
        if self._span is not None:
            span_start, cost, probes = self._span
            if probes >= 3 and cost > BUDGET * (pending.start - span_start):
                self.interval *= 2
                self._span = None
            else:
                self._span = [span_start, cost + pending.cost, probes + 1]
        if self._span is None:
            self._span = [pending.start, pending.cost, 1]
        self.interval = max(self.interval, WARMUP)
        self._next = step + self.interval

    # Reading the results.

    def to_dict(self) -> dict[str, Any]:
        """Everything probed, as JSON-ready data (`None` for non-finite or not applicable).

        A pending probed step is finished first, its update ratio measured
        against the weights as they are now: read the probe after the optimizer step.
        """
        self._flush()
        return {
            "interval": "adaptive" if self.every is None else self.every,
            "steps": self.steps,
            "bins": self.bins,
            "window": self.window,
            "thresholds": {"saturation": SATURATION, "loss_spike": LOSS_SPIKE},
            "layers": [layer.record() for layer in self._layers],
            "samples": [self._sample_dict(sample) for sample in self._samples],
            "events": [dict(event) for event in self.events],
        }

    def _sample_dict(self, sample: _Sample) -> dict[str, Any]:
        values, bins, counts_at = sample.values, self.bins, len(self._layers) * _K
        last = None if self._last is None else _num(values[self._last * _K + _GRAD])
        rows = []
        for layer in self._layers:
            row = dict(zip(FIELDS, map(_num, values[layer.index * _K :][:_K]), strict=True))
            counts = values[counts_at + layer.index * bins :][:bins]
            low, high, grad = row.pop("act_low"), row.pop("act_high"), row["grad_norm"]
            row["act_hist"] = (
                None
                if math.isnan(counts[0])
                else {"counts": [int(c) for c in counts], "low": low, "high": high}
            )
            row["grad_ratio_to_last"] = grad / last if grad is not None and last else None
            row["nonfinite"] = bool(sample.nonfinite >> layer.index & 1)
            rows.append({key: row[key] for key in _ROW})
        return {"step": sample.step, "loss": _num(values[-2]), "layers": rows}

    def summary(self) -> list[dict[str, Any]]:
        """Per layer, aligned with `layers`: medians over the samples and the last distance.

        Keys: `index`, `name`; the medians of the finite values of `act_std`,
        `act_saturated_fraction`, `dead_fraction`, `grad_norm`, `grad_ratio_to_last`
        and `update_ratio` (`None` when never measured); the last
        `distance_from_init`; `nonfinite`, whether any sample had NaN/Inf there.
        """
        samples = self.to_dict()["samples"]
        rows = []
        for layer in self._layers:
            column = [sample["layers"][layer.index] for sample in samples]
            row: dict[str, Any] = {"index": layer.index, "name": layer.name}
            for key in ("act_std", "act_saturated_fraction", "dead_fraction", "grad_norm",
                        "grad_ratio_to_last", "update_ratio"):
                finite = [entry[key] for entry in column if entry[key] is not None]
                row[key] = statistics.median(finite) if finite else None
            distances = [entry["distance_from_init"] for entry in column]
            row["distance_from_init"] = next((d for d in distances[::-1] if d is not None), None)
            row["nonfinite"] = any(entry["nonfinite"] for entry in column)
            rows.append(row)
        return rows


def watch(model: nn.Module, every: int | None = None, bins: int = 30, window: int = 10) -> Probe:
    """Probe `model`'s layers while any loop trains it: `with watch(model) as probe: ...`.

    Args:
        model: Any `nn.Module`. Probed are, in module order, its weight layers (an
            own floating-point `weight` of 2+ dimensions: Dense, Linear, Conv) and
            its activation modules, not the parts of a probed module.
        every: Probe every `every` training steps; `None` adapts the interval so
            the probes cost about 5% (see the module docstring). Defaults to `None`.
        bins: Histogram bins per layer output. Defaults to `30`.
        window: Probed steps over which a unit must never be active to count as
            dead. Defaults to `10`.

    Returns:
        A `Probe`, attached when the `with` block is entered (or by `attach()`).
    """
    return Probe(model, every=every, bins=bins, window=window)
