"""Consistency samplers as values: :data:`TCD` (Algorithm 4) and :data:`LCM` (Algorithm 1).

One step of either sampler at timestep t, towards the plan's next timestep, is

1. (x̂₀, ε̂) from the model output at t (the path's parameterisation);
2. an estimate = ``original``·x̂₀ + ``other``·(ε̂ for TCD, x_t for LCM);
3. the next sample = ``keep``·estimate + ``noise``·z.

The two algorithms differ only in where the coefficients of steps 2 and 3 come from, and in a few
rules of their plans, so each is a value of :class:`Algorithm`, not a family of modules:

* **TCD** (Strategic Stochastic Sampling, Zheng et al. 2024): the estimate is the DDIM jump to the
  intermediate timestep s = ⌊f32(1−η)·f32(p)⌋ (:func:`intermediate_timestep`), and the next
  sample re-noises it from s to p. γ of the paper is η here.
* **LCM** (multistep consistency sampling, Song et al. 2023): the estimate is the consistency
  function c_out·x̂₀ + c_skip·x_t with the boundary conditions at t
  (:func:`~tcd_core.boundary_condition_scalings`), and the next sample noises it to the next
  timestep, except at the final step, which returns it.

The η rules live here too: :func:`check_eta`, :func:`intermediate_timestep` (where the story of
rounding f32(1−η) once is told) and :func:`draws_noise`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._array import (
    device_of,
    has_float64,
    index_dtype,
    is_array,
    is_host,
    is_host_scalar,
    namespace,
)
from ._step_common import former_names

__all__ = [
    "LCM",
    "TCD",
    "Algorithm",
    "check_eta",
    "draws_noise",
    "intermediate_level",
    "intermediate_timestep",
    "lcm_final_step",
]


@dataclass(frozen=True)
class Algorithm:
    """A consistency sampler, as data the plan and the step read (hashable, so a compiled loop can
    take it as a static argument). The two values are :data:`TCD` and :data:`LCM`.

    Attributes:
        name: ``"tcd"`` or ``"lcm"``.
        estimate: the name of the step's estimate in the references' outputs:
            ``"pred_noised_sample"`` (TCD's x_s) or ``"denoised"`` (LCM's consistency output).
        skip_connection: the estimate's second term is the input x_t (LCM's c_skip·x_t) rather
            than the predicted noise ε̂ (TCD's √(1−ᾱ_s)·ε̂).
        has_eta: the step takes η (TCD); LCM has none.
        next_after_last: each plan's next timestep after its last entry: ``"zero"`` (TCD: 0) or
            ``"own"`` (LCM: the last timestep itself, the reference's rule).
        explicit_grid: the distillation grid when ``original_inference_steps`` is passed
            explicitly: ``"range"`` (TCD: ``range(0, ⌊N·strength⌋)``, the reference's quirk) or
            ``"distillation"`` (LCM: ``[k−1, 2k−1, …]`` as for the config's value).
        reference: the diffusers class the algorithm is bit-identical to.
    """

    name: str
    estimate: str
    skip_connection: bool
    has_eta: bool
    next_after_last: str
    explicit_grid: str
    reference: str

    def __repr__(self) -> str:
        return self.name.upper()

    def draws(self, eta: Any, final: Any) -> Any:
        """Whether the reference draws z ~ N(0, I) at a step: TCD where η > 0 and the step is not
        final, LCM wherever the step is not final. ``eta`` and ``final`` may be host values or
        arrays (then the result is an array: no read)."""
        if not self.has_eta:
            return ~final if is_array(final) else not final
        positive = eta > 0
        if is_array(final):
            return positive & ~final
        if is_array(positive):  # a host bool final: `not`, since ~True is -2
            return positive & (not final)
        return bool(positive) and not final


#: Trajectory Consistency Distillation's Strategic Stochastic Sampling (Algorithm 4), and multistep
#: consistency sampling (Algorithm 1 of Consistency Models; diffusers' LCMScheduler): the two values,
#: one row each (fields in :class:`Algorithm`'s order).
TCD = Algorithm("tcd", "pred_noised_sample", False, True, "zero", "range", "TCDScheduler")
LCM = Algorithm("lcm", "denoised", True, False, "own", "distillation", "LCMScheduler")


def lcm_final_step(step_index: int, num_inference_steps: int) -> bool:
    """Whether the step at ``step_index`` is the reference's final step: ``step_index ==
    num_inference_steps − 1`` (for both algorithms; with custom timesteps trimmed by
    ``strength`` the reference keeps the untrimmed count, so no kept step is final). LCM's final
    step returns the denoised sample; neither algorithm draws noise there.

    Example:
        >>> [lcm_final_step(i, 4) for i in range(4)]
        [False, False, False, True]
    """
    return step_index == num_inference_steps - 1


def check_eta(eta: Any) -> None:
    """ValueError unless a host-known η lies in [0, 1]; TypeError unless η is a real number or
    an array of real numbers.

    Python/NumPy numbers, NumPy arrays, lists and tuples are checked (the reference only has a
    bare ``assert``); other arrays (torch, JAX, traced) only by their dtype: their values are
    not read, since that would read the device (and is impossible under ``jax.jit``).

    Example:
        >>> check_eta(0.3)
        >>> check_eta(1.5)
        Traceback (most recent call last):
            ...
        ValueError: `eta` must be in [0, 1], got 1.5
        >>> check_eta("0.3")
        Traceback (most recent call last):
            ...
        TypeError: `eta` must be a real number in [0, 1] or an array of them, got '0.3'
    """
    allowed = "a real number in [0, 1] or an array of them"
    if isinstance(eta, (bool, np.bool_)):
        raise ValueError(f"`eta` must be in [0, 1], got {eta!r}")
    if is_host_scalar(eta):
        if not isinstance(eta, numbers.Real):
            raise TypeError(f"`eta` must be {allowed}, got {eta!r}")
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"`eta` must be in [0, 1], got {eta!r}")
        return
    if isinstance(eta, (list, tuple, np.ndarray)):
        try:
            host = np.asarray(eta)
        except (TypeError, ValueError):
            host = np.asarray(None)
        if host.dtype.kind not in "iuf":
            raise TypeError(f"`eta` must be {allowed}, got {eta!r}")
        if host.size and not np.all((host >= 0) & (host <= 1)):
            raise ValueError(f"`eta` must be in [0, 1], got {eta!r}")
        return
    if not is_array(eta):
        raise TypeError(f"`eta` must be {allowed}, got {eta!r}")
    if not namespace(eta).isdtype(eta.dtype, ("real floating", "integral")):
        raise TypeError(f"`eta` must be a real-valued array, got dtype {eta.dtype}")


def draws_noise(step_index: int, eta: float, num_inference_steps: int) -> bool:
    """Whether the reference draws z ~ N(0, I) at this step: η > 0 and not the last step.

    "Last" means ``step_index == num_inference_steps − 1`` with the reference's (possibly
    untrimmed) ``num_inference_steps``. Where no noise is drawn the re-noising ratio is exactly 1,
    so x_p = x_s with or without noise; this only decides whether a generator advances.

    Example:
        >>> [draws_noise(i, 0.3, 4) for i in range(4)]
        [True, True, True, False]
        >>> draws_noise(0, 0.0, 4)
        False
    """
    try:
        positive = bool(eta > 0)
    except TypeError:
        check_eta(eta)  # names `eta` and what it may be
        raise
    return positive and step_index != num_inference_steps - 1


@former_names(prev_timestep="next_timestep")
def intermediate_timestep(next_timestep: Any, eta: Any = None, *, one_minus_eta: Any = None) -> Any:
    """The intermediate timestep s = ⌊f32(1−η) · f32(p)⌋ of Strategic Stochastic Sampling.

    As in the reference, ``1 − η`` is evaluated in η's own precision (a Python float: double),
    rounded to float32 and multiplied by p in float32. Float64 arithmetic gives a different s for
    some inputs (η = 0.3, p = 90: 63 here, 62 in float64), so this is not ``int((1-eta)*p)``.

    Host inputs (Python/NumPy numbers and arrays) give host int64 results; Array API arrays give
    arrays of the namespace's index dtype on their device, with no host synchronisation. For a
    float32 η array, ``1 − η`` is rounded twice (η itself, then the difference); pass η as a
    Python float or float64 array to match the reference exactly — or, inside a compiled loop
    where η is a traced float32, pass ``one_minus_eta`` = f32(1 − η) computed once on the host
    (``np.float32(1.0 - eta)``) instead of ``eta``.

    Example:
        >>> int(intermediate_timestep(90, 0.3)), int(intermediate_timestep(10, 0.9))
        (63, 1)
        >>> import numpy as np
        >>> int(intermediate_timestep(90, one_minus_eta=np.float32(1.0 - 0.3)))
        63
    """
    return _intermediate(next_timestep, eta, one_minus_eta, floor=True)


def intermediate_level(next_level: Any, eta: Any = None, *, one_minus_eta: Any = None) -> Any:
    """The intermediate σ_s = f32(1−η) · f32(σ_next) of TCD on a continuous-time path (the flow
    path): :func:`intermediate_timestep`'s product, rounded the same way, with no floor. The
    result is float32 (host in, host out).

    Example:
        >>> float(intermediate_level(0.75, 0.5)), float(intermediate_level(0.75, 0.0))
        (0.375, 0.75)
    """
    return _intermediate(next_level, eta, one_minus_eta, floor=False)


def _intermediate(next_timestep: Any, eta: Any, one_minus_eta: Any, floor: bool) -> Any:
    """f32(1−η)·f32(p), floored to the index dtype when ``floor`` (see
    :func:`intermediate_timestep` for the rounding)."""
    if (eta is None) == (one_minus_eta is None):
        raise ValueError("pass exactly one of `eta` and `one_minus_eta`")
    if eta is None:
        return _product(next_timestep, one_minus_eta, floor)
    check_eta(eta)
    if is_host(eta) and (is_host(next_timestep) or not is_host_scalar(eta)):
        # Host η: 1 − η in double precision, rounded once to float32, as the reference does.
        one_minus_host = np.float32(1.0 - np.asarray(eta, dtype=np.float64))
        return _product(next_timestep, one_minus_host, floor)
    xp = namespace(next_timestep, eta)
    device = device_of(eta if is_host(next_timestep) else next_timestep)
    if is_host_scalar(eta):  # with p on a device: rounded there, no NumPy (torch.compile)
        one_minus = xp.asarray(1.0 - float(eta), dtype=xp.float32, device=device)
    else:
        eta = xp.asarray(eta, device=device)
        if eta.dtype == xp.float64 or (eta.dtype != xp.float32 and has_float64(xp, device)):
            one_minus = xp.astype(1.0 - xp.astype(eta, xp.float64), xp.float32)
        else:
            one_minus = 1.0 - xp.astype(eta, xp.float32)
    return _product(next_timestep, one_minus, floor)


def _product(next_timestep: Any, one_minus_eta: Any, floor: bool) -> Any:
    """f32(1−η)·f32(p) from a float32 ``one_minus_eta``, floored to integers when ``floor``;
    host in, host out."""
    if is_host(next_timestep) and is_host(one_minus_eta):
        one_minus = np.asarray(one_minus_eta, dtype=np.float32)
        s = one_minus * np.asarray(next_timestep).astype(np.float32)
        return np.floor(s).astype(np.int64) if floor else s
    device_args = [v for v in (next_timestep, one_minus_eta) if not is_host(v)]
    xp = namespace(*device_args)
    device = device_of(device_args[0])
    if is_host(one_minus_eta):  # float32 values are exact as doubles: no rounding on the way
        one_minus_eta = np.asarray(one_minus_eta, dtype=np.float32).astype(np.float64).tolist()
    one_minus = xp.astype(xp.asarray(one_minus_eta, device=device), xp.float32)
    p = xp.asarray(next_timestep, device=device)
    s = one_minus * xp.astype(p, xp.float32)
    return xp.astype(xp.floor(s), index_dtype(xp, device)) if floor else s
