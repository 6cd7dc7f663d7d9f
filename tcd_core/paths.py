"""Noise paths as values: how a timestep maps to the mixture x_t = a_t·x₀ + b_t·ε.

A path gives a step these things, each an Array API computation with no host read (``xp`` and
``device``, from :meth:`~VPPath.namespace`, are looked up once per step):

* :meth:`~VPPath.level`: the path's value at a timestep (0-d for a scalar timestep,
  ``(B, 1, …, 1)`` for one timestep per batch element);
* :meth:`~VPPath.roots`: (a, b) at a level, the weights of x₀ and ε;
* :meth:`~VPPath.transition`: (keep, noise) of the forward transition from one level to a later
  (noisier) one, x_to = keep·x_from + noise·z;
* :meth:`~VPPath.intermediate`: TCD's intermediate timestep s between the next timestep p and
  the clean end, s = (1−η)·p in the path's own time;
* :meth:`~VPPath.check` and :meth:`~VPPath.check_prediction`: the host checks of a step's
  timesteps and prediction type, at the API boundary.

Two paths ship:

* :class:`VPPath`, the variance-preserving path of SD/SDXL over the ᾱ table, timesteps are
  integer indices into it. Its transition is written in the references' ratio form, keep =
  √(ᾱ_to/ᾱ_from), noise = √(1 − ᾱ_to/ᾱ_from), because that is diffusers' order of operations and
  bit-identity depends on it; s = ⌊f32(1−η)·p⌋.
* :class:`FlowPath` (:data:`FLOW`), the rectified-flow path of FLUX, SD3 and Wan, x_σ =
  (1−σ)·x₀ + σ·ε; its "timesteps" are the σ themselves (floats in [0, 1]), s = f32(1−η)·σ_next
  with no floor, and the transition is the general form keep = a_to/a_from, noise =
  √(b_to² − keep²·b_from²).

A new path is a new class with these methods; :func:`~tcd_core.coefficients`, the update and
every adapter take it as it is.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np

from ._array import device_of, gather, is_array, is_host, is_host_scalar, namespace
from ._step_common import as_index, check_index, check_indices, check_order
from .algorithms import intermediate_level, intermediate_timestep
from .config import FLOW_PREDICTION, PREDICTION_TYPES

__all__ = ["FLOW", "FLOW_PREDICTION_TYPES", "FlowPath", "VPPath", "as_path"]

#: The prediction types a step on the flow path takes: the velocity, and ε or x̂₀ through its
#: (a, b) = (1−σ, σ) (the VP path's are :data:`~tcd_core.PREDICTION_TYPES`).
FLOW_PREDICTION_TYPES = (FLOW_PREDICTION, "epsilon", "sample")


class VPPath(NamedTuple):
    """The variance-preserving path x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε over a float32 ᾱ table
    (:func:`~tcd_core.alphas_cumprod`; a NamedTuple, hence a JAX pytree).

    Example:
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> path = VPPath(alphas_cumprod(TCDConfig()))
        >>> xp, device = path.namespace()
        >>> a, b = path.roots(path.level(999, 0, xp, device), xp)
        >>> round(float(a), 4), round(float(b), 4)
        (0.0683, 0.9977)
    """

    alphas_cumprod: Any

    def namespace(self, *hints: Any) -> tuple[Any, Any]:
        """(the Array API namespace, the device) of the path's table: looked up once per step
        and passed to the other methods (the lookup costs more than a 0-d operation). The
        ``hints`` (the step's other arrays) are not needed: the table decides."""
        table = self.alphas_cumprod
        return namespace(table), device_of(table)

    def check(self, timestep: Any, next_timestep: Any) -> None:
        """The host checks of a step's timesteps: integers indexing the table, the next one not
        above the current one (:func:`~tcd_core._step_common.check_indices`)."""
        check_indices(self.alphas_cumprod, timestep, next_timestep)

    def check_intermediate(self, intermediate: Any, next_timestep: Any) -> None:
        """The host checks of a given intermediate timestep s: an index, s ≤ p."""
        check_index("intermediate", intermediate, int(self.alphas_cumprod.shape[0]))
        check_order("intermediate", intermediate, "next_timestep", next_timestep)

    def check_prediction(self, prediction_type: str) -> None:
        """ValueError for the flow path's velocity, which has no meaning on this path."""
        _check_prediction(prediction_type, PREDICTION_TYPES, "the VP path (an ᾱ table)")

    def level(self, timestep: Any, ndim: int, xp: Any, device: Any) -> Any:
        """ᾱ at ``timestep`` (an int, or an integer array given once or once per batch element;
        host arrays move to the table's namespace and device), shaped to broadcast against an
        array of rank ``ndim``."""
        return gather(self.alphas_cumprod, as_index(timestep, xp, device), ndim, xp)

    @staticmethod
    def intermediate(next_timestep: Any, eta: Any) -> Any:
        """s = ⌊f32(1−η)·f32(p)⌋ (:func:`~tcd_core.intermediate_timestep`)."""
        return intermediate_timestep(next_timestep, eta)

    @staticmethod
    def roots(level: Any, xp: Any) -> tuple[Any, Any]:
        """(a, b) = (√ᾱ, √(1−ᾱ)) at ``level`` = ᾱ."""
        return xp.sqrt(level), xp.sqrt(1 - level)

    @staticmethod
    def transition(level_from: Any, level_to: Any, xp: Any) -> tuple[Any, Any]:
        """(keep, noise) = (√r, √(1−r)) with r = ᾱ_to/ᾱ_from, the references' ratio form."""
        return VPPath.roots(level_to / level_from, xp)


class FlowPath(NamedTuple):
    """The rectified-flow path x_σ = (1−σ)·x₀ + σ·ε of flow-matching models (FLUX, SD3, Wan): a
    value with no table, since its level is σ itself (a NamedTuple with no fields, hence a JAX
    pytree with no leaves; :data:`FLOW` is the instance).

    A step's ``timestep`` and ``next_timestep`` on this path are σ and σ_next (host floats in
    [0, 1], or float arrays, given once or once per batch element), not the model's time
    1000·σ. The model predicts the velocity v = ε − x₀ (``"flow_prediction"``, diffusers' name,
    the default on this path); ``"epsilon"`` and ``"sample"`` work too, through the path's
    (a, b) = (1−σ, σ).

    Example:
        >>> xp, device = FLOW.namespace()
        >>> keep, noise = FLOW.transition(FLOW.level(0.0, 0, xp, device),
        ...                               FLOW.level(0.5, 0, xp, device), xp)
        >>> float(keep), float(noise)
        (0.5, 0.5)
    """

    @staticmethod
    def namespace(*hints: Any) -> tuple[Any, Any]:
        """(namespace, device) of the first array among ``hints`` (the step's σ, then its
        sample), NumPy's when all are host values."""
        for hint in hints:
            if hint is not None and not is_host(hint):
                return namespace(hint), device_of(hint)
        return namespace(np.empty(0, np.float32)), None

    @staticmethod
    def check(timestep: Any, next_timestep: Any) -> None:
        """Host σ must be real numbers in [0, 1] with σ_next ≤ σ (flow sampling runs from noise
        to data); σ arrays must have a real floating dtype (their values are not read)."""
        _check_sigma("timestep", timestep)
        _check_sigma("next_timestep", next_timestep)
        check_order("next_timestep", next_timestep, "timestep", timestep)

    @staticmethod
    def check_intermediate(intermediate: Any, next_timestep: Any) -> None:
        """The host checks of a given intermediate σ_s: a σ, σ_s ≤ σ_next."""
        _check_sigma("intermediate", intermediate)
        check_order("intermediate", intermediate, "next_timestep", next_timestep)

    def check_prediction(self, prediction_type: str) -> None:
        """ValueError for the VP path's v-prediction, which is not the flow velocity."""
        _check_prediction(prediction_type, FLOW_PREDICTION_TYPES, "the flow path")

    @staticmethod
    def level(sigma: Any, ndim: int, xp: Any, device: Any) -> Any:
        """σ as a float32 array of the step's namespace: 0-d for a scalar, ``(B, 1, …, 1)`` for
        one σ per batch element (a float32 array passes through untouched)."""
        if is_host(sigma):
            sigma = xp.asarray(np.asarray(sigma, dtype=np.float32), device=device)
        elif sigma.dtype != xp.float32:
            sigma = xp.astype(sigma, xp.float32)
        if sigma.ndim == 0:
            return sigma
        return xp.reshape(sigma, (sigma.shape[0],) + (1,) * (ndim - 1))

    @staticmethod
    def intermediate(next_sigma: Any, eta: Any) -> Any:
        """σ_s = f32(1−η)·σ_next (no floor: flow time is continuous;
        :func:`~tcd_core.intermediate_level`)."""
        return intermediate_level(next_sigma, eta)

    @staticmethod
    def roots(level: Any, xp: Any) -> tuple[Any, Any]:
        """(a, b) = (1−σ, σ) at ``level`` = σ."""
        return 1 - level, level

    @staticmethod
    def transition(level_from: Any, level_to: Any, xp: Any) -> tuple[Any, Any]:
        """The forward transition from σ_from to σ_to ≥ σ_from: keep = (1−σ_to)/(1−σ_from) and
        noise = √(σ_to² − keep²·σ_from²), computed as √((σ_to − σ_from)·(σ_to + keep·σ_from) /
        (1 − σ_from)), the same number without the cancellation of the difference of squares
        (which costs small η most of float32's digits). Exactly (1, 0) when the levels are equal,
        and (1−σ_to, σ_to) from σ_from = 0 (√(σ²) is σ in binary floating point), so η = 0 is
        the Euler step and η = 1 the stochastic one, bit for bit."""
        keep = (1 - level_to) / (1 - level_from)
        spread = (level_to - level_from) * (level_to + keep * level_from) / (1 - level_from)
        # Equal levels at σ = 1 (a plan that repeats σ = 1) divide 0 by 0: the identity there,
        # as everywhere else levels are equal.
        same = level_from == level_to
        one = xp.ones_like(keep)
        return xp.where(same, one, keep), xp.where(same, xp.zeros_like(spread), xp.sqrt(spread))


#: The flow-matching path (the only value of :class:`FlowPath`).
FLOW = FlowPath()


def as_path(path: Any) -> VPPath | FlowPath:
    """A path value: a :class:`VPPath` or :class:`FlowPath` as it is, an ᾱ table wrapped (the
    steps' tables are checked before, by :func:`~tcd_core._step_common.check_table`)."""
    return path if isinstance(path, (VPPath, FlowPath)) else VPPath(path)


def _check_prediction(prediction_type: str, allowed: tuple[str, ...], where: str) -> None:
    if prediction_type not in allowed:
        raise ValueError(
            f"`prediction_type` {prediction_type!r} has no meaning on {where}: use one of "
            f"{', '.join(map(repr, allowed))}"
        )


def _check_sigma(name: str, value: Any) -> None:
    """A σ of the flow path: host numbers in [0, 1] (ValueError; TypeError for other types),
    arrays of a real floating dtype (TypeError; values not read)."""
    allowed = "a σ in [0, 1] (the flow path's level, not the model's time 1000·σ)"
    if is_host_scalar(value):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"`{name}` must be {allowed}, got {value!r}")
        if not (math.isfinite(float(value)) and 0.0 <= float(value) <= 1.0):
            raise ValueError(f"`{name}` must be {allowed}, got {value!r}")
        return
    if isinstance(value, (list, tuple, np.ndarray)):
        host = np.asarray(value)
        if host.dtype.kind != "f":
            raise TypeError(f"`{name}` must be {allowed} or a float array, got dtype {host.dtype}")
        if host.size and not np.all((host >= 0) & (host <= 1)):
            raise ValueError(f"`{name}` must be {allowed}, got {host.tolist()}")
        return
    if not is_array(value) or not namespace(value).isdtype(value.dtype, "real floating"):
        raise TypeError(f"`{name}` must be {allowed} or a float array, got {value!r}")
