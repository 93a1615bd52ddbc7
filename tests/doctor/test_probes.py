"""Probes: statistics against references computed here, step counting, hooks, events, bounds."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tricklab.data import load_dataset
from tricklab.doctor import Probe, watch
from tricklab.doctor.probes import MAX_SAMPLES
from tricklab.nn import build_model
from tricklab.train import Trainer

LAYER_KEYS = {
    "act_mean", "act_std", "act_zero_fraction", "act_saturated_fraction", "act_hist",
    "dead_fraction", "grad_norm", "grad_std", "weight_norm", "update_ratio",
    "distance_from_init", "grad_ratio_to_last", "nonfinite",
}


def train(model, probe, x, y, steps, lr=0.1, loss_fn=F.cross_entropy, before_step=None):
    """A plain SGD loop that knows nothing about the probe except `record_loss`; the losses."""
    optimizer, losses = torch.optim.SGD(model.parameters(), lr=lr), []
    for step in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        if before_step is not None:
            before_step(step)
        optimizer.step()
        if probe is not None:
            probe.record_loss(loss)
        losses.append(loss.detach())
    return torch.stack(losses)


def blobs(samples=64, inputs=20, classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, inputs, generator=generator)
    return x, torch.randint(0, classes, (samples,), generator=generator)


def capture(module):
    """Record `module`'s outputs with a hook of our own, to check the probe against."""
    outputs = []
    module.register_forward_hook(lambda _m, _a, out: outputs.append(out.detach().clone()))
    return outputs


def test_layer_records_follow_module_order_and_fused_activations() -> None:
    model = build_model([28, 28], [
        "flatten",
        {"dense": {"units": 8, "activation": "relu"}},
        {"dense": {"units": 6}},
        "leaky_relu",
        {"activation": {"activation": "tanh"}},
        {"dense": {"units": 3, "activation": "softmax"}},
    ])
    records = watch(model).to_dict()["layers"]
    assert [(r["name"], r["type"], r["activation"], r["has_weight"], r["units"]) for r in records] == [
        ("1", "Dense", "relu", True, 8),
        ("2", "Dense", None, True, 6),
        ("3", "LeakyReLU", "leaky_relu", False, None),
        ("4", "Activation", "tanh", False, None),
        ("5", "Dense", "softmax", True, 3),
    ]
    assert [r["index"] for r in records] == list(range(5))
    torch_model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 5), nn.LeakyReLU()
    )
    names = [(r["name"], r["activation"]) for r in watch(torch_model).to_dict()["layers"]]
    assert names == [("0", None), ("1", "relu"), ("3", None), ("4", "leaky_relu")]


def test_sigmoid_output_statistics_match_a_reference_from_the_same_batch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 50), nn.Sigmoid(), nn.Linear(50, 3))
    with torch.no_grad():
        model[0].weight.mul_(4)  # large pre-activations, so some outputs saturate
    sigmoid_outputs = capture(model[1])
    x, y = blobs()
    with watch(model, every=1, bins=12) as probe:
        train(model, probe, x, y, steps=2)
    sample = probe.to_dict()["samples"][1]
    stats, out = sample["layers"][1], sigmoid_outputs[1]
    assert stats["act_mean"] == pytest.approx(out.mean().item(), rel=1e-5)
    assert stats["act_std"] == pytest.approx(out.std(correction=0).item(), rel=1e-5)
    assert stats["act_zero_fraction"] == 0.0
    saturated = ((out < 0.03) | (out > 0.97)).float().mean().item()
    assert 0.05 < saturated < 0.95
    assert stats["act_saturated_fraction"] == pytest.approx(saturated, abs=1e-6)
    hist = stats["act_hist"]
    assert hist["low"] == pytest.approx(out.min().item()) and hist["high"] == pytest.approx(out.max().item())
    assert len(hist["counts"]) == 12 and sum(hist["counts"]) == out.numel()
    reference = torch.histc(out, bins=12, min=out.min().item(), max=out.max().item())
    assert sum(abs(a - b) for a, b in zip(hist["counts"], reference.tolist(), strict=True)) <= 2
    linear = sample["layers"][0]
    assert linear["act_saturated_fraction"] is None and linear["act_zero_fraction"] == 0.0


def test_relu_zero_fraction_counts_exact_zeros() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 3))
    relu_outputs = capture(model[1])
    x, y = blobs()
    with watch(model, every=1) as probe:
        train(model, probe, x, y, steps=1)
    stats = probe.to_dict()["samples"][0]["layers"][1]
    assert 0.2 < stats["act_zero_fraction"] < 0.8
    assert stats["act_zero_fraction"] == pytest.approx((relu_outputs[0] == 0).float().mean().item())


