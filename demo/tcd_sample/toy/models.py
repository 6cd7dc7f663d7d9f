r"""The two exact models of the toy problem, the teacher and the ideal distilled model, on either
noise path: the VP path of the scheduler's ᾱ table and the flow-matching path of
:data:`tcd_core.FLOW`.

**The VP path.** Notation: ᾱ from the scheduler's table, σ = √((1−ᾱ)/ᾱ) and y = x/√ᾱ (DDIM's
change of variables: y = x₀ + σ·ε). In these variables the probability-flow ODE of the VP
process is

    dy/dσ = ε*(y, σ) = σ·g(y, σ²),   or, in λ = log σ,   dy/dλ = σ²·g(y, σ²),

with g from :meth:`GaussianMixture.weighted_offset`. In λ the right-hand side is Lipschitz with
constant ≈ 1 away from the boundaries between modes, so a fixed-step RK4 is very accurate. The
models output ε.

**The flow path.** x_σ = (1−σ)·x₀ + σ·ε with σ ∈ [0, 1] (σ = 1 pure noise, σ = 0 the data); its
"timesteps" are σ themselves (the toy takes σ, where real flow models take 1000·σ). The models
output the velocity v = ε − x₀ (``prediction_type="flow_prediction"``). The exact velocity is
v*(x, σ) = E[ε − x₀ | x_σ] (:meth:`GaussianMixture.posterior_mean` with (a, b) = (1−σ, σ)), and
the probability-flow ODE is dx/dσ = v*(x, σ). It has the VP ODE's trajectories (in
y = x/(1−σ), σ_y = σ/(1−σ) it is the same equation), but y and λ are infinite at both ends of
the flow path (σ = 1: y = ε/0; σ = 0: λ = −∞), and a flow plan starts at σ = 1 and ends at
σ = 0 exactly. So :func:`probability_flow` on flow integrates in x, where both ends are
ordinary points, with RK4 in ρ = log(σ + c), c half the smallest component std s: the steps in
σ are ∝ σ + c, fine where the dynamics are fast (σ ≲ s, where |∂v*/∂x| peaks at ≈ 1/(2s)),
coarse near σ = 1, where v* is nearly affine in x.

On either path:

* **Teacher**: the exact posterior-mean prediction, ε*(x_t, t) = E[ε | x_t] on VP (the
  minimum-MSE denoiser), v*(x_σ, σ) on flow. One DDIM step with ε* (one Euler step with v*)
  jumps to the posterior mean E[x₀ | x]: few steps blur the mixture.
* **Distilled**: the ideal consistency model, whose one-step jump from (x, t) to the path's end
  lands exactly on the probability-flow-ODE solution (solved from the teacher). The jump is a
  straight line in the path's straight coordinates (u, τ): (y, σ) on VP, (x, σ) itself on flow.
  So the output is the slope of the chord to the ODE's end point:
  ε̂ = (y_t − y₀)/(σ_t − σ₀) on VP, where the end is timestep 0 (ᾱ₀);
  v̂ = (x_σ − x₀)/(σ − 0) on flow, where the end is σ = 0, the data itself.

Models are callables ``model(x, t) -> output`` over the Array API: x has shape (N, 2); t is a
Python int or a host array of N ints on VP, a Python float σ or a host array of N floats on flow;
computation runs in x's dtype on x's device. ``model.prediction_type`` says what they output.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from tcd_core import FLOW, FLOW_PREDICTION, FlowPath
from tcd_core._step_common import former_names

from .mixture import GaussianMixture

__all__ = [
    "DistilledModel",
    "TeacherModel",
    "epsilon_to_prediction",
    "probability_flow",
    "teacher_epsilon",
    "teacher_velocity",
    "velocity_to_prediction",
]


def _host_table(alphas_cumprod: Any) -> np.ndarray:
    if array_api_compat.is_torch_array(alphas_cumprod):
        alphas_cumprod = alphas_cumprod.detach().cpu()
    table = np.asarray(alphas_cumprod, dtype=np.float64)
    if table.ndim != 1 or not np.all((table > 0) & (table < 1)):
        raise ValueError(
            "the toy models need 0 < ᾱ_t < 1 at every timestep (a zero-terminal-SNR schedule "
            "has ᾱ = 0 at the last timestep, where ε and x are the same thing)"
        )
    return table


def _lookup(table: np.ndarray, t: Any, like: Any) -> Any:
    """ᾱ_t as a Python float (scalar t) or an (N, 1) array in ``like``'s namespace."""
    if isinstance(t, (int, np.integer)):
        return float(table[int(t)])
    xp = array_api_compat.array_namespace(like)
    values = table[np.asarray(t, dtype=np.int64)].reshape(-1, 1)
    return xp.asarray(values, dtype=like.dtype, device=array_api_compat.device(like))


