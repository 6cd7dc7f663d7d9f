"""The consistency step of every algorithm and path: coefficients, then one latent-sized update
(``tcd_core.consistency``; its functions are re-exported by ``tcd_core``).

A step at timestep t towards the next timestep, for an :class:`~tcd_core.Algorithm` on a noise
path (:class:`~tcd_core.VPPath`, or :data:`~tcd_core.FLOW` where the "timesteps" are σ), is

* :func:`coefficients`: six numbers (0-d, or ``(B, 1, …, 1)`` for per-batch timesteps) that
  depend only on (algorithm, path, t, next timestep, η or final), so a loop can compute them once
  per plan;
* :func:`update`: the latent-sized half, written once for every algorithm::

      (x̂₀, ε̂)   from the model output at (a_t, b_t)          (the path's parameterisation)
      x̂₀        clipped or thresholded per the config
      estimate  = original·x̂₀ + other·(ε̂ for TCD | x_t for LCM)
                  (a flow velocity v: x_t + (σ_s − σ)·v, Euler's jump, the same point)
      next      = keep·estimate + noise·z                      (= estimate when z is None)

* :func:`step`: both, after validating every argument at the API boundary.

TCD's coefficients: (a_t, b_t) = roots at t, (original, other) = roots at s = ⌊f32(1−η)·p⌋ (the
DDIM jump to s), (keep, noise) = the path's transition from s to p. LCM's: (a_t, b_t) = roots at
t, (other, original) = the boundary conditions (c_skip, c_out) at t, (keep, noise) = the roots at
the next timestep, exactly 1 and 0 at the final step. On the flow path TCD's s is
σ_s = f32(1−η)·σ_next and the transition is keep = (1−σ_next)/(1−σ_s), noise = √(σ_next² −
keep²·σ_s²): η = 0 is ``FlowMatchEulerDiscreteScheduler``'s step and η = 1 its stochastic one, bit
for bit on torch; LCM has no flow form (TCD at η = 1 is the flow LCM step).

Pure functions of arrays: no hidden state, no random numbers (noise is an argument), no host
synchronisation, no branch on an array value, so they run under ``jax.jit`` and
``torch.compile(fullgraph=True)``. On torch every operation is the reference's, in the reference's
order and with its operand types, so float32 (and half, and float64) results are bit-identical to
diffusers' ``TCDScheduler`` and ``LCMScheduler``.

The named configurations :func:`tcd_step`, :func:`step_coefficients`, :func:`tcd_update`,
:func:`lcm_step`, :func:`lcm_step_coefficients` and :func:`lcm_update` keep their signatures.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._array import cast_like, is_array, is_host, is_host_scalar, namespace
from ._step_common import check_per_batch, check_step_arrays, clean_original, former_names
from .algorithms import LCM, TCD, Algorithm, check_eta
from .config import FLOW_PREDICTION, TCDConfig, checked_config
from .parameterization import FRESH, Arithmetic, boundary_condition_scalings, parameterise
from .paths import VPPath, as_path

__all__ = [
    "Coefficients",
    "LCMCoefficients",
    "LCMStepOutput",
    "StepCoefficients",
    "StepOutput",
    "TCDStepOutput",
    "coefficients",
    "lcm_step",
    "lcm_step_coefficients",
    "lcm_update",
    "step",
    "step_coefficients",
    "tcd_step",
    "tcd_update",
    "update",
]


class StepOutput(NamedTuple):
    """What one step produces (a NamedTuple, hence a JAX pytree).

    Attributes:
        next_sample: the sample at the next timestep (the model's next input). ``prev_sample`` is
            the same array under diffusers' name.
        estimate: the step's estimate: TCD's x_s, the DDIM jump to the intermediate timestep
            (``pred_noised_sample``), or LCM's consistency output c_out·x̂₀ + c_skip·x_t
            (``denoised``); both names are properties.
        pred_original_sample: x̂₀ after clipping/thresholding (when the config enables them).
    """

    next_sample: Any
    estimate: Any
    pred_original_sample: Any

    @property
    def prev_sample(self) -> Any:
        """:attr:`next_sample` under diffusers' name."""
        return self.next_sample

    @property
    def pred_noised_sample(self) -> Any:
        """:attr:`estimate` under TCD's name (x_s)."""
        return self.estimate

    @property
    def denoised(self) -> Any:
        """:attr:`estimate` under LCM's name."""
        return self.estimate


#: The output type under its former names (one type serves both algorithms).
TCDStepOutput = StepOutput
LCMStepOutput = StepOutput


class Coefficients(NamedTuple):
    """The coefficients of one step (0-d for scalar timesteps, ``(B, 1, …, 1)`` for per-batch
    ones), as :func:`update` applies them. Float32 arrays, except LCM's c_skip/c_out for a host
    timestep: Python floats, the reference's operand types.

    Attributes:
        alpha_t, sigma_t: (a_t, b_t) = (√ᾱ_t, √(1−ᾱ_t)), the parameterisation at t.
        original: the weight of x̂₀ in the estimate (TCD: √ᾱ_s; LCM: c_out).
        other: the weight of the estimate's second term (TCD: √(1−ᾱ_s) on ε̂; LCM: c_skip on x_t).
        keep: the weight of the estimate in the next sample (TCD: √(ᾱ_p/ᾱ_s); LCM: √ᾱ_next).
        noise: the weight of z (TCD: √(1−ᾱ_p/ᾱ_s); LCM: √(1−ᾱ_next)).

    The former field names still read: ``sqrt_alpha_t``/``sqrt_beta_t``, TCD's
    ``sqrt_alpha_s``/``sqrt_beta_s``/``sqrt_ratio``/``sqrt_one_minus_ratio``, LCM's
    ``c_out``/``c_skip``/``sqrt_alpha_prev``/``sqrt_beta_prev``.
    """

    alpha_t: Any
    sigma_t: Any
    original: Any
    other: Any
    keep: Any
    noise: Any

    def __getattr__(self, name: str) -> Any:
        """The former field names: TCD's ``sqrt_alpha_t``, ``sqrt_beta_t``, ``sqrt_alpha_s``,
        ``sqrt_beta_s``, ``sqrt_ratio``, ``sqrt_one_minus_ratio`` and LCM's ``c_out``,
        ``c_skip``, ``sqrt_alpha_prev``, ``sqrt_beta_prev`` (only called for names that are not
        fields)."""
        field = _FORMER_FIELDS.get(name)
        if field is None:
            raise AttributeError(f"'Coefficients' object has no attribute {name!r}")
        return getattr(self, field)


_FORMER_FIELDS = {
    "sqrt_alpha_t": "alpha_t",
    "sqrt_beta_t": "sigma_t",
    "sqrt_alpha_s": "original",
    "sqrt_beta_s": "other",
    "sqrt_ratio": "keep",
    "sqrt_one_minus_ratio": "noise",
    "c_out": "original",
    "c_skip": "other",
    "sqrt_alpha_prev": "keep",
    "sqrt_beta_prev": "noise",
}

#: The coefficient type under its former names (one type serves both algorithms).
StepCoefficients = Coefficients
LCMCoefficients = Coefficients


# ---------------------------------------------------------------------------- coefficients
def coefficients(
    algorithm: Algorithm,
    path: Any,
    timestep: Any,
    next_timestep: Any,
    *,
    eta: Any = None,
    intermediate: Any = None,
    final: Any = False,
    timestep_scaling: float = 10.0,
    ndim: int = 0,
) -> Coefficients:
    """The coefficients of ``algorithm``'s step from ``timestep`` to ``next_timestep`` on
    ``path`` (a :class:`~tcd_core.VPPath` or an ᾱ table; or :data:`~tcd_core.FLOW`, where
    ``timestep``/``next_timestep``/``intermediate`` are σ, floats in [0, 1]).

    TCD takes either ``eta`` (s from :func:`~tcd_core.intermediate_timestep`) or
    ``intermediate`` (s itself, e.g. computed with the reference's rounding for a loop whose η is
    traced). ``final`` marks the reference's final step (a host bool, or a boolean array per
    batch element, selected with ``where``): LCM returns its estimate there; TCD's coefficients
    do not depend on it (its last step ends at p = 0, where the transition is exactly the
    identity), so a loop may pass it for either algorithm. LCM also takes ``timestep_scaling``;
    with a host ``timestep`` its c_skip/c_out are Python floats computed in double precision, as
    the reference computes them for an ``int``. ``ndim`` is the sample's rank, so per-batch
    coefficients broadcast.

    Example:
        >>> from tcd_core import LCM, TCD, TCDConfig, alphas_cumprod
        >>> ac = alphas_cumprod(TCDConfig())
        >>> round(float(coefficients(TCD, ac, 999, 759, eta=0.3).keep), 4)
        0.4698
        >>> c = coefficients(LCM, ac, 259, 259, final=True)
        >>> float(c.keep), float(c.noise)
        (1.0, 0.0)
    """
    path = _checked_path(algorithm, path)
    if algorithm.has_eta and (eta is None) == (intermediate is None):
        raise ValueError("pass exactly one of `eta` and `intermediate`")
    path.check(timestep, next_timestep)
    if algorithm.has_eta and intermediate is not None:
        path.check_intermediate(intermediate, next_timestep)
    _check_rules(algorithm, eta, final, intermediate=intermediate)
    return _coefficients(
        algorithm, path, timestep, next_timestep, eta, intermediate, final, timestep_scaling, ndim
    )


def _coefficients(
    algorithm: Algorithm,
    path: Any,
    timestep: Any,
    next_timestep: Any,
    eta: Any,
    intermediate: Any,
    final: Any,
    timestep_scaling: float,
    ndim: int,
    like: Any = None,
) -> Coefficients:
    """:func:`coefficients` once its arguments are checked (the operations in the references'
    order, so that compiled programs and torch bits stay the same). ``like`` (the step's sample)
    places a table-less path's host σ in the sample's namespace."""
    xp, device = path.namespace(timestep, next_timestep, like)
    if algorithm.skip_connection:
        level_t = path.level(timestep, ndim, xp, device)
        keep, noise = path.roots(path.level(next_timestep, ndim, xp, device), xp)
        keep, noise = _at_final(final, keep, noise, xp, device, ndim)
        other, original = _boundary_conditions(timestep, timestep_scaling, ndim, xp, device)
        alpha_t, sigma_t = path.roots(level_t, xp)
        return Coefficients(alpha_t, sigma_t, original, other, keep, noise)
    if intermediate is None:
        intermediate = path.intermediate(next_timestep, eta)
    level_t = path.level(timestep, ndim, xp, device)
    level_next = path.level(next_timestep, ndim, xp, device)
    level_s = path.level(intermediate, ndim, xp, device)
    keep, noise = path.transition(level_s, level_next, xp)
    alpha_t, sigma_t = path.roots(level_t, xp)
    original, other = path.roots(level_s, xp)
    return Coefficients(alpha_t, sigma_t, original, other, keep, noise)


def _at_final(
    final: Any, keep: Any, noise: Any, xp: Any, device: Any, ndim: int
) -> tuple[Any, Any]:
    """(keep, noise) replaced by exactly 1 and 0 where the step is final (LCM returns its
    estimate there): a host bool decides on the host, an array selects with ``where``."""
    if is_host(final):
        host_final = np.asarray(final, dtype=bool)
        if host_final.ndim == 0:
            if bool(host_final):
                return xp.ones_like(keep), xp.zeros_like(noise)
            return keep, noise
        final = xp.asarray(host_final, device=device)
    mask = final if final.ndim == 0 else xp.reshape(final, (-1,) + (1,) * (ndim - 1))
    return (
        xp.where(mask, xp.ones_like(keep), keep),
        xp.where(mask, xp.zeros_like(noise), noise),
    )


def _boundary_conditions(
    timestep: Any, timestep_scaling: float, ndim: int, xp: Any, device: Any
) -> tuple[Any, Any]:
    """(c_skip, c_out) with the reference's operand types: Python floats for host scalars,
    float32 arrays (reshaped to broadcast from the batch axis) for arrays; host arrays move to the
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


# ---------------------------------------------------------------------------- the update
def update(
    algorithm: Algorithm,
    coefficients: Coefficients,
    model_output: Any,
    sample: Any,
    noise: Any = None,
    config: TCDConfig | None = None,
    *,
    arithmetic: Arithmetic | None = None,
) -> StepOutput:
    """The latent-sized half of a step, for every algorithm (see the module docstring).

    x̂₀, ε̂ from the model output (:func:`~tcd_core.parameterise`); x̂₀ clipped/thresholded per
    ``config``; estimate = original·x̂₀ + other·(ε̂, or x_t for LCM); next = keep·estimate +
    noise·z, or the estimate itself when ``noise`` is None. No validation (see :func:`step`); the
    outputs have the sample's dtype.

    ``arithmetic`` runs the operations (default: plain operators, :data:`~tcd_core.FRESH`). The
    formula names, at each operation, a temporary of its own that is dead afterwards; an
    in-place arithmetic (``arithmetic.in_place``) writes the result there, and may also overwrite
    ``noise`` and x̂₀'s buffer: ``pred_original_sample`` is then None. ``model_output`` and
    ``sample`` are never written to.

    Example:
        >>> import numpy as np
        >>> from tcd_core import TCD, TCDConfig, alphas_cumprod
        >>> c = coefficients(TCD, alphas_cumprod(TCDConfig()), 999, 0, eta=0.3)
        >>> out = update(TCD, c, np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32))
        >>> out.next_sample.dtype
        dtype('float32')
    """
    if config.__class__ is not TCDConfig:
        config = checked_config(config)
    ar = FRESH if arithmetic is None else arithmetic
    c = coefficients
    skip, ptype, in_place = algorithm.skip_connection, config.prediction_type, ar.in_place
    cleaned = config.thresholding or config.clip_sample
    if ptype == FLOW_PREDICTION and not (skip or cleaned):
        # The flow path's jump to s is Euler's, x_s = x + (σ_s − σ)·v (FlowMatchEuler's order;
        # σ_s = other, σ = sigma_t); x̂₀ = x − σ·v only for the output.
        second = ar.mul(c.other - c.sigma_t, model_output)
        estimate = ar.add(sample, second)
        if second.dtype != estimate.dtype:  # a half v: its product is no temporary for the rest
            second = None
        x0 = None
        if not in_place:
            x0 = parameterise(ar, model_output, sample, c.alpha_t, c.sigma_t, ptype, False)[0]
    else:
        x0, eps, spare = parameterise(
            ar, model_output, sample, c.alpha_t, c.sigma_t, ptype, not skip
        )
        if cleaned:
            x0 = clean_original(x0, config)
        # x̂₀'s buffer is free once the estimate has it (in place only: x̂₀ is not returned then)
        free = x0 if in_place and x0 is not model_output else None
        first = ar.mul(c.original, x0, reuse=spare)
        if skip:
            second = ar.mul(c.other, sample, reuse=free)
        else:
            second = ar.mul(c.other, eps, reuse=free if eps is model_output else eps)
        estimate = ar.add(first, second, reuse=first)
    if noise is None:
        next_sample = estimate
    else:
        kept = ar.mul(c.keep, estimate, reuse=second)
        spread = ar.mul(c.noise, noise, reuse=noise if in_place else None)
        next_sample = ar.add(kept, spread, reuse=kept)
    dtype = sample.dtype
    original = None if in_place else x0
    if (
        next_sample.dtype == dtype
        and estimate.dtype == dtype
        and (original is None or original.dtype == dtype)
    ):
        return StepOutput(next_sample, estimate, original)
    xp = namespace(model_output, sample)
    return StepOutput(
        cast_like(next_sample, sample, xp),
        cast_like(estimate, sample, xp),
        None if original is None else cast_like(original, sample, xp),
    )


# ---------------------------------------------------------------------------- the step
def step(
    algorithm: Algorithm,
    model_output: Any,
    timestep: Any,
    sample: Any,
    next_timestep: Any,
    path: Any,
    *,
    eta: Any = None,
    noise: Any = None,
    final: Any = False,
    config: TCDConfig | None = None,
) -> StepOutput:
    """One step of ``algorithm`` from ``timestep`` to ``next_timestep`` on ``path`` (a
    :class:`~tcd_core.VPPath` or an ᾱ table, or :data:`~tcd_core.FLOW` with σ for timesteps):
    every argument checked, then :func:`coefficients` and :func:`update`. :func:`tcd_step` and
    :func:`lcm_step` document the two algorithms' arguments and errors. On the flow path the
    default ``config`` predicts the velocity (``prediction_type="flow_prediction"``); the model
    output may also be ε or x̂₀, not the VP path's v.

    Example:
        >>> import numpy as np
        >>> from tcd_core import LCM, TCD, TCDConfig, alphas_cumprod
        >>> ac, x = alphas_cumprod(TCDConfig()), np.ones((1, 2), np.float32)
        >>> step(TCD, 0.1 * x, 999, x, 759, ac, eta=0.3, noise=x).next_sample.shape
        (1, 2)
        >>> step(LCM, 0.1 * x, 259, x, 259, ac, final=True).next_sample.shape
        (1, 2)
        >>> from tcd_core import FLOW
        >>> step(TCD, 0.1 * x, 0.75, x, 0.5, FLOW, eta=0.0).next_sample.tolist()  # Euler
        [[0.9750000238418579, 0.9750000238418579]]
    """
    path = _checked_path(algorithm, path)
    batch = check_step_arrays(model_output, sample, noise, timestep, next_timestep)
    _check_rules(algorithm, eta, final, batch=batch)
    path.check(timestep, next_timestep)
    config = checked_config(config) if config is not None or isinstance(path, VPPath) else _FLOW
    path.check_prediction(config.prediction_type)
    if noise is None:
        _check_noise_given(algorithm, eta, next_timestep, final)
    c = _coefficients(
        algorithm, path, timestep, next_timestep, eta, None, final, config.timestep_scaling,
        sample.ndim, sample,
    )  # fmt: skip
    return update(algorithm, c, model_output, sample, noise, config)


#: The step's config on the flow path when none is given: the velocity, nothing else.
_FLOW = TCDConfig(prediction_type=FLOW_PREDICTION)


def _check_noise_given(algorithm: Algorithm, eta: Any, next_timestep: Any, final: Any) -> None:
    """ValueError where a step whose arguments are known on the host re-noises without noise."""
    if algorithm.has_eta:
        if is_host(eta) and is_host(next_timestep):
            eta_host = np.asarray(eta, dtype=np.float64)
            if ((eta_host > 0) & (np.asarray(next_timestep) > 0)).any():
                raise ValueError(
                    "`noise` is required: with η > 0 the step re-noises x_s to p > 0 (the "
                    "reference draws z ~ N(0, I) there); pass `noise` of the sample's shape "
                    "(None is only allowed where η = 0 or p = 0, where the noise term is exactly "
                    "zero)"
                )
    elif is_host(final) and not np.all(final):
        raise ValueError(
            "`noise` is required: a step that is not final re-noises the denoised sample to "
            "the previous timestep (the reference draws z ~ N(0, I) there); pass `noise` of the "
            "sample's shape (None is only allowed at the final step)"
        )


def _checked_path(algorithm: Any, path: Any) -> Any:
    """The path value of a step of ``algorithm`` (TypeError for what is not an algorithm;
    ValueError for LCM on the flow path, where its boundary conditions have no timesteps)."""
    if not isinstance(algorithm, Algorithm):
        raise TypeError(
            f"`algorithm` must be tcd_core.TCD or tcd_core.LCM, got {type(algorithm).__name__}"
        )
    path = as_path(path)
    if algorithm.skip_connection and not isinstance(path, VPPath):
        raise ValueError(
            f"{algorithm!r}'s boundary conditions c_skip/c_out are defined on the VP path's "
            "timesteps, not on the flow path; there, TCD with eta=1 is the flow LCM step "
            "(diffusers' FlowMatchLCMScheduler)"
        )
    return path


def _check_rules(
    algorithm: Algorithm,
    eta: Any,
    final: Any,
    *,
    batch: int | None = None,
    intermediate: Any = None,
) -> None:
    """The algorithm's own arguments: η (TCD; unless s is given) or none of TCD's (LCM), then
    ``final``; with ``batch``, each given once or once per batch element."""
    if not algorithm.has_eta:
        _check_tcd_only(algorithm, eta=eta, intermediate=intermediate)
    elif intermediate is None:
        check_eta(eta)  # None too: a TypeError naming `eta`
        if batch is not None:
            eta_shape = () if is_host_scalar(eta) else tuple(getattr(eta, "shape", np.shape(eta)))
            check_per_batch("eta", eta_shape, batch)
    _check_final(final)
    if batch is not None and not isinstance(final, (bool, np.bool_)):
        final_shape = tuple(final.shape) if is_array(final) else np.shape(final)
        check_per_batch("final", final_shape, batch, "a bool or a 1-D boolean array")


def _check_tcd_only(algorithm: Algorithm, **given: Any) -> None:
    """ValueError for TCD's arguments (η, s) given to an algorithm without η."""
    for name, value in given.items():
        if value is not None:
            raise ValueError(f"`{name}` must be None: {algorithm!r} has no η")