def test_gradient_update_ratio_and_distance_match_hand_computed_values() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(20, 30), nn.Tanh(), nn.Linear(30, 3))
    initial = [model[0].weight.detach().clone(), model[2].weight.detach().clone()]
    lr, seen = 0.1, []

    def before_step(step):
        seen.append([(m.weight.detach().clone(), m.weight.grad.clone()) for m in (model[0], model[2])])

    x, y = blobs()
    with watch(model, every=1) as probe:
        train(model, probe, x, y, steps=3, lr=lr, before_step=before_step)
    samples = probe.to_dict()["samples"]
    assert [s["step"] for s in samples] == [0, 1, 2]
    for sample, weights in zip(samples, seen, strict=True):
        layers = [sample["layers"][0], sample["layers"][2]]
        for stats, (weight, grad), start in zip(layers, weights, initial, strict=True):
            assert stats["grad_norm"] == pytest.approx(grad.norm().item(), rel=1e-5)
            assert stats["grad_std"] == pytest.approx(grad.std(correction=0).item(), rel=1e-5)
            assert stats["weight_norm"] == pytest.approx(weight.norm().item(), rel=1e-5)
            # Plain SGD: Δw = -lr·g, so ‖Δw‖/‖w‖ = lr·‖g‖/‖w‖.
            expected = lr * grad.norm().item() / weight.norm().item()
            assert stats["update_ratio"] == pytest.approx(expected, rel=1e-4)
            assert stats["distance_from_init"] == pytest.approx((weight - start).norm().item(), rel=1e-4, abs=1e-7)
        ratio = weights[0][1].norm().item() / weights[1][1].norm().item()
        assert layers[0]["grad_ratio_to_last"] == pytest.approx(ratio, rel=1e-5)
        assert layers[1]["grad_ratio_to_last"] == pytest.approx(1.0)
        tanh = sample["layers"][1]
        assert tanh["grad_norm"] is None and tanh["update_ratio"] is None
    assert samples[0]["layers"][0]["distance_from_init"] == 0.0


def test_every_n_probes_exactly_those_steps_and_eval_forwards_are_not_steps() -> None:
    model = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = blobs()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with watch(model, every=3) as probe:
        for _ in range(10):
            model.train()
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            with torch.no_grad():
                model(x)
            model.eval()
            model(x)
    result = probe.to_dict()
    assert result["steps"] == 10 and result["interval"] == 3
    assert [s["step"] for s in result["samples"]] == [0, 3, 6, 9]


def test_trainer_running_forward_logits_is_counted_step_by_step() -> None:
    """The Trainer runs the layers without calling the model; the first child's hook counts."""
    torch.manual_seed(3)
    model = build_model([20], [
        {"dense": {"units": 16, "activation": "relu"}},
        {"dense": {"units": 3, "activation": "softmax"}},
    ])
    x, y = blobs(samples=96)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), progress="none")
    with watch(model, every=2) as probe:
        trainer.fit(x, y, epochs=2, batch_size=32, validation_data=(x, y))
    result = probe.to_dict()
    assert result["steps"] == 6
    assert [s["step"] for s in result["samples"]] == [0, 2, 4]
    hidden, head = result["samples"][-1]["layers"]
    assert hidden["act_mean"] is not None and hidden["grad_norm"] > 0
    assert head["act_hist"] is None and head["grad_norm"] > 0  # head bypassed, gradient seen


def test_detach_removes_every_hook_and_the_probe_changes_no_output() -> None:
    def run(probed):
        torch.manual_seed(4)
        model = nn.Sequential(nn.Linear(20, 16), nn.Sigmoid(), nn.Linear(16, 3))
        x, y = blobs()
        probe = watch(model, every=1).attach() if probed else None
        losses = train(model, probe, x, y, steps=4)
        if probe is not None:
            hooked = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
            assert hooked > 0
            probe.detach()
        return model, losses, model(x)

    model, probed_losses, probed_output = run(True)
    _, plain_losses, plain_output = run(False)
    assert torch.equal(probed_losses, plain_losses) and torch.equal(probed_output, plain_output)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._forward_hooks_always_called and not module._backward_hooks
    for parameter in model.parameters():
        assert not parameter._post_accumulate_grad_hooks and not parameter._backward_hooks