def _sqrt(v: Any, xp: Any) -> Any:
    return math.sqrt(v) if isinstance(v, float) else xp.sqrt(v)


def teacher_epsilon(mixture: GaussianMixture, x: Any, alpha_bar: Any) -> Any:
    r"""The exact ε-prediction E[ε | x_t] = σ·g(x_t/√ᾱ, σ²) with σ² = (1−ᾱ)/ᾱ.

    Args:
        mixture: the data distribution.
        x: x_t, shape (N, 2), any Array API namespace.
        alpha_bar: ᾱ_t, a Python float or an (N, 1) array (0 < ᾱ < 1).

    Example:
        >>> import numpy as np
        >>> from tcd_sample.toy import GaussianMixture
        >>> m = GaussianMixture(((0.0, 0.0),), (1.0,), (1.0,))   # x_t ~ N(0, I): E[ε|x] = √(1−ᾱ)·x
        >>> teacher_epsilon(m, np.array([[2.0, -1.0]]), 0.36).round(6).tolist()
        [[1.6, -0.8]]
    """
    xp = array_api_compat.array_namespace(x)
    sqrt_a = _sqrt(alpha_bar, xp)
    sigma2 = (1 - alpha_bar) / alpha_bar
    return _sqrt(sigma2, xp) * mixture.weighted_offset(x / sqrt_a, sigma2)


