"""A toy problem with a known answer: TCD sampling of a 2-D Gaussian mixture.

The data distribution is an isotropic Gaussian mixture (:mod:`tcd_sample.toy.mixture`), so on
either noise path, the scheduler's VP schedule or the flow-matching path x_σ = (1−σ)·x₀ + σ·ε
(:data:`tcd_core.FLOW`), everything is closed form: the teacher's exact ε-prediction (VP) or
velocity (flow) and, through an accurate RK4 solve of the probability-flow ODE, the ideal
distilled (consistency) model (:mod:`tcd_sample.toy.models`). :mod:`tcd_sample.toy.metrics`
measures how close samples are to the truth; :mod:`tcd_sample.toy.sampling` runs the TCD loop
on either path (and LCM's multistep consistency sampling beside it on VP). ``tcd-sample``
(:mod:`tcd_sample.cli`) is the CLI on top.

Everything runs on any Array API namespace (NumPy, PyTorch, JAX, ...).
"""

from .metrics import component_shares, sliced_wasserstein
from .mixture import PRESETS, GaussianMixture, preset
from .models import (
    DistilledModel,
    TeacherModel,
    epsilon_to_prediction,
    probability_flow,
    teacher_epsilon,
    teacher_velocity,
    velocity_to_prediction,
)
from .sampling import DEFAULT_SHIFT, SampleRun, flow_sigmas, lcm_sample, sample, tcd_sample

__all__ = [
    "DEFAULT_SHIFT",
    "PRESETS",
    "DistilledModel",
    "GaussianMixture",
    "SampleRun",
    "TeacherModel",
    "component_shares",
    "epsilon_to_prediction",
    "flow_sigmas",
    "lcm_sample",
    "preset",
    "probability_flow",
    "sample",
    "sliced_wasserstein",
    "tcd_sample",
    "teacher_epsilon",
    "teacher_velocity",
    "velocity_to_prediction",
]