def test_large_negative_bias_kills_relu_units_and_he_relu_net_stays_alive() -> None:
    torch.manual_seed(5)
    dead = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 3))
    with torch.no_grad():
        dead[0].bias.fill_(-50.0)
    healthy = build_model([20], [
        {"dense": {"units": 32, "activation": "relu", "kernel_initializer": "he_normal"}},
        {"dense": {"units": 3}},
    ])
    x, y = blobs()
    fractions = {}
    for name, model, relu in (("dead", dead, 1), ("healthy", healthy, 0)):
        with watch(model, every=1, window=5) as probe:
            train(model, probe, x, y, steps=10)
        samples = probe.to_dict()["samples"]
        fractions[name] = [s["layers"][relu]["dead_fraction"] for s in samples]
        # Only each window's last sample carries it; a linear output never does.
        assert [f is not None for f in fractions[name]] == [False] * 4 + [True] + [False] * 4 + [True]
        assert all(s["layers"][-1]["dead_fraction"] is None for s in samples)
    assert fractions["dead"][4] == fractions["dead"][9] == 1.0
    assert fractions["healthy"][4] < 0.1 and fractions["healthy"][9] < 0.1


def deep_net(activation="sigmoid", init=None):
    torch.manual_seed(6)
    init = init or {"random_normal": {"stddev": 1.0}}
    dense = {"dense": {"units": 64, "activation": activation, "kernel_initializer": init}}
    return build_model([28, 28], ["flatten", *[dense] * 10, {"dense": {"units": 10}}])


def test_deep_sigmoid_net_with_unit_normal_init_vanishes_and_saturates(fixture_data) -> None:
    """Glorot & Bengio (2010): saturated sigmoids shrink the gradient layer after layer."""
    train_split = load_dataset("fashion_mnist", validation=0, scale="unit").train
    x, y = train_split.x[:256], train_split.y[:256]
    ratios = {}
    for name, model in (("sigmoid", deep_net()), ("relu", deep_net("relu", "he_normal"))):
        with watch(model, every=1) as probe:
            train(model, probe, x, y, steps=3, lr=0.01)
        summary = probe.summary()
        ratios[name] = [row["grad_ratio_to_last"] for row in summary]
        assert ratios[name][-1] == 1.0 and not probe.events
        if name == "sigmoid":
            saturation = [row["act_saturated_fraction"] for row in summary]
            assert min(saturation[:10]) > 0.3 and saturation[10] is None
    # The sigmoid stack's gradient shrinks towards the input; He-initialized ReLUs keep it.
    sigmoid = ratios["sigmoid"]
    assert sigmoid[0] < 0.2 and sigmoid[0] < sigmoid[4] < sigmoid[8]
    assert ratios["relu"][0] > 1 > 20 * sigmoid[0]


def test_nan_in_the_input_is_reported_at_the_first_layer() -> None:
    model = deep_net()
    x, y = torch.rand(32, 28, 28), torch.randint(0, 10, (32,))
    x[3, 5, 5] = math.nan
    with watch(model, every=1) as probe:
        train(model, probe, x, y, steps=3, lr=0.01)
    result = probe.to_dict()
    json.dumps(result, allow_nan=False)
    nonfinite = [e for e in result["events"] if e["kind"] == "nonfinite"]
    assert len(nonfinite) == 1  # recorded when the run turns non-finite, not at every sample
    assert nonfinite[0]["step"] == 0 and nonfinite[0]["layer"] == "1"
    assert "output" in nonfinite[0]["detail"]
    assert [e["kind"] for e in result["events"]] == ["nonfinite", "nonfinite_loss"]
    first = result["samples"][0]["layers"][0]
    assert first["nonfinite"] and first["act_mean"] is None and first["grad_norm"] is None


def test_loss_spikes_are_three_times_the_median_of_recent_losses() -> None:
    model = nn.Sequential(nn.Linear(20, 4), nn.ReLU(), nn.Linear(4, 3))
    x, _ = blobs()
    losses = [1.0, 1.0, 1.0, 3.0, 3.4, 1.0, math.nan, 1.0]
    with watch(model, every=1) as probe:
        for value in losses:
            model(x).sum().backward()
            probe.record_loss(torch.tensor(value))
    result = probe.to_dict()
    assert [s["loss"] for s in result["samples"]] == [1.0, 1.0, 1.0, 3.0, pytest.approx(3.4), 1.0, None, 1.0]
    # 3.0 is not above 3 × median(1, 1, 1); 3.4 is above 3 × median(1, 1, 1, 3); NaN is its own kind.
    assert [(e["kind"], e["step"]) for e in result["events"]] == [("loss_spike", 4), ("nonfinite_loss", 6)]
    assert result["thresholds"] == {"saturation": 0.03, "loss_spike": 3.0}


