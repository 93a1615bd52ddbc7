"""What the doctor can find: the kinds of finding, the chapter's remedies for each, the records.

`Finding` and `Diagnosis` are what `tricklab.doctor.diagnosis.diagnose` returns
and what `doctor.json` holds; `format_diagnosis` shows them in a terminal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType

_INIT = ("initialization matched to the activation: Glorot (glorot_uniform) for sigmoid/tanh, "
         "He (he_normal) for the ReLU family, LeCun (lecun_normal) for SELU "
         "(Glorot & Bengio 2010; He et al. 2015)")
_BN = "batch normalization (batch_norm) between the layers (Ioffe & Szegedy 2015)"
_CLIP = "gradient clipping: clipnorm or global_clipnorm on the optimizer (Pascanu et al. 2013)"
_LR_FIND = "find the rate with `tricklab lr-find` (loss against learning rate)"
REMEDIES: dict[str, tuple[str, ...]] = {
    "divergence": ("lower the learning rate", _CLIP,
                   "check the inputs are scaled (data.scale: unit or standardize) and finite"),
    "exploding_gradients": (_CLIP, "lower the learning rate", _INIT, _BN),
    "vanishing_gradients": (_INIT, "a non-saturating activation: ReLU family (leaky_relu, "
                            "prelu), elu, or selu", _BN, "residual (skip) connections"),
    "dead_units": ("a leaky activation: leaky_relu, elu or selu instead of relu",
                   "lower the learning rate", "He initialization (he_normal; He et al. 2015)",
                   "smaller negative biases (zeros), so units start active"),
    "saturation": ("a non-saturating activation: ReLU family, elu or selu",
                   "Glorot initialization (glorot_uniform; Glorot & Bengio 2010)", _BN),
    "learning_rate_too_high": ("lower the learning rate, 3-10x at a time", _LR_FIND,
                               "a schedule: warm-up, exponential decay or 1cycle"),
    "learning_rate_too_low": ("raise the learning rate, 3-10x at a time", _LR_FIND),
    "activation_shift": (_BN, "lower the learning rate"),
}
KINDS = tuple(REMEDIES)  # also the order findings are listed in


@dataclass(frozen=True)
class Finding:
    """One problem: what, how bad, where, the evidence with numbers and steps, and the fixes.

    Args:
        kind: One of `KINDS`.
        severity: `"warning"` or `"error"`.
        layers: Names of the layers concerned, in depth order.
        evidence: Short human-readable lines with the numbers and the steps.
        remedies: The chapter's fixes, most effective first.
        data: The raw numbers behind the evidence (JSON-ready).
    """

    kind: str
    severity: str
    layers: list[str]
    evidence: list[str]
    remedies: list[str]
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The finding as a JSON-ready dict with the fields above."""
        return asdict(self)


@dataclass(frozen=True)
class Diagnosis:
    """The verdict (`"healthy"` or `"unhealthy"`) and the findings behind it, in `KINDS` order."""

    verdict: str
    findings: list[Finding]

    def to_dict(self) -> dict[str, Any]:
        """`{"verdict": ..., "findings": [finding dicts]}`."""
        return {"verdict": self.verdict, "findings": [f.to_dict() for f in self.findings]}


def format_diagnosis(diagnosis: Diagnosis) -> RenderableType:
    """The diagnosis for a rich console: one "healthy" line, or a table of findings.

    Args:
        diagnosis: The result of `diagnose`.

    Returns:
        A renderable for `rich.console.Console.print`.
    """
    # Imported here: `diagnose` itself needs nothing beyond the standard library.
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    if not diagnosis.findings:
        return Text("healthy: no finding (gradients, activations, dead and saturated units "
                    "and update sizes are within the doctor's thresholds)", style="bold green")
    count = len(diagnosis.findings)
    style = "bold red" if diagnosis.verdict == "unhealthy" else "bold yellow"
    header = Text(f"{diagnosis.verdict}: {count} finding{'s' * (count != 1)}", style=style)
    table = Table(show_lines=True, header_style="bold", expand=False)
    table.add_column("finding", min_width=14, max_width=26)
    table.add_column("evidence", ratio=3)
    table.add_column("remedies", ratio=2)
    for finding in diagnosis.findings:
        colour = "red" if finding.severity == "error" else "yellow"
        what = Text(finding.kind.replace("_", " "), style=f"bold {colour}")
        what.append(f"\n{finding.severity}", style=colour)
        if finding.layers:
            shown = ", ".join(finding.layers[:6]) + (" …" if len(finding.layers) > 6 else "")
            what.append(f"\nlayers {shown}")
        evidence = Text("\n".join(f"• {line}" for line in finding.evidence))
        remedies = Text("\n".join(f"{n}. {r}" for n, r in enumerate(finding.remedies, 1)))
        table.add_row(what, evidence, remedies)
    return Group(header, table)