@former_names(alpha_from="start", alpha_to="end")
def probability_flow(
    mixture: GaussianMixture,
    x: Any,
    start: Any,
    end: Any,
    substeps: int | None = None,
    max_step: float | None = None,
    *,
    path: Any = None,
) -> Any:
    r"""Solve the probability-flow ODE of ``mixture`` on ``path`` from the level ``start`` to the
    level ``end`` with classic RK4. All samples take the same number of substeps (vectorised);
    each sample's step is its own (u_end − u_start)/substeps in the path's ODE variable u.

    * **VP** (``path`` None, an ᾱ table or a :class:`~tcd_core.VPPath`; the levels are ᾱ):
      y = x/√ᾱ obeys dy/dλ = σ²·g(y, σ²) in u = λ = log σ; the result is mapped back with
      x = √ᾱ_end·y.
    * **Flow** (:data:`tcd_core.FLOW`; the levels are σ ∈ [0, 1]): dx/dσ = v*(x, σ), integrated
      in x itself with u = ρ = log(σ + c), c = half the smallest component std (see the module
      docstring), as dx/dρ = (σ + c)·v*(x, σ) with σ = e^ρ − c. Both ends of the path are
      ordinary points: σ = 1 (pure noise) and σ = 0 (the data).

    Args:
        mixture: the data distribution.
        x: x at ``start``, shape (N, 2).
        start: the level where x is, a Python float or an (N, 1) array.
        end: the level to solve to, a Python float or an (N, 1) array.
        substeps: the number of RK4 steps; default ⌈max |Δu| / max_step⌉ (at least 1).
        max_step: the largest step in u when ``substeps`` is None; default 0.1 (VP) or 0.05
            (flow: 48–66 steps from σ = 1 to 0, within 6e-4 of a 20x finer solve from any σ on
            every preset).
        path: the noise path, as above.

    Example:
        >>> import numpy as np
        >>> from tcd_core import FLOW
        >>> from tcd_sample.toy import GaussianMixture
        >>> m = GaussianMixture(((1.0, 0.0),), (0.5,), (1.0,))
        >>> # one Gaussian: the flow is affine, y − μ scales by √((s² + σ_to²)/(s² + σ_from²))
        >>> x = probability_flow(m, np.array([[3.0, 1.0]]), 0.5, 0.9)
        >>> y = np.array([3.0, 1.0]) / np.sqrt(0.5)                     # σ_from² = 1, σ_to² = 1/9
        >>> exact = np.sqrt(0.9) * ([1, 0] + (y - [1, 0]) * np.sqrt((0.25 + 1 / 9) / 1.25))
        >>> bool(np.allclose(x, exact, rtol=1e-7))
        True
        >>> # on flow, x − (1−σ)·μ scales with the marginal's std √((1−σ)²·s² + σ²)
        >>> x = probability_flow(m, np.array([[3.0, 1.0]]), 1.0, 0.0, path=FLOW)  # noise...
        >>> exact = np.array([1.0, 0.0]) + 0.5 * np.array([3.0, 1.0])          # ...to the data
        >>> bool(np.allclose(x, exact, rtol=0, atol=1e-6))
        True
    """
    xp = array_api_compat.array_namespace(x)
    if isinstance(path, FlowPath):
        c = 0.5 * min(mixture.stds)

        def flow_drift(y: Any, rho: Any) -> Any:
            scale = _exp(rho, xp)  # σ + c
            return scale * teacher_velocity(mixture, y, scale - c)

        step = _FLOW_MAX_STEP if max_step is None else max_step
        u_start, u_end = _log(start + c, xp), _log(end + c, xp)
        return _rk4(flow_drift, x, u_start, u_end, substeps, step)

    def vp_drift(y: Any, lam: Any) -> Any:
        sigma2 = _exp(2 * lam, xp)
        return sigma2 * mixture.weighted_offset(y, sigma2)

    step = _VP_MAX_STEP if max_step is None else max_step
    lam_start = 0.5 * _log((1 - start) / start, xp)
    lam_end = 0.5 * _log((1 - end) / end, xp)
    y = _rk4(vp_drift, x / _sqrt(start, xp), lam_start, lam_end, substeps, step)
    return _sqrt(end, xp) * y


#: The ODE's default largest steps: in λ = log σ on VP, in ρ = log(σ + c) on flow.
_VP_MAX_STEP = 0.1
_FLOW_MAX_STEP = 0.05


def _rk4(
    drift: Callable[[Any, Any], Any], y: Any, start: Any, end: Any, substeps: Any, max_step: float
) -> Any:
    """Classic RK4 for dy/du = drift(y, u) from u = ``start`` to ``end`` (Python floats or
    (N, 1) arrays): every sample takes the same number of substeps, each its own step
    (end − start)/substeps; ``substeps`` None is ⌈max |end − start| / max_step⌉ (at least 1)."""
    if substeps is None:
        gap = end - start
        span = abs(gap) if isinstance(gap, float) else float(np.max(np.abs(_host(gap))))
        substeps = max(1, math.ceil(span / max_step))
    h = (end - start) / substeps
    for i in range(substeps):
        u = start + i * h
        k1 = drift(y, u)
        k2 = drift(y + (0.5 * h) * k1, u + 0.5 * h)
        k3 = drift(y + (0.5 * h) * k2, u + 0.5 * h)
        k4 = drift(y + h * k3, u + h)
        y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def _log(v: Any, xp: Any) -> Any:
    return math.log(v) if isinstance(v, float) else xp.log(v)


def _exp(v: Any, xp: Any) -> Any:
    return math.exp(v) if isinstance(v, float) else xp.exp(v)