@pytest.mark.parametrize("as_tensor", [True, False])
def test_a_spike_between_probed_steps_is_caught_by_the_running_maximum(as_tensor) -> None:
    model = nn.Sequential(nn.Linear(20, 4), nn.ReLU(), nn.Linear(4, 3))
    x, _ = blobs()
    with watch(model, every=4) as probe:
        for step in range(16):
            model(x).sum().backward()
            loss = 50.0 if step == 10 else 1.0
            probe.record_loss(torch.tensor(loss) if as_tensor else loss)
    result = probe.to_dict()
    assert [s["loss"] for s in result["samples"]] == [1.0] * 4
    assert [(e["kind"], e["step"]) for e in result["events"]] == [("loss_spike", 12)]
    assert "steps 9-11" in result["events"][0]["detail"]


def test_memory_stays_bounded_over_5000_probed_steps() -> None:
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(8, 4)
    largest_weight = max(p.numel() for p in model.parameters())
    with watch(model, every=1, bins=10, window=10) as probe:
        for _ in range(5000):  # no optimizer: the bound is what is tested, and it is faster
            model(x).square().mean().backward()
        # Held while attached: initial weights, one snapshot, per-unit maxima; no outputs.
        tensors = list(_tensors(vars(probe)))
        assert tensors and all(t.numel() <= largest_weight for t in tensors)
    assert not list(_tensors(vars(probe)))
    result = probe.to_dict()
    assert result["steps"] == 5000 and len(result["samples"]) <= MAX_SAMPLES
    steps = [s["step"] for s in result["samples"]]
    assert steps == sorted(steps) and steps[-1] == 4999
    # 500 windows of 10 probed steps: thinning merges each one's dead fraction into a kept sample.
    assert sum(s["layers"][1]["dead_fraction"] is not None for s in result["samples"]) == 500
    assert len(json.dumps(result)) < MAX_SAMPLES * 1500


def _tensors(value, depth=0):
    """Every tensor reachable from `value` through containers and the probe's own records."""
    if torch.is_tensor(value):
        yield value
    elif isinstance(value, nn.Module) or depth > 4:
        return  # the model's own weights are not the probe's
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item, depth + 1)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from _tensors(item, depth + 1)
    elif hasattr(value, "__dataclass_fields__"):
        yield from _tensors({name: getattr(value, name) for name in value.__dataclass_fields__}, depth + 1)


def test_adaptive_interval_probes_the_first_ten_steps_then_fewer() -> None:
    model = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = blobs()
    with watch(model) as probe:
        train(model, probe, x, y, steps=200, lr=0.01)
    result = probe.to_dict()
    steps = [s["step"] for s in result["samples"]]
    assert result["interval"] == "adaptive" and result["steps"] == 200
    assert steps[:11] == list(range(11))
    gaps = [b - a for a, b in itertools.pairwise(steps[10:])]
    assert gaps and all(gap >= 10 and gap % 10 == 0 for gap in gaps)
    assert len(steps) <= 10 + 19
    # A probe of this tiny net costs more than 5% of ten of its steps: the interval doubles.
    assert probe.interval >= 20 and gaps[-1] >= 20


def test_convolution_units_are_channels_and_output_is_json() -> None:
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
    with watch(model, every=1, window=2) as probe:
        train(model, probe, x, y, steps=2)
    result = json.loads(json.dumps(probe.to_dict(), allow_nan=False))
    assert [r["units"] for r in result["layers"]] == [4, 4, 3]
    assert set(result) == {"interval", "steps", "bins", "window", "thresholds", "layers", "samples", "events"}
    assert set(result["samples"][0]) == {"step", "loss", "layers"}
    assert all(set(layer) == LAYER_KEYS for s in result["samples"] for layer in s["layers"])
    assert result["samples"][1]["layers"][1]["dead_fraction"] is not None
    assert len(probe.summary()) == 3


def test_invalid_settings_and_double_attach_are_refused() -> None:
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="every"):
        Probe(model, every=0)
    with pytest.raises(ValueError, match="bins"):
        watch(model, bins=0)
    probe = watch(model).attach()
    with pytest.raises(RuntimeError, match="already attached"):
        probe.attach()
    probe.detach()
