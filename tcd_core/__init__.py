"""tcd-core: a pure-functional consistency-sampling core (TCD and LCM), framework-agnostic.

The data path (``docs/architecture.md``): a :class:`TCDConfig` gives the noise schedule
(:func:`alphas_cumprod`, a :class:`VPPath`); :func:`plan_timesteps` gives an algorithm's
(:data:`TCD`, :data:`LCM`) host :class:`Plan`; each step is :func:`coefficients` (0-d or per
batch) then one latent-sized :func:`update` (:func:`step` does both, validated). Host side is
NumPy and Python ints; device side is any Array API namespace and runs under ``jax.jit`` and
``torch.compile(fullgraph=True)``. :func:`tcd_step`, :func:`lcm_step` and their halves are the
two algorithms' named configurations. The demo (``tcd-sample`` and its exact toy problem) lives
in the separate package ``tcd_sample``.
"""

from ._version import __version__
from .algorithms import (
    LCM,
    TCD,
    Algorithm,
    check_eta,
    draws_noise,
    intermediate_level,
    intermediate_timestep,
    lcm_final_step,
)
from .config import (
    BETA_SCHEDULES,
    FLOW_PREDICTION,
    PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    TCDConfig,
)
from .consistency import (
    Coefficients,
    LCMCoefficients,
    LCMStepOutput,
    StepCoefficients,
    StepOutput,
    TCDStepOutput,
    coefficients,
    lcm_step,
    lcm_step_coefficients,
    lcm_update,
    step,
    step_coefficients,
    tcd_step,
    tcd_update,
    update,
)
from .flow import FlowConfig, FlowPlan, flow_plan, train_sigma_range, train_sigmas
from .parameterization import (
    FRESH,
    Arithmetic,
    add_noise,
    boundary_condition_scalings,
    get_velocity,
    original_and_noise_from_roots,
    parameterise,
    predict_original_and_noise,
)
from .paths import FLOW, FlowPath, VPPath
from .plan import (
    LCMPlan,
    Plan,
    TCDPlan,
    lcm_previous_timesteps,
    lcm_timesteps,
    next_timesteps,
    plan_timesteps,
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
from .thresholding import clip_sample, dynamic_threshold, quantile

__all__ = [
    "BETA_SCHEDULES",
    "FLOW",
    "FLOW_PREDICTION",
    "FRESH",
    "LCM",
    "PREDICTION_TYPES",
    "TCD",
    "TIMESTEP_SPACINGS",
    "Algorithm",
    "Arithmetic",
    "Coefficients",
    "FlowConfig",
    "FlowPath",
    "FlowPlan",
    "LCMCoefficients",
    "LCMPlan",
    "LCMStepOutput",
    "NoiseSchedule",
    "Plan",
    "StepCoefficients",
    "StepOutput",
    "TCDConfig",
    "TCDPlan",
    "TCDStepOutput",
    "VPPath",
    "__version__",
    "add_noise",
    "alphas_cumprod",
    "betas",
    "betas_for_alpha_bar",
    "boundary_condition_scalings",
    "check_eta",
    "clip_sample",
    "coefficients",
    "draws_noise",
    "dynamic_threshold",
    "final_alpha_cumprod",
    "flow_plan",
    "get_velocity",
    "intermediate_level",
    "intermediate_timestep",
    "lcm_final_step",
    "lcm_previous_timesteps",
    "lcm_step",
    "lcm_step_coefficients",
    "lcm_timesteps",
    "lcm_update",
    "linspace_f32",
    "next_timesteps",
    "noise_schedule",
    "original_and_noise_from_roots",
    "parameterise",
    "plan_timesteps",
    "predict_original_and_noise",
    "previous_timesteps",
    "quantile",
    "rescale_zero_terminal_snr",
    "step",
    "step_coefficients",
    "tcd_step",
    "tcd_timesteps",
    "tcd_update",
    "train_sigma_range",
    "train_sigmas",
    "update",
]