def _check_final(final: Any) -> None:
    """TypeError unless ``final`` is a bool or a boolean array (its shape is checked by the
    step, against the batch)."""
    if isinstance(final, (bool, np.bool_)):  # the common case, and traceable by torch.compile
        return
    if is_host(final):
        ok = np.asarray(final).dtype == np.bool_
    else:
        ok = is_array(final) and namespace(final).isdtype(final.dtype, "bool")
    if not ok:
        raise TypeError(f"`final` must be a bool or a boolean array, got {final!r}")


# ---------------------------------------------------------------------------- TCD, by name
@former_names(prev_timestep="next_timestep")
def step_coefficients(
    alphas_cumprod: Any,
    timestep: Any,
    next_timestep: Any,
    eta: Any = None,
    *,
    intermediate: Any = None,
    ndim: int = 0,
) -> Coefficients:
    """TCD's :func:`coefficients` for the step t → s → p, with s = ⌊f32(1−η)·f32(p)⌋ or given.

    Pass either ``eta`` or ``intermediate`` (s itself). On torch the values are bit-identical to
    the 0-d tensors diffusers computes inside ``TCDScheduler.step``.

    Example:
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> c = step_coefficients(alphas_cumprod(TCDConfig()), 999, 759, eta=0.3)
        >>> round(float(c.sqrt_ratio), 4), float(step_coefficients(
        ...     alphas_cumprod(TCDConfig()), 259, 0, eta=0.3).sqrt_one_minus_ratio)
        (0.4698, 0.0)
    """
    return coefficients(
        TCD, alphas_cumprod, timestep, next_timestep, eta=eta, intermediate=intermediate, ndim=ndim
    )