def _host(a: Any) -> np.ndarray:
    if array_api_compat.is_torch_array(a):
        a = a.detach().cpu()
    return np.asarray(a)


def epsilon_to_prediction(eps: Any, x: Any, alpha_bar: Any, prediction_type: str) -> Any:
    """Rewrite an ε-prediction at ᾱ_t as the output a ``prediction_type`` model would give.

    * ``epsilon``: ε
    * ``sample``: x̂₀ = (x − √(1−ᾱ)·ε)/√ᾱ
    * ``v_prediction``: v = √ᾱ·ε − √(1−ᾱ)·x̂₀

    :func:`tcd_core.predict_original_and_noise` inverts each of them (up to rounding).

    Example:
        >>> import numpy as np
        >>> x, eps = np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]])
        >>> epsilon_to_prediction(eps, x, 0.64, "sample").round(6).tolist()      # (x − 0.6·ε)/0.8
        [[0.875, -0.375]]
    """
    if prediction_type == "epsilon":
        return eps
    xp = array_api_compat.array_namespace(x)
    sqrt_a, sqrt_b = _sqrt(alpha_bar, xp), _sqrt(1 - alpha_bar, xp)
    x0 = (x - sqrt_b * eps) / sqrt_a
    if prediction_type == "sample":
        return x0
    if prediction_type == "v_prediction":
        return sqrt_a * eps - sqrt_b * x0
    raise ValueError(
        f"`prediction_type` must be 'epsilon', 'sample' or 'v_prediction'; got {prediction_type!r}"
    )


def teacher_velocity(mixture: GaussianMixture, x: Any, sigma: Any) -> Any:
    r"""The exact velocity on the flow path, v*(x_σ, σ) = E[ε − x₀ | x_σ] for
    x_σ = (1−σ)·x₀ + σ·ε (:meth:`GaussianMixture.posterior_mean` at (a, b) = (1−σ, σ)).

    Finite on all of [0, 1]: v*(x, 1) = x − E[x₀] (the mixture's mean) and v*(x, 0) = −x.

    Args:
        mixture: the data distribution.
        x: x_σ, shape (N, 2), any Array API namespace.
        sigma: σ, a Python float or an (N, 1) array, in [0, 1].

    Example:
        >>> import numpy as np
        >>> from tcd_sample.toy import GaussianMixture
        >>> m = GaussianMixture(((0.0, 0.0),), (1.0,), (1.0,))  # x_σ ~ N(0, ((1−σ)² + σ²)·I)
        >>> x, s = np.array([[2.0, -1.0]]), 0.25          # v* = (2σ − 1)·x/((1−σ)² + σ²)
        >>> teacher_velocity(m, x, s).round(6).tolist()
        [[-1.6, 0.8]]
    """
    return mixture.posterior_mean(x, 1 - sigma, sigma, of=(-1.0, 1.0))


def velocity_to_prediction(v: Any, x: Any, sigma: Any, prediction_type: str) -> Any:
    """Rewrite a flow velocity v = ε − x₀ at σ as the output a ``prediction_type`` model would
    give on the flow path x = (1−σ)·x₀ + σ·ε:

    * ``flow_prediction``: v
    * ``sample``: x̂₀ = x − σ·v
    * ``epsilon``: ε = x + (1−σ)·v

    :func:`tcd_core.parameterise` inverts each of them (``epsilon`` only where σ < 1: it divides
    by 1 − σ). The VP path's ``v_prediction`` is not the flow velocity: ValueError.

    Example:
        >>> import numpy as np
        >>> x, v = np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]])
        >>> velocity_to_prediction(v, x, 0.25, "sample").round(6).tolist()      # x − 0.25·v
        [[0.875, -0.125]]
    """
    if prediction_type == FLOW_PREDICTION:
        return v
    if prediction_type == "sample":
        return x - sigma * v
    if prediction_type == "epsilon":
        return x + (1 - sigma) * v
    raise ValueError(
        "`prediction_type` on the flow path must be 'flow_prediction', 'sample' or 'epsilon'; "
        f"got {prediction_type!r}"
    )


