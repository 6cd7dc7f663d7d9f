"""The TCD step: Strategic Stochastic Sampling (Zheng et al. 2024, Algorithm 4).

Pure functions of arrays: :func:`tcd_step`, and its two halves :func:`step_coefficients` (0-d
coefficients from t, p, η) and :func:`tcd_update` (the latent-sized update). No hidden state, no random numbers (noise is an argument), no host
synchronisation, no branch on an array value: it runs under ``jax.jit`` and
``torch.compile(fullgraph=True)``. On torch, with scalar timesteps, every operation is the
reference's in the reference's order, so float32 (and float16/bfloat16) results are bit-identical.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._array import cast_like, device_of, gather, is_host, is_host_scalar, namespace
from ._step_common import (
    as_index,
    check_index,
    check_indices,
    check_order,
    check_per_batch,
    check_step_arrays,
    clean_original,
)
from .config import TCDConfig, checked_config
from .parameterization import original_and_noise_from_roots
from .plan import check_eta, intermediate_timestep

__all__ = ["StepCoefficients", "TCDStepOutput", "step_coefficients", "tcd_step", "tcd_update"]


class TCDStepOutput(NamedTuple):
    """What one step produces (a NamedTuple, hence a JAX pytree).

    Attributes:
        prev_sample: x_p, the sample at the next timestep (the model's next input).
        pred_noised_sample: x_s, the deterministic DDIM jump to the intermediate timestep s.
        pred_original_sample: x̂₀ after clipping/thresholding (when the config enables them).
    """

    prev_sample: Any
    pred_noised_sample: Any
    pred_original_sample: Any


class StepCoefficients(NamedTuple):
    """The float32 coefficients of one step t → s → p: 0-d for scalar timesteps, shaped
    ``(B, 1, …, 1)`` for per-batch ones. They depend only on (t, p, η), so a loop can compute them
    once per plan (:func:`step_coefficients`) and apply them with :func:`tcd_update`.

    Attributes:
        sqrt_alpha_t, sqrt_beta_t: √ᾱₜ and √(1−ᾱₜ) (the parameterisation).
        sqrt_alpha_s, sqrt_beta_s: √ᾱₛ and √(1−ᾱₛ) (the DDIM jump to s).
        sqrt_ratio, sqrt_one_minus_ratio: √r and √(1−r), r = ᾱₚ/ᾱₛ (the re-noising to p).
    """

    sqrt_alpha_t: Any
    sqrt_beta_t: Any
    sqrt_alpha_s: Any
    sqrt_beta_s: Any
    sqrt_ratio: Any
    sqrt_one_minus_ratio: Any


def step_coefficients(
    alphas_cumprod: Any,
    timestep: Any,
    prev_timestep: Any,
    eta: Any = None,
    *,
    intermediate: Any = None,
    ndim: int = 0,
) -> StepCoefficients:
    """The coefficients of the step t → s → p, with s = ⌊f32(1−η)·f32(p)⌋ or given.

    Pass either ``eta`` (s is computed by :func:`~tcd_core.intermediate_timestep`) or
    ``intermediate`` (s itself, e.g. computed on the host with the reference's rounding for a loop
    whose η is traced). ``ndim`` is the sample's rank, so per-batch coefficients broadcast.
    Operations and their order are the reference's, so on torch the values are bit-identical to
    the 0-d tensors diffusers computes inside its ``step``.

    Example:
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> c = step_coefficients(alphas_cumprod(TCDConfig()), 999, 759, eta=0.3)
        >>> round(float(c.sqrt_ratio), 4), float(step_coefficients(
        ...     alphas_cumprod(TCDConfig()), 259, 0, eta=0.3).sqrt_one_minus_ratio)
        (0.4698, 0.0)
    """
    if (eta is None) == (intermediate is None):
        raise ValueError("pass exactly one of `eta` and `intermediate`")
    size = check_indices(alphas_cumprod, timestep, prev_timestep)
    if intermediate is None:
        check_eta(eta)
    else:
        check_index("intermediate", intermediate, size)
        check_order("intermediate", intermediate, "prev_timestep", prev_timestep)
    return _coefficients(alphas_cumprod, timestep, prev_timestep, eta, intermediate, ndim)


def _coefficients(
    alphas_cumprod: Any, timestep: Any, prev_timestep: Any, eta: Any, intermediate: Any, ndim: int
) -> StepCoefficients:
    """:func:`step_coefficients` once its arguments are checked."""
    xp = namespace(alphas_cumprod)
    device = device_of(alphas_cumprod)
    if intermediate is None:
        intermediate = intermediate_timestep(prev_timestep, eta)
    alpha_prod_t = gather(alphas_cumprod, as_index(timestep, xp, device), ndim, xp)
    alpha_prod_p = gather(alphas_cumprod, as_index(prev_timestep, xp, device), ndim, xp)
    alpha_prod_s = gather(alphas_cumprod, as_index(intermediate, xp, device), ndim, xp)
    ratio = alpha_prod_p / alpha_prod_s
    return StepCoefficients(
        xp.sqrt(alpha_prod_t),
        xp.sqrt(1 - alpha_prod_t),
        xp.sqrt(alpha_prod_s),
        xp.sqrt(1 - alpha_prod_s),
        xp.sqrt(ratio),
        xp.sqrt(1 - ratio),
    )


def tcd_update(
    coefficients: StepCoefficients,
    model_output: Any,
    sample: Any,
    noise: Any = None,
    config: TCDConfig | None = None,
) -> TCDStepOutput:
    """The tensor-sized half of :func:`tcd_step`, given the step's :class:`StepCoefficients`.

    x̂₀, ε̂ from the model output; x̂₀ clipped/thresholded per ``config``;
    x_s = √ᾱₛ·x̂₀ + √(1−ᾱₛ)·ε̂; x_p = √r·x_s + √(1−r)·z (x_p = x_s when ``noise`` is None).
    No validation (see :func:`tcd_step`); the output has the sample's dtype.

    Example:
        >>> import numpy as np
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> c = step_coefficients(alphas_cumprod(TCDConfig()), 999, 0, eta=0.3)
        >>> out = tcd_update(c, np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32))
        >>> out.prev_sample.dtype
        dtype('float32')
    """
    config = checked_config(config)
    xp = namespace(model_output, sample)
    c = coefficients
    x0, eps = original_and_noise_from_roots(
        model_output, sample, c.sqrt_alpha_t, c.sqrt_beta_t, config.prediction_type
    )
    x0 = clean_original(x0, config)
    x_s = c.sqrt_alpha_s * x0 + c.sqrt_beta_s * eps
    x_p = x_s if noise is None else c.sqrt_ratio * x_s + c.sqrt_one_minus_ratio * noise
    return TCDStepOutput(
        cast_like(x_p, sample, xp), cast_like(x_s, sample, xp), cast_like(x0, sample, xp)
    )


def tcd_step(
    model_output: Any,
    timestep: Any,
    sample: Any,
    prev_timestep: Any,
    alphas_cumprod: Any,
    eta: Any = 0.3,
    noise: Any = None,
    config: TCDConfig | None = None,
) -> TCDStepOutput:
    r"""One TCD step from timestep t to the next timestep p, through s = ⌊(1−η)·p⌋.

    It is :func:`step_coefficients` (the 0-d part) followed by :func:`tcd_update` (the
    tensor-sized part); loops that visit the same (t, p, η) repeatedly can call those two directly.
    With ᾱ = ``alphas_cumprod``:

    1. (x̂₀, ε̂) from the model output (:func:`~tcd_core.predict_original_and_noise`); x̂₀ clipped or
       dynamically thresholded when the config says so, ε̂ left as predicted (DDIM's default
       ``use_clipped_model_output=False``).
    2. s = ⌊f32(1−η)·f32(p)⌋ (:func:`~tcd_core.intermediate_timestep`).
    3. x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s)·ε̂ (``pred_noised_sample``).
    4. x_p = √(ᾱ_p/ᾱ_s)·x_s + √(1−ᾱ_p/ᾱ_s)·z with z = ``noise``. At η = 0 and at the last step
       (p = 0) the ratio is exactly 1, so the noise term is exactly zero: loops may pass noise
       at every step without changing the result, or None there (x_p = x_s).

    Args:
        model_output: the model's prediction (ε, x₀ or v, per ``config.prediction_type``).
        timestep: t — a Python int, a 0-d integer array, or a 1-D array with one entry per batch
            element.
        sample: x_t; its dtype is the output dtype (coefficients are float32).
        prev_timestep: p, the next timestep (0 after the last step); same forms as ``timestep``.
        alphas_cumprod: the float32 ᾱ table (:func:`~tcd_core.alphas_cumprod`).
        eta: η ∈ [0, 1] (the paper's γ): a Python float, a 0-d array or a 1-D per-batch array.
        noise: z ~ N(0, I) with the sample's shape; None only where η = 0 or p = 0 (checked
            for host η and p; with η or p on the device, None gives x_p = x_s unchecked).
        config: supplies ``prediction_type`` and the clipping/thresholding options.

    Raises:
        ValueError: η outside [0, 1] (when given as a number), shapes that do not match,
            timesteps that are neither scalars nor per-batch vectors, host timesteps outside
            [0, len(alphas_cumprod) − 1] or with p > t, a 2-D table, ``noise`` None where host
            η > 0 and p > 0.
        TypeError: arguments of the wrong type (a string η, a list sample, a float timestep
            array, a config that is not a :class:`~tcd_core.TCDConfig`).

    Example:
        >>> import numpy as np
        >>> from tcd_core import TCDConfig, alphas_cumprod, tcd_timesteps, tcd_step
        >>> cfg = TCDConfig()
        >>> ac, plan = alphas_cumprod(cfg), tcd_timesteps(cfg, 4)
        >>> x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
        >>> for t, p in zip(plan.timesteps, plan.prev_timesteps):
        ...     eps = 0.1 * x                       # a model would go here
        ...     z = np.random.default_rng(int(t)).standard_normal(x.shape).astype(np.float32)
        ...     x = tcd_step(eps, int(t), x, int(p), ac, eta=0.3, noise=z, config=cfg).prev_sample
        >>> x.dtype, x.shape
        (dtype('float32'), (1, 4, 8, 8))
    """
    batch = check_step_arrays(model_output, sample, noise, timestep, prev_timestep)
    check_eta(eta)
    eta_shape = () if is_host_scalar(eta) else tuple(getattr(eta, "shape", np.shape(eta)))
    check_per_batch("eta", eta_shape, batch)
    check_indices(alphas_cumprod, timestep, prev_timestep)
    config = checked_config(config)
    if noise is None and is_host(eta) and is_host(prev_timestep):
        renoises = (np.asarray(eta, dtype=np.float64) > 0) & (np.asarray(prev_timestep) > 0)
        if renoises.any():
            raise ValueError(
                "`noise` is required: with η > 0 the step re-noises x_s to p > 0 (the reference "
                "draws z ~ N(0, I) there); pass `noise` of the sample's shape (None is only "
                "allowed where η = 0 or p = 0, where the noise term is exactly zero)"
            )

    coefficients = _coefficients(alphas_cumprod, timestep, prev_timestep, eta, None, sample.ndim)
    return tcd_update(coefficients, model_output, sample, noise, config)