def tcd_update(
    coefficients: Coefficients,
    model_output: Any,
    sample: Any,
    noise: Any = None,
    config: TCDConfig | None = None,
) -> StepOutput:
    """TCD's :func:`update`: x_s = √ᾱₛ·x̂₀ + √(1−ᾱₛ)·ε̂, x_p = √r·x_s + √(1−r)·z (x_p = x_s when
    ``noise`` is None). No validation (see :func:`tcd_step`).

    Example:
        >>> import numpy as np
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> c = step_coefficients(alphas_cumprod(TCDConfig()), 999, 0, eta=0.3)
        >>> out = tcd_update(c, np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32))
        >>> out.prev_sample.dtype
        dtype('float32')
    """
    return update(TCD, coefficients, model_output, sample, noise, config)


@former_names(prev_timestep="next_timestep")
def tcd_step(
    model_output: Any,
    timestep: Any,
    sample: Any,
    next_timestep: Any,
    alphas_cumprod: Any,
    eta: Any = 0.3,
    noise: Any = None,
    config: TCDConfig | None = None,
) -> StepOutput:
    r"""One TCD step from timestep t to the next timestep p, through s = ⌊(1−η)·p⌋
    (:func:`step` with :data:`~tcd_core.TCD`). With ᾱ = ``alphas_cumprod``:

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
        next_timestep: p, the next timestep (0 after the last step); same forms as ``timestep``.
        alphas_cumprod: the float32 ᾱ table (:func:`~tcd_core.alphas_cumprod`), or a
            :class:`~tcd_core.VPPath`.
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
        >>> for t, p in zip(plan.timesteps, plan.next_timesteps):
        ...     eps = 0.1 * x                       # a model would go here
        ...     z = np.random.default_rng(int(t)).standard_normal(x.shape).astype(np.float32)
        ...     x = tcd_step(eps, int(t), x, int(p), ac, eta=0.3, noise=z, config=cfg).next_sample
        >>> x.dtype, x.shape
        (dtype('float32'), (1, 4, 8, 8))
    """
    return step(
        TCD, model_output, timestep, sample, next_timestep, alphas_cumprod,
        eta=eta, noise=noise, config=config,
    )  # fmt: skip