@dataclasses.dataclass(frozen=True)
class _View:
    """The models' view of a path (private): what its levels are, what the model outputs, where
    the path ends, the exact output and ODE of a mixture on it, and the straight coordinates
    (u, τ) in which its DDIM/Euler jump is a straight line."""

    prediction_type: str
    max_step: float  # the ODE's largest step (λ on VP, ρ on flow)
    end: float  # the level at the path's end
    level: Callable[[Any, Any], Any]  # (t, like) -> the level at t
    at_end: Callable[[Any], bool]  # t -> whether t is a host scalar at the path's end
    exact: Callable[..., Any]  # (mixture, x, level) -> the exact output
    solve: Callable[..., Any]  # (mixture, x, start, end, substeps, max_step) -> x at end
    straight: Callable[[Any, Any, Any], tuple[Any, Any]]  # (x, level, xp) -> (u, τ)
    table: np.ndarray | None = None  # the host float64 ᾱ table (VP)


def _vp_view(alphas_cumprod: Any) -> _View:
    """The VP path over an ᾱ table: levels are ᾱ, the output ε, the end timestep 0, the straight
    coordinates (y, σ) = (x/√ᾱ, √((1−ᾱ)/ᾱ))."""
    table = _host_table(alphas_cumprod)
    return _View(
        prediction_type="epsilon",
        max_step=_VP_MAX_STEP,
        end=float(table[0]),
        level=functools.partial(_lookup, table),
        at_end=lambda t: isinstance(t, (int, np.integer)) and int(t) == 0,
        exact=teacher_epsilon,
        solve=probability_flow,
        straight=lambda x, level, xp: (x / _sqrt(level, xp), _sqrt((1 - level) / level, xp)),
        table=table,
    )


def _flow_level(sigma: Any, like: Any) -> Any:
    """σ as a Python float (a host scalar) or an (N, 1) array in ``like``'s namespace."""
    if isinstance(sigma, (int, float, np.integer, np.floating)):
        value = float(sigma)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"σ must be in [0, 1] on the flow path, got {sigma!r}")
        return value
    host = np.asarray(_host(sigma), dtype=np.float64).reshape(-1, 1)
    if not np.all((host >= 0) & (host <= 1)):
        raise ValueError(f"σ must be in [0, 1] on the flow path, got {host.ravel().tolist()}")
    xp = array_api_compat.array_namespace(like)
    return xp.asarray(host, dtype=like.dtype, device=array_api_compat.device(like))


#: The flow path: levels are σ, the output the velocity, the end σ = 0, the straight
#: coordinates (x, σ) themselves.
_FLOW_VIEW = _View(
    prediction_type=FLOW_PREDICTION,
    max_step=_FLOW_MAX_STEP,
    end=0.0,
    level=_flow_level,
    at_end=lambda sigma: (
        isinstance(sigma, (int, float, np.integer, np.floating)) and float(sigma) == 0.0
    ),
    exact=teacher_velocity,
    solve=functools.partial(probability_flow, path=FLOW),
    straight=lambda x, level, xp: (x, level),
)


def _view(path: Any) -> _View:
    """The models' view of ``path``: :data:`tcd_core.FLOW`, or an ᾱ table (the VP path)."""
    return _FLOW_VIEW if isinstance(path, FlowPath) else _vp_view(path)


