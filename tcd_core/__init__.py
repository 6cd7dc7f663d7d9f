"""tcd-core: a pure-functional Trajectory Consistency Distillation sampling core.

Host side (NumPy, Python ints): :class:`TCDConfig`, the noise schedule tables and the timestep
plan. Device side (any Array API namespace, jit-able): :func:`tcd_step` and friends. See the
README and ``docs/`` for guides; every function's docstring states its maths.
"""

from ._version import __version__
from .config import BETA_SCHEDULES, PREDICTION_TYPES, TIMESTEP_SPACINGS, TCDConfig
from .lcm import LCMCoefficients, LCMStepOutput, lcm_step, lcm_step_coefficients, lcm_update
from .lcm_plan import LCMPlan, lcm_final_step, lcm_previous_timesteps, lcm_timesteps
from .parameterization import (
    add_noise,
    boundary_condition_scalings,
    get_velocity,
    original_and_noise_from_roots,
    predict_original_and_noise,
)
from .plan import (
    TCDPlan,
    check_eta,
    draws_noise,
    intermediate_timestep,
    previous_timesteps,
    tcd_timesteps,
)
from .schedule import (
    NoiseSchedule,
    alphas_cumprod,
    betas,
    betas_for_alpha_bar,
    final_alpha_cumprod,
    linspace_f32,
    noise_schedule,
    rescale_zero_terminal_snr,
)
from .step import StepCoefficients, TCDStepOutput, step_coefficients, tcd_step, tcd_update
from .thresholding import clip_sample, dynamic_threshold, quantile

__all__ = [
    "BETA_SCHEDULES",
    "PREDICTION_TYPES",
    "TIMESTEP_SPACINGS",
    "LCMCoefficients",
    "LCMPlan",
    "LCMStepOutput",
    "NoiseSchedule",
    "StepCoefficients",
    "TCDConfig",
    "TCDPlan",
    "TCDStepOutput",
    "__version__",
    "add_noise",
    "alphas_cumprod",
    "betas",
    "betas_for_alpha_bar",
    "boundary_condition_scalings",
    "check_eta",
    "clip_sample",
    "draws_noise",
    "dynamic_threshold",
    "final_alpha_cumprod",
    "get_velocity",
    "intermediate_timestep",
    "lcm_final_step",
    "lcm_previous_timesteps",
    "lcm_step",
    "lcm_step_coefficients",
    "lcm_timesteps",
    "lcm_update",
    "linspace_f32",
    "noise_schedule",
    "original_and_noise_from_roots",
    "predict_original_and_noise",
    "previous_timesteps",
    "quantile",
    "rescale_zero_terminal_snr",
    "step_coefficients",
    "tcd_step",
    "tcd_timesteps",
    "tcd_update",
]
