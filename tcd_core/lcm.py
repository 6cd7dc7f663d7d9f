"""The LCM step: multistep consistency sampling (Song et al. 2023, Algorithm 1), as diffusers'
``LCMScheduler.step``.

Pure functions of arrays: :func:`lcm_step`, and its two halves :func:`lcm_step_coefficients`
(0-d or per-batch coefficients from t, the previous timestep and whether the step is final) and
:func:`lcm_update` (the latent-sized update). No hidden state, no random numbers (noise is an
argument), no host synchronisation, no branch on an array value. On torch every operation is the
reference's, in the reference's order and with the reference's operand types, so float32,
float16, bfloat16 and float64 results are bit-identical.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._array import cast_like, device_of, gather, is_array, is_host, is_host_scalar, namespace
from ._step_common import (
    as_index,
    check_indices,
    check_per_batch,
    check_step_arrays,
    clean_original,
)
from .config import PREDICTION_TYPES, TCDConfig, checked_config
from .parameterization import boundary_condition_scalings

__all__ = ["LCMCoefficients", "LCMStepOutput", "lcm_step", "lcm_step_coefficients", "lcm_update"]


class LCMStepOutput(NamedTuple):
    """What one LCM step produces (a NamedTuple, hence a JAX pytree).

    Attributes:
        prev_sample: the model's next input: √ᾱ_prev·denoised + √(1−ᾱ_prev)·z, or ``denoised``
            itself at the final step.
        denoised: the consistency function's output c_out·x̂₀ + c_skip·x_t (diffusers'
            ``denoised``).
        pred_original_sample: x̂₀ after clipping/thresholding (when the config enables them).
    """

    prev_sample: Any
    denoised: Any
    pred_original_sample: Any


class LCMCoefficients(NamedTuple):
    """The coefficients of one LCM step: 0-d for scalar timesteps, shaped ``(B, 1, …, 1)`` for
    per-batch ones. They depend only on (t, previous timestep, final, timestep_scaling), so a loop
    can compute them once per plan (:func:`lcm_step_coefficients`) and apply them with
    :func:`lcm_update`.

    Attributes:
        sqrt_alpha_t, sqrt_beta_t: √ᾱₜ and √(1−ᾱₜ) (the parameterisation), float32.
        c_skip, c_out: the consistency boundary conditions at t
            (:func:`~tcd_core.boundary_condition_scalings`); Python floats for a host timestep,
            float32 arrays for an array timestep (exactly the reference's operand types).
        sqrt_alpha_prev, sqrt_beta_prev: √ᾱ_prev and √(1−ᾱ_prev), float32; exactly 1 and 0 at the
            final step, so that the renoising returns ``denoised`` unchanged there.
    """

    sqrt_alpha_t: Any
    sqrt_beta_t: Any
    c_skip: Any
    c_out: Any
    sqrt_alpha_prev: Any
    sqrt_beta_prev: Any


def lcm_step_coefficients(
    alphas_cumprod: Any,
    timestep: Any,
    prev_timestep: Any,
    *,
    final: Any = False,
    timestep_scaling: float = 10.0,
    ndim: int = 0,
) -> LCMCoefficients:
    """The coefficients of the LCM step at t towards the previous timestep.

    ``final`` marks the final step (:func:`~tcd_core.lcm_final_step`): a host bool, or a boolean
    array with one entry per batch element (selected with ``where``, never branched on). ``ndim``
    is the sample's rank, so per-batch coefficients broadcast. With a host ``timestep``,
    c_skip/c_out are Python floats computed in double precision, as the reference computes them for
    an ``int`` timestep; with an array timestep (what pipelines pass: an element of
    ``scheduler.timesteps``) they are float32 arrays on the timestep's device.

    Example:
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> c = lcm_step_coefficients(alphas_cumprod(TCDConfig()), 999, 759)
        >>> f"{c.c_skip:.3e}", round(c.c_out, 6), round(float(c.sqrt_alpha_prev), 4)
        ('2.505e-09', 1.0, 0.2285)
        >>> c = lcm_step_coefficients(alphas_cumprod(TCDConfig()), 259, 259, final=True)
        >>> float(c.sqrt_alpha_prev), float(c.sqrt_beta_prev)
        (1.0, 0.0)
    """
    check_indices(alphas_cumprod, timestep, prev_timestep)
    _check_final(final)
    return _coefficients(alphas_cumprod, timestep, prev_timestep, final, timestep_scaling, ndim)


def _check_final(final: Any) -> None:
    """TypeError unless ``final`` is a bool or a boolean array (its shape is checked by the
    step, against the batch)."""
    if is_host(final):
        ok = np.asarray(final).dtype == np.bool_
    else:
        ok = is_array(final) and namespace(final).isdtype(final.dtype, "bool")
    if not ok:
        raise TypeError(f"`final` must be a bool or a boolean array, got {final!r}")


def _coefficients(
    alphas_cumprod: Any,
    timestep: Any,
    prev_timestep: Any,
    final: Any,
    timestep_scaling: float,
    ndim: int,
) -> LCMCoefficients:
    """:func:`lcm_step_coefficients` once its arguments are checked."""
    xp = namespace(alphas_cumprod)
    device = device_of(alphas_cumprod)
    alpha_prod_t = gather(alphas_cumprod, as_index(timestep, xp, device), ndim, xp)
    alpha_prod_prev = gather(alphas_cumprod, as_index(prev_timestep, xp, device), ndim, xp)
    sqrt_alpha_prev = xp.sqrt(alpha_prod_prev)
    sqrt_beta_prev = xp.sqrt(1 - alpha_prod_prev)
    if is_host(final):
        host_final = np.asarray(final, dtype=bool)
        if host_final.ndim == 0:
            if bool(host_final):
                sqrt_alpha_prev = xp.ones_like(sqrt_alpha_prev)
                sqrt_beta_prev = xp.zeros_like(sqrt_beta_prev)
            final = None
        else:
            final = xp.asarray(host_final, device=device)
    if final is not None:
        mask = final if final.ndim == 0 else xp.reshape(final, (-1,) + (1,) * (ndim - 1))
        sqrt_alpha_prev = xp.where(mask, xp.ones_like(sqrt_alpha_prev), sqrt_alpha_prev)
        sqrt_beta_prev = xp.where(mask, xp.zeros_like(sqrt_beta_prev), sqrt_beta_prev)
    c_skip, c_out = _scalings(timestep, timestep_scaling, ndim, xp, device)
    return LCMCoefficients(
        xp.sqrt(alpha_prod_t),
        xp.sqrt(1 - alpha_prod_t),
        c_skip,
        c_out,
        sqrt_alpha_prev,
        sqrt_beta_prev,
    )


def _scalings(
    timestep: Any, timestep_scaling: float, ndim: int, xp: Any, device: Any
) -> tuple[Any, Any]:
    """(c_skip, c_out) with the reference's operand types: Python floats for host scalars, float32
    arrays (reshaped to broadcast from the batch axis) for arrays; host arrays move to the
    table's namespace and device first."""
    if is_host_scalar(timestep):
        return boundary_condition_scalings(int(timestep), timestep_scaling)
    if is_host(timestep):
        timestep = xp.asarray(np.asarray(timestep, dtype=np.int64), device=device)
    c_skip, c_out = boundary_condition_scalings(timestep, timestep_scaling)
    if timestep.ndim == 1:
        shape = (timestep.shape[0],) + (1,) * (ndim - 1)
        xp_t = namespace(timestep)
        c_skip, c_out = xp_t.reshape(c_skip, shape), xp_t.reshape(c_out, shape)
    return c_skip, c_out


def _predicted_original(
    model_output: Any, sample: Any, sqrt_alpha_t: Any, sqrt_beta_t: Any, prediction_type: str
) -> Any:
    """x̂₀ alone (LCM never needs ε̂), in the reference's operation order."""
    if prediction_type == "epsilon":
        return (sample - sqrt_beta_t * model_output) / sqrt_alpha_t
    if prediction_type == "sample":
        return model_output
    if prediction_type == "v_prediction":
        return sqrt_alpha_t * sample - sqrt_beta_t * model_output
    raise ValueError(
        f"`prediction_type` must be one of {', '.join(map(repr, PREDICTION_TYPES))}; "
        f"got {prediction_type!r}"
    )


def lcm_update(
    coefficients: LCMCoefficients,
    model_output: Any,
    sample: Any,
    noise: Any = None,
    config: TCDConfig | None = None,
) -> LCMStepOutput:
    """The tensor-sized half of :func:`lcm_step`, given the step's :class:`LCMCoefficients`.

    x̂₀ from the model output; x̂₀ thresholded or clipped per ``config``;
    denoised = c_out·x̂₀ + c_skip·x_t; prev = √ᾱ_prev·denoised + √(1−ᾱ_prev)·z, with z = 0 when
    ``noise`` is None. No validation (see :func:`lcm_step`); the outputs have the sample's dtype.

    Example:
        >>> import numpy as np
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> c = lcm_step_coefficients(alphas_cumprod(TCDConfig()), 259, 259, final=True)
        >>> out = lcm_update(c, np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32))
        >>> bool((out.prev_sample == out.denoised).all()), out.prev_sample.dtype
        (True, dtype('float32'))
    """
    config = checked_config(config)
    xp = namespace(model_output, sample)
    c = coefficients
    x0 = _predicted_original(
        model_output, sample, c.sqrt_alpha_t, c.sqrt_beta_t, config.prediction_type
    )
    x0 = clean_original(x0, config)
    denoised = c.c_out * x0 + c.c_skip * sample
    if noise is None:
        prev = c.sqrt_alpha_prev * denoised
    else:
        prev = c.sqrt_alpha_prev * denoised + c.sqrt_beta_prev * noise
    return LCMStepOutput(
        cast_like(prev, sample, xp), cast_like(denoised, sample, xp), cast_like(x0, sample, xp)
    )


def lcm_step(
    model_output: Any,
    timestep: Any,
    sample: Any,
    prev_timestep: Any,
    alphas_cumprod: Any,
    noise: Any = None,
    *,
    final: Any = False,
    config: TCDConfig | None = None,
) -> LCMStepOutput:
    r"""One step of multistep consistency sampling (LCM) from timestep t.

    It is :func:`lcm_step_coefficients` followed by :func:`lcm_update`. With ᾱ =
    ``alphas_cumprod`` and τ = t·``config.timestep_scaling``:

    1. x̂₀ from the model output per ``config.prediction_type``
       (:func:`~tcd_core.predict_original_and_noise`), then thresholded or clipped when the config
       says so (the LCM reference honours both, thresholding first).
    2. denoised = c_out·x̂₀ + c_skip·x_t with c_skip = σ_d²/(τ²+σ_d²), c_out = τ/√(τ²+σ_d²),
       σ_d = 0.5 (:func:`~tcd_core.boundary_condition_scalings`): the consistency function
       f(x_t, t), which is the identity at t = 0.
    3. prev_sample = √ᾱ_prev·denoised + √(1−ᾱ_prev)·z (forward-noise the estimate to the previous
       timestep), except at the final step, where prev_sample = denoised (the coefficients are
       exactly 1 and 0 there, so noise passed at the final step changes nothing).

    Args:
        model_output: the model's prediction (ε, x₀ or v).
        timestep: t — a Python int, a 0-d integer array, or a 1-D array with one entry per batch
            element.
        sample: x_t; its dtype is the output dtype.
        prev_timestep: the previous timestep (:attr:`~tcd_core.LCMPlan.prev_timesteps`); same
            forms as ``timestep``.
        alphas_cumprod: the float32 ᾱ table (:func:`~tcd_core.alphas_cumprod`).
        noise: z ~ N(0, I) with the sample's shape, or None (z = 0).
        final: whether this is the final step (:meth:`~tcd_core.LCMPlan.final_steps`): a bool or
            a per-batch boolean array.
        config: supplies ``prediction_type``, ``timestep_scaling`` and clipping/thresholding.

    Raises:
        ValueError: shapes that do not match, timesteps that are neither non-negative scalars nor
            per-batch vectors, a ``final`` of the wrong shape.

    Example:
        >>> import numpy as np
        >>> from tcd_core import TCDConfig, alphas_cumprod, lcm_step, lcm_timesteps
        >>> cfg = TCDConfig()
        >>> ac, plan = alphas_cumprod(cfg), lcm_timesteps(cfg, 4)
        >>> rng = np.random.default_rng(0)
        >>> x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
        >>> for t, p, last in zip(plan.timesteps, plan.prev_timesteps, plan.final_steps()):
        ...     eps = 0.1 * x                       # a model would go here
        ...     z = rng.standard_normal(x.shape).astype(np.float32)
        ...     x = lcm_step(eps, int(t), x, int(p), ac, z, final=bool(last), config=cfg).prev_sample
        >>> x.dtype, x.shape
        (dtype('float32'), (1, 4, 8, 8))
    """
    batch = check_step_arrays(model_output, sample, noise, timestep, prev_timestep)
    _check_final(final)
    final_shape = tuple(getattr(final, "shape", np.shape(final)))
    check_per_batch("final", final_shape, batch, "a bool or a 1-D boolean array")
    check_indices(alphas_cumprod, timestep, prev_timestep)
    config = checked_config(config)
    if noise is None and is_host(final) and not np.all(final):
        raise ValueError(
            "`noise` is required: a step that is not final re-noises the denoised sample to "
            "the previous timestep (the reference draws z ~ N(0, I) there); pass `noise` of the "
            "sample's shape (None is only allowed at the final step)"
        )
    coefficients = _coefficients(
        alphas_cumprod, timestep, prev_timestep, final, config.timestep_scaling, sample.ndim
    )
    return lcm_update(coefficients, model_output, sample, noise, config)