# ---------------------------------------------------------------------------- LCM, by name
@former_names(prev_timestep="next_timestep")
def lcm_step_coefficients(
    alphas_cumprod: Any,
    timestep: Any,
    next_timestep: Any,
    *,
    final: Any = False,
    timestep_scaling: float = 10.0,
    ndim: int = 0,
) -> Coefficients:
    """LCM's :func:`coefficients` at t towards the next timestep; ``final`` marks the final step
    (:meth:`~tcd_core.Plan.final_steps`).

    Example:
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> c = lcm_step_coefficients(alphas_cumprod(TCDConfig()), 999, 759)
        >>> f"{c.c_skip:.3e}", round(c.c_out, 6), round(float(c.sqrt_alpha_prev), 4)
        ('2.505e-09', 1.0, 0.2285)
    """
    return coefficients(
        LCM, alphas_cumprod, timestep, next_timestep, final=final,
        timestep_scaling=timestep_scaling, ndim=ndim,
    )  # fmt: skip


def lcm_update(
    coefficients: Coefficients,
    model_output: Any,
    sample: Any,
    noise: Any = None,
    config: TCDConfig | None = None,
) -> StepOutput:
    """LCM's :func:`update`: denoised = c_out·x̂₀ + c_skip·x_t; next = √ᾱ_next·denoised +
    √(1−ᾱ_next)·z (denoised when ``noise`` is None). No validation (see :func:`lcm_step`).

    Example:
        >>> import numpy as np
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> c = lcm_step_coefficients(alphas_cumprod(TCDConfig()), 259, 259, final=True)
        >>> out = lcm_update(c, np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32))
        >>> bool((out.prev_sample == out.denoised).all()), out.prev_sample.dtype
        (True, dtype('float32'))
    """
    return update(LCM, coefficients, model_output, sample, noise, config)


