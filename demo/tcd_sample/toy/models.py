r"""The two exact models of the toy problem: the teacher and the ideal distilled model.

Notation: ᾱ from the scheduler's table, σ = √((1−ᾱ)/ᾱ) and y = x/√ᾱ (DDIM's change of
variables: y = x₀ + σ·ε). In these variables the probability-flow ODE of the VP process is

    dy/dσ = ε*(y, σ) = σ·g(y, σ²),   or, in λ = log σ,   dy/dλ = σ²·g(y, σ²),

with g from :meth:`GaussianMixture.weighted_offset`. In λ the right-hand side is Lipschitz with
constant ≈ 1 away from the boundaries between modes, so a fixed-step RK4 is very accurate.

* **Teacher**: ε*(x_t, t) = E[ε | x_t], the exact ε-prediction (minimum-MSE denoiser). One DDIM
  step with it jumps to the posterior mean E[x₀ | x_t]: few steps blur the mixture.
* **Distilled**: ε̂(x_t, t) such that the DDIM jump from (x_t, t) to timestep 0 lands exactly on
  the probability-flow-ODE solution at ᾱ₀ (solved from the teacher): the ideal consistency model.
  With y₀ = ODE(y_t; σ_t → σ₀), the DDIM jump y₀ = y_t + (σ₀ − σ_t)·ε̂ gives
  ε̂ = (y_t − y₀)/(σ_t − σ₀).

Models are callables ``model(x, t) -> ε`` over the Array API: x has shape (N, 2), t is a Python
int or a host array of N ints; computation runs in x's dtype on x's device.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from .mixture import GaussianMixture

__all__ = [
    "DistilledModel",
    "TeacherModel",
    "epsilon_to_prediction",
    "probability_flow",
    "teacher_epsilon",
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


def probability_flow(
    mixture: GaussianMixture,
    x: Any,
    alpha_from: Any,
    alpha_to: Any,
    substeps: int | None = None,
    max_step: float = 0.1,
) -> Any:
    r"""Solve the probability-flow ODE from ᾱ_from to ᾱ_to with classic RK4 in λ = log σ.

    y = x/√ᾱ obeys dy/dλ = σ²·g(y, σ²); the result is mapped back with x = √ᾱ_to·y. All samples
    take the same number of substeps (vectorised); each sample's step is its own
    (λ_to − λ_from)/substeps.

    Args:
        mixture: the data distribution.
        x: x at ᾱ_from, shape (N, 2).
        alpha_from: ᾱ where x is, a Python float or an (N, 1) array.
        alpha_to: ᾱ to solve to, a Python float or an (N, 1) array.
        substeps: the number of RK4 steps; default ⌈max |Δλ| / max_step⌉ (at least 1).
        max_step: the largest λ step when ``substeps`` is None.

    Example:
        >>> import numpy as np
        >>> from tcd_sample.toy import GaussianMixture
        >>> m = GaussianMixture(((1.0, 0.0),), (0.5,), (1.0,))
        >>> # one Gaussian: the flow is affine, y − μ scales by √((s² + σ_to²)/(s² + σ_from²))
        >>> x = probability_flow(m, np.array([[3.0, 1.0]]), 0.5, 0.9)
        >>> y = np.array([3.0, 1.0]) / np.sqrt(0.5)                     # σ_from² = 1, σ_to² = 1/9
        >>> exact = np.sqrt(0.9) * ([1, 0] + (y - [1, 0]) * np.sqrt((0.25 + 1 / 9) / 1.25))
        >>> bool(np.allclose(x, exact, rtol=1e-7))
        True
    """
    xp = array_api_compat.array_namespace(x)
    lam_from = 0.5 * _log((1 - alpha_from) / alpha_from, xp)
    lam_to = 0.5 * _log((1 - alpha_to) / alpha_to, xp)
    if substeps is None:
        gap = lam_to - lam_from
        span = abs(gap) if isinstance(gap, float) else float(np.max(np.abs(_host(gap))))
        substeps = max(1, math.ceil(span / max_step))
    h = (lam_to - lam_from) / substeps

    def drift(y: Any, lam: Any) -> Any:
        sigma2 = _exp(2 * lam, xp)
        return sigma2 * mixture.weighted_offset(y, sigma2)

    y = x / _sqrt(alpha_from, xp)
    for i in range(substeps):
        lam = lam_from + i * h
        k1 = drift(y, lam)
        k2 = drift(y + (0.5 * h) * k1, lam + 0.5 * h)
        k3 = drift(y + (0.5 * h) * k2, lam + 0.5 * h)
        k4 = drift(y + h * k3, lam + h)
        y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return _sqrt(alpha_to, xp) * y


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


class TeacherModel:
    """The exact ε-prediction of ``mixture`` under the noise schedule ``alphas_cumprod``.

    Example:
        >>> import numpy as np
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> from tcd_sample.toy import TeacherModel, preset
        >>> model = TeacherModel(preset("ring"), alphas_cumprod(TCDConfig()))
        >>> model(np.zeros((3, 2), dtype=np.float32), 999).shape
        (3, 2)
    """

    name = "teacher"

    def __init__(self, mixture: GaussianMixture, alphas_cumprod: Any):
        self.mixture = mixture
        self.table = _host_table(alphas_cumprod)

    def __call__(self, x: Any, t: Any) -> Any:
        return teacher_epsilon(self.mixture, x, _lookup(self.table, t, x))


class DistilledModel(TeacherModel):
    r"""The ideal consistency model: ε̂ whose DDIM jump from (x_t, t) to timestep 0 is exact.

    ε̂ = (y_t − y₀)/(σ_t − σ₀), where y₀ solves the probability-flow ODE from σ_t to σ₀
    (:func:`probability_flow`, RK4 with λ-steps of at most ``max_step``). At t = 0 itself the
    jump is empty and ε̂ is the teacher's ε.

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
    """

    name = "distilled"

    def __init__(self, mixture: GaussianMixture, alphas_cumprod: Any, max_step: float = 0.1):
        super().__init__(mixture, alphas_cumprod)
        self.max_step = float(max_step)

    def flow(self, x: Any, t: Any, substeps: int | None = None) -> Any:
        """x at timestep 0 on the probability-flow-ODE trajectory through (x, t)."""
        a_t, a_0 = _lookup(self.table, t, x), float(self.table[0])
        return probability_flow(self.mixture, x, a_t, a_0, substeps, self.max_step)

    def __call__(self, x: Any, t: Any) -> Any:
        xp = array_api_compat.array_namespace(x)
        a_t, a_0 = _lookup(self.table, t, x), float(self.table[0])
        sigma_t = _sqrt((1 - a_t) / a_t, xp)
        sigma_0 = math.sqrt((1 - a_0) / a_0)
        if isinstance(t, (int, np.integer)) and int(t) == 0:
            return super().__call__(x, t)
        y_t = x / _sqrt(a_t, xp)
        y_0 = self.flow(x, t) / math.sqrt(a_0)
        gap = sigma_t - sigma_0
        if isinstance(gap, float):
            return (y_t - y_0) / gap
        at_zero = gap == 0
        eps = (y_t - y_0) / xp.where(at_zero, xp.ones_like(gap), gap)
        return xp.where(at_zero, super().__call__(x, t), eps)
