"""The doctor: probes of layer health during training, and their diagnosis.

`watch(model)` hooks any `nn.Module` and samples, per layer, activation,
gradient and update statistics while any training loop runs; `Probe.to_dict()`
is what `doctor.json` holds. `DoctorCallback` feeds a tricklab `Trainer`'s
losses to a probe; `diagnose` turns probes into findings.
"""

from tricklab.doctor.callback import DoctorCallback
from tricklab.doctor.diagnosis import Diagnosis, Finding, diagnose
from tricklab.doctor.probes import Probe, watch

__all__ = ["Diagnosis", "DoctorCallback", "Finding", "Probe", "diagnose", "watch"]