class TeacherModel:
    """The exact posterior-mean prediction of ``mixture`` on ``path``: ε*(x_t, t) = E[ε | x_t] on
    the VP path of an ᾱ table (``alphas_cumprod``), v*(x_σ, σ) = E[ε − x₀ | x_σ] on
    :data:`tcd_core.FLOW` (then t is σ).

    Attributes:
        prediction_type: what the model outputs, ``"epsilon"`` (VP) or ``"flow_prediction"``.
        table: the host float64 ᾱ table (VP), None on the flow path.

    Example:
        >>> import numpy as np
        >>> from tcd_core import FLOW, TCDConfig, alphas_cumprod
        >>> from tcd_sample.toy import TeacherModel, preset
        >>> model = TeacherModel(preset("ring"), alphas_cumprod(TCDConfig()))
        >>> model(np.zeros((3, 2), dtype=np.float32), 999).shape
        (3, 2)
        >>> flow = TeacherModel(preset("ring"), FLOW)      # σ = 1: v* = x − E[x₀] = x here
        >>> flow(np.ones((1, 2)), 1.0).round(6).tolist(), flow.prediction_type
        ([[1.0, 1.0]], 'flow_prediction')
    """

    name = "teacher"

    def __init__(self, mixture: GaussianMixture, path: Any):
        self.mixture = mixture
        self._path = _view(path)
        self.table = self._path.table
        self.prediction_type = self._path.prediction_type

    def __call__(self, x: Any, t: Any) -> Any:
        return self._path.exact(self.mixture, x, self._path.level(t, x))


class DistilledModel(TeacherModel):
    r"""The ideal consistency model: the output whose one-step jump from (x, t) to the path's end
    is exact.

    VP: ε̂ = (y_t − y₀)/(σ_t − σ₀), where y₀ solves the probability-flow ODE from σ_t to σ₀
    (:func:`probability_flow`, RK4 with λ-steps of at most ``max_step``, 0.1 by default): the
    DDIM jump to timestep 0 lands on it. Flow: v̂ = (x_σ − x₀)/σ, where x₀ solves the ODE from σ
    to 0 (:func:`probability_flow` on flow, ρ-steps of at most ``max_step``, 0.05 by default): the Euler jump to
    σ = 0 lands on it. At the end itself (t = 0, σ = 0) the jump is empty and the output is the
    teacher's.

    Example:
        >>> import numpy as np
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> from tcd_sample.toy import DistilledModel, preset
        >>> ac = alphas_cumprod(TCDConfig())
        >>> model = DistilledModel(preset("ring"), ac)
        >>> x = np.random.default_rng(0).standard_normal((5, 2))
        >>> eps = model(x, 999)
        >>> a_t, a_0 = float(ac[999]), float(ac[0])
        >>> x0_hat = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)           # DDIM jump to t = 0
        >>> jump = np.sqrt(a_0) * x0_hat + np.sqrt(1 - a_0) * eps
        >>> bool(np.allclose(jump, model.flow(x, 999), atol=1e-12))
        True
        >>> from tcd_core import FLOW
        >>> flow = DistilledModel(preset("ring"), FLOW)
        >>> v = flow(x, 0.75)                                    # Euler jump from σ = 0.75 to 0
        >>> bool(np.allclose(x - 0.75 * v, flow.flow(x, 0.75), atol=1e-12))
        True
    """

    name = "distilled"

    def __init__(self, mixture: GaussianMixture, path: Any, max_step: float | None = None):
        super().__init__(mixture, path)
        self.max_step = float(self._path.max_step if max_step is None else max_step)

    def flow(self, x: Any, t: Any, substeps: int | None = None) -> Any:
        """x at the path's end (timestep 0, or σ = 0) on the probability-flow-ODE trajectory
        through (x, t)."""
        path = self._path
        return path.solve(self.mixture, x, path.level(t, x), path.end, substeps, self.max_step)

    def __call__(self, x: Any, t: Any) -> Any:
        path = self._path
        if path.at_end(t):
            return super().__call__(x, t)
        xp = array_api_compat.array_namespace(x)
        u_t, tau_t = path.straight(x, path.level(t, x), xp)
        u_0, tau_0 = path.straight(self.flow(x, t), path.end, xp)
        gap = tau_t - tau_0
        if isinstance(gap, float):
            return (u_t - u_0) / gap
        at_end = gap == 0
        out = (u_t - u_0) / xp.where(at_end, xp.ones_like(gap), gap)
        return xp.where(at_end, super().__call__(x, t), out)
