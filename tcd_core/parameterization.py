"""Model parameterisations, forward noising and the consistency boundary conditions.

All functions are pure Array API code: no host reads, no branches on array values. Expressions
follow the reference's operation order so torch results are bit-identical.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._array import cast_like, device_of, is_host_scalar, namespace
from ._step_common import check_array, check_index, check_table
from .config import FLOW_PREDICTION, PREDICTION_TYPES

ALL_PREDICTION_TYPES = (*PREDICTION_TYPES, FLOW_PREDICTION)

__all__ = [
    "FRESH",
    "Arithmetic",
    "add_noise",
    "boundary_condition_scalings",
    "get_velocity",
    "original_and_noise_from_roots",
    "parameterise",
    "predict_original_and_noise",
]


def predict_original_and_noise(
    model_output: Any, sample: Any, alpha_prod_t: Any, prediction_type: str = "epsilon"
) -> tuple[Any, Any]:
    """(x̂₀, ε̂) from a model output at noise level ᾱₜ (``alpha_prod_t``, broadcastable).

    * ``epsilon``: x̂₀ = (x − √(1−ᾱ)·ε)/√ᾱ, ε̂ = ε
    * ``sample``: x̂₀ = model output, ε̂ = (x − √ᾱ·x̂₀)/√(1−ᾱ)
    * ``v_prediction``: x̂₀ = √ᾱ·x − √(1−ᾱ)·v, ε̂ = √ᾱ·v + √(1−ᾱ)·x

    Example:
        >>> import numpy as np
        >>> x0, eps = predict_original_and_noise(np.zeros(2), np.ones(2), np.float32(0.25))
        >>> x0.tolist(), eps.tolist()
        ([2.0, 2.0], [0.0, 0.0])
    """
    xp = namespace(model_output, sample)
    alpha_prod_t = xp.asarray(alpha_prod_t) if is_host_scalar(alpha_prod_t) else alpha_prod_t
    return original_and_noise_from_roots(
        model_output, sample, xp.sqrt(alpha_prod_t), xp.sqrt(1 - alpha_prod_t), prediction_type
    )


def original_and_noise_from_roots(
    model_output: Any,
    sample: Any,
    sqrt_alpha_prod_t: Any,
    sqrt_beta_prod_t: Any,
    prediction_type: str = "epsilon",
) -> tuple[Any, Any]:
    """(x̂₀, ε̂) from precomputed √ᾱₜ and √(1−ᾱₜ): the tensor-sized half of
    :func:`predict_original_and_noise`, for loops that compute the 0-d roots once per plan.

    The reference writes some roots as ``x.sqrt()`` and others as ``x ** 0.5``; in torch both are
    the same kernel (checked bit for bit), so one pair of roots serves every parameterisation.

    Example:
        >>> import numpy as np
        >>> x0, eps = original_and_noise_from_roots(np.ones(2), np.ones(2), 0.5, 0.5, "sample")
        >>> x0.tolist(), eps.tolist()
        ([1.0, 1.0], [1.0, 1.0])
    """
    x0, eps, _ = parameterise(
        FRESH, model_output, sample, sqrt_alpha_prod_t, sqrt_beta_prod_t, prediction_type
    )
    return x0, eps


class Arithmetic:
    """How a step's latent-sized operations run. This one, :data:`FRESH`, is plain operators
    (every result a new array; any Array API namespace, traceable).

    The core's formulas (:func:`parameterise`, :func:`tcd_core.update`) are written once, against
    this interface, and name at each operation a temporary *of their own* that is dead
    afterwards (``reuse``; never an input). :data:`FRESH` ignores the hint; an adapter's subclass
    with ``in_place = True`` writes the result into it instead (``tcd_diffusers`` does, with
    torch's ``out=``), which runs the very same operations, in the same order, with fewer
    allocations. ``c`` is a coefficient (0-d, per-batch or a Python number), ``x`` and ``y``
    latent-sized.
    """

    #: Whether results go into the ``reuse`` temporaries (then :func:`tcd_core.update` also
    #: reuses the noise's and x̂₀'s buffers and returns no x̂₀).
    in_place = False

    def mul(self, c: Any, x: Any, reuse: Any = None) -> Any:
        """c·x."""
        return c * x

    def add(self, x: Any, y: Any, reuse: Any = None) -> Any:
        """x + y."""
        return x + y

    def sub(self, x: Any, y: Any, reuse: Any = None) -> Any:
        """x − y."""
        return x - y

    def div(self, x: Any, c: Any, reuse: Any = None) -> Any:
        """x / c."""
        return x / c


#: Plain operators: the arithmetic of every core function unless an adapter passes its own.
FRESH = Arithmetic()


def parameterise(
    ar: Arithmetic,
    model_output: Any,
    sample: Any,
    a: Any,
    b: Any,
    prediction_type: str,
    want_noise: bool = True,
) -> tuple[Any, Any, Any]:
    """(x̂₀, ε̂, spare) from a model output at roots (a, b) = (√ᾱₜ, √(1−ᾱₜ)): the one place the
    parameterisations are written, in the reference's operation order.

    * ``epsilon``: x̂₀ = (x − b·ε)/a, ε̂ = ε
    * ``sample``: x̂₀ = model output, ε̂ = (x − a·x̂₀)/b
    * ``v_prediction``: x̂₀ = a·x − b·v, ε̂ = a·v + b·x
    * ``flow_prediction`` (the flow path's velocity v = ε − x₀, at (a, b) = (1−σ, σ)):
      x̂₀ = x − b·v, ε̂ = x + a·v

    ε̂ is None when not ``want_noise`` (LCM needs x̂₀ alone). ``spare`` is a temporary of the
    formula's own that it no longer needs (or None), which the caller may name as ``reuse``.

    Example:
        >>> import numpy as np
        >>> x0, eps, _ = parameterise(FRESH, np.zeros(2), np.ones(2), 0.5, 0.5, "v_prediction")
        >>> x0.tolist(), eps.tolist()
        ([0.5, 0.5], [0.5, 0.5])
    """
    if prediction_type == "epsilon":
        t = ar.mul(b, model_output)
        t = ar.sub(sample, t, reuse=t)
        return ar.div(t, a, reuse=t), model_output, None
    if prediction_type == "sample":
        if not want_noise:
            return model_output, None, None
        t = ar.mul(a, model_output)
        t = ar.sub(sample, t, reuse=t)
        return model_output, ar.div(t, b, reuse=t), None
    if prediction_type == "v_prediction":
        t = ar.mul(a, sample)
        u = ar.mul(b, model_output)
        x0 = ar.sub(t, u, reuse=t)
        if not want_noise:
            return x0, None, u
        e = ar.mul(a, model_output, reuse=u)
        f = ar.mul(b, sample)
        return x0, ar.add(e, f, reuse=e), f
    if prediction_type == FLOW_PREDICTION:
        u = ar.mul(b, model_output)
        x0 = ar.sub(sample, u, reuse=u)
        if not want_noise:
            return x0, None, None
        e = ar.mul(a, model_output)
        return x0, ar.add(sample, e, reuse=e), None
    raise ValueError(
        f"`prediction_type` must be one of {', '.join(map(repr, ALL_PREDICTION_TYPES))}; "
        f"got {prediction_type!r}"
    )


def _noise_coefficients(alphas_cumprod: Any, timesteps: Any, like: Any, xp: Any) -> tuple[Any, Any]:
    # The reference casts the table to the sample's dtype first, then gathers, then takes powers,
    # and reshapes the (flattened) coefficients to broadcast from the leading axis.
    table = xp.astype(alphas_cumprod, like.dtype)
    if isinstance(timesteps, int):
        timesteps = xp.asarray(timesteps, device=device_of(like))
    t = xp.reshape(xp.asarray(timesteps), (-1,))
    picked = xp.take(table, t, axis=0)
    shape = (picked.shape[0],) + (1,) * (like.ndim - 1)
    sqrt_alpha = xp.reshape(picked**0.5, shape)
    sqrt_one_minus = xp.reshape((1 - picked) ** 0.5, shape)
    return sqrt_alpha, sqrt_one_minus


def add_noise(alphas_cumprod: Any, original_samples: Any, noise: Any, timesteps: Any) -> Any:
    """Forward diffusion q(x_t | x₀): √ᾱₜ·x₀ + √(1−ᾱₜ)·ε, one timestep per batch element.

    Matches diffusers' ``add_noise`` (the table is cast to the samples' dtype before use).

    Example:
        >>> import numpy as np
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> ac = alphas_cumprod(TCDConfig())
        >>> x = add_noise(ac, np.ones((2, 1), np.float32), np.zeros((2, 1), np.float32), np.array([0, 999]))
        >>> x.shape, x.dtype
        ((2, 1), dtype('float32'))
    """
    _check_noising(alphas_cumprod, timesteps, original_samples=original_samples, noise=noise)
    xp = namespace(original_samples, noise)
    a, b = _noise_coefficients(alphas_cumprod, timesteps, original_samples, xp)
    return cast_like(a * original_samples + b * noise, original_samples, xp)


def get_velocity(alphas_cumprod: Any, sample: Any, noise: Any, timesteps: Any) -> Any:
    """The v-prediction target v = √ᾱₜ·ε − √(1−ᾱₜ)·x₀ (diffusers' ``get_velocity``).

    Example:
        >>> import numpy as np
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> v = get_velocity(alphas_cumprod(TCDConfig()), np.ones((1, 2), np.float32),
        ...                  np.ones((1, 2), np.float32), np.array([500]))
        >>> v.shape
        (1, 2)
    """
    _check_noising(alphas_cumprod, timesteps, sample=sample, noise=noise)
    xp = namespace(sample, noise)
    a, b = _noise_coefficients(alphas_cumprod, timesteps, sample, xp)
    return cast_like(a * noise - b * sample, sample, xp)


def _check_noising(alphas_cumprod: Any, timesteps: Any, **arrays: Any) -> None:
    """The arguments of :func:`add_noise` / :func:`get_velocity`: two arrays of one shape (the
    first is the reference), a 1-D table, ``timesteps`` one or one per batch element, host values
    in the table's range (arrays: an integer dtype; their values are not read)."""
    for name, array in arrays.items():
        check_array(name, array)
    (_, reference), *others = arrays.items()
    for name, other in others:
        if tuple(other.shape) != tuple(reference.shape):
            raise ValueError(
                f"`{name}` must have the sample's shape {tuple(reference.shape)}, "
                f"got {tuple(other.shape)}"
            )
    check_index("timesteps", timesteps, check_table(alphas_cumprod))
    count = math.prod(getattr(timesteps, "shape", np.shape(timesteps)))
    batch = reference.shape[0] if reference.ndim else 1
    if count not in (1, batch):
        raise ValueError(
            f"`timesteps` must hold one timestep or one per batch element ({batch}), got {count}"
        )


def boundary_condition_scalings(
    timestep: Any, timestep_scaling: float = 10.0, sigma_data: float = 0.5
) -> tuple[Any, Any]:
    """Consistency-model boundary conditions (c_skip, c_out) at a discrete timestep.

    With τ = t·timestep_scaling and σ_d = ``sigma_data``:
    c_skip = σ_d² / (τ² + σ_d²), c_out = τ / √(τ² + σ_d²), so that
    f(x, t) = c_skip·x + c_out·F(x, t) is the identity at t = 0. Identical to diffusers'
    ``LCMScheduler.get_scalings_for_boundary_condition_discrete``; ``timestep`` may be a Python
    number or an array of any namespace (integer arrays are converted to float32 first, as torch's
    promotion does, so that strict Array API namespaces accept them).

    Example:
        >>> c_skip, c_out = boundary_condition_scalings(0)
        >>> c_skip, c_out
        (1.0, 0.0)
    """
    if not is_host_scalar(timestep):
        xp = namespace(timestep)
        if not xp.isdtype(timestep.dtype, "real floating"):
            # integer timesteps become float32 first, which is what torch's int * float does
            timestep = xp.astype(timestep, xp.float32)
    scaled = timestep * timestep_scaling
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2) ** 0.5
    return c_skip, c_out