@former_names(prev_timestep="next_timestep")
def lcm_step(
    model_output: Any,
    timestep: Any,
    sample: Any,
    next_timestep: Any,
    alphas_cumprod: Any,
    noise: Any = None,
    *,
    final: Any = False,
    config: TCDConfig | None = None,
) -> StepOutput:
    r"""One step of multistep consistency sampling (LCM) from timestep t (:func:`step` with
    :data:`~tcd_core.LCM`). With ᾱ = ``alphas_cumprod`` and τ = t·``config.timestep_scaling``:

    1. x̂₀ from the model output per ``config.prediction_type``
       (:func:`~tcd_core.predict_original_and_noise`), then thresholded or clipped when the config
       says so (the LCM reference honours both, thresholding first).
    2. denoised = c_out·x̂₀ + c_skip·x_t with c_skip = σ_d²/(τ²+σ_d²), c_out = τ/√(τ²+σ_d²),
       σ_d = 0.5 (:func:`~tcd_core.boundary_condition_scalings`): the consistency function
       f(x_t, t), which is the identity at t = 0.
    3. next sample = √ᾱ_next·denoised + √(1−ᾱ_next)·z (forward-noise the estimate to the next
       timestep), except at the final step, where it is denoised (the coefficients are exactly 1
       and 0 there, so noise passed at the final step changes nothing).

    Args:
        model_output: the model's prediction (ε, x₀ or v).
        timestep: t — a Python int, a 0-d integer array, or a 1-D array with one entry per batch
            element.
        sample: x_t; its dtype is the output dtype.
        next_timestep: the next timestep (:attr:`~tcd_core.Plan.next_timesteps`); same forms as
            ``timestep``.
        alphas_cumprod: the float32 ᾱ table (:func:`~tcd_core.alphas_cumprod`), or a
            :class:`~tcd_core.VPPath`.
        noise: z ~ N(0, I) with the sample's shape; None only at the final step.
        final: whether this is the final step (:meth:`~tcd_core.Plan.final_steps`): a bool or
            a per-batch boolean array.
        config: supplies ``prediction_type``, ``timestep_scaling`` and clipping/thresholding.

    Raises:
        ValueError: shapes that do not match, timesteps that are neither non-negative scalars nor
            per-batch vectors, a ``final`` of the wrong shape, ``noise`` None at a host step that
            is not final.

    Example:
        >>> import numpy as np
        >>> from tcd_core import TCDConfig, alphas_cumprod, lcm_step, lcm_timesteps
        >>> cfg = TCDConfig()
        >>> ac, plan = alphas_cumprod(cfg), lcm_timesteps(cfg, 4)
        >>> rng = np.random.default_rng(0)
        >>> x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
        >>> for t, p, last in zip(plan.timesteps, plan.next_timesteps, plan.final_steps()):
        ...     eps = 0.1 * x                       # a model would go here
        ...     z = rng.standard_normal(x.shape).astype(np.float32)
        ...     x = lcm_step(eps, int(t), x, int(p), ac, z, final=bool(last), config=cfg).next_sample
        >>> x.dtype, x.shape
        (dtype('float32'), (1, 4, 8, 8))
    """
    return step(
        LCM, model_output, timestep, sample, next_timestep, alphas_cumprod,
        noise=noise, final=final, config=config,
    )  # fmt: skip
