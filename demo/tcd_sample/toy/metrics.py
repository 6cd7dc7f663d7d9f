r"""How close are samples to the truth? Sliced Wasserstein distance (SW₁) and shares per component.

Both are Array API code (any backend). ``tcd-sample`` evaluates them on host NumPy copies so
the numbers it prints do not depend on the backend's sort or reduction order.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from ._backend import to_numpy
from .mixture import GaussianMixture

__all__ = ["component_shares", "sliced_wasserstein"]


def _quantile_rows(sorted_proj: Any, m: int, xp: Any) -> Any:
    n = sorted_proj.shape[0]
    if n == m:
        return sorted_proj
    idx = np.floor((np.arange(m) + 0.5) * n / m).astype(np.int64)
    dev = array_api_compat.device(sorted_proj)
    return xp.take(sorted_proj, xp.asarray(idx, device=dev), axis=0)


def sliced_wasserstein(a: Any, b: Any, num_directions: int = 128, p: int = 1) -> float:
    r"""The sliced p-Wasserstein distance between two 2-D point clouds (p = 1 by default).

    SW_p(a, b) = ( (1/L)·Σⱼ W_pᵖ(⟨a, uⱼ⟩, ⟨b, uⱼ⟩) )^{1/p} over L evenly spaced unit directions
    uⱼ = (cos θⱼ, sin θⱼ), θⱼ = π(j + ½)/L. Each 1-D W_p compares sorted projections (empirical
    quantiles; clouds of different sizes are compared at max(n_a, n_b) mid-point quantiles).
    The directions are fixed, so the metric is deterministic.

    p = 1 is the default because its sampling noise falls like n^{-1/2}: for a multimodal
    target, W₂ is dominated by the random share of points per mode and falls like n^{-1/4}
    (2 000 exact points against 2 000 others: SW₁ ≈ 0.045, SW₂ ≈ 0.12 on the ``ring`` preset).

    Known values: a cloud against its translate by d gives exactly (1/L)·Σⱼ|⟨d, uⱼ⟩| ≈ 2|d|/π
    for p = 1 and exactly |d|/√2 for p = 2; N(0, I) against N(0, c²·I) gives |1 − c|·√(2/π)
    for p = 1 and |1 − c| for p = 2 (large-sample limits).

    Example:
        >>> import numpy as np
        >>> a = np.random.default_rng(0).standard_normal((500, 2))
        >>> round(sliced_wasserstein(a, a + [3.0, 4.0], p=2), 6)                # |d| / √2
        3.535534
        >>> round(sliced_wasserstein(a, a + [3.0, 4.0]), 3)                     # ≈ 2|d| / π
        3.183
    """
    xp = array_api_compat.array_namespace(a, b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != 2 or b.shape[1] != 2:
        raise ValueError(f"expected two (N, 2) clouds, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 1 or b.shape[0] < 1 or num_directions < 1:
        raise ValueError("need at least one point in each cloud and one direction")
    if p not in (1, 2):
        raise ValueError(f"`p` must be 1 or 2, got {p!r}")
    theta = np.pi * (np.arange(num_directions) + 0.5) / num_directions
    dirs = np.stack([np.cos(theta), np.sin(theta)])  # (2, L)
    dev = array_api_compat.device(a)
    u = xp.asarray(dirs, dtype=a.dtype, device=dev)
    pa = xp.sort(a @ u, axis=0)
    pb = xp.sort(xp.astype(b, a.dtype) @ u, axis=0)
    m = max(pa.shape[0], pb.shape[0])
    diff = _quantile_rows(pa, m, xp) - _quantile_rows(pb, m, xp)
    if p == 1:
        return float(xp.mean(xp.abs(diff)))
    return math.sqrt(float(xp.mean(diff * diff)))


def component_shares(
    x: Any, mixture: GaussianMixture, off_mode_radius: float = 4.0
) -> tuple[np.ndarray, float]:
    """The share of samples per component, and the share off every mode.

    Each sample goes to its most probable component (:meth:`GaussianMixture.assign`), or is
    "off-mode" when farther than ``off_mode_radius`` component standard deviations from every
    mean. Compare the shares with ``mixture.weights``; the off-mode share of exact samples is
    about exp(−r²/2) (3.4e-4 at r = 4).

    Returns:
        (shares, off): host float64 array of K shares and a float; they sum to 1.

    Example:
        >>> import numpy as np
        >>> from tcd_sample.toy import preset
        >>> m = preset("pair")
        >>> x, _ = m.sample(10_000, np.random.default_rng(0))
        >>> shares, off = component_shares(x, m)
        >>> np.round(shares, 2).tolist(), off < 1e-3
        ([0.8, 0.2], True)
    """
    labels = to_numpy(mixture.assign(x, off_mode_radius)).astype(np.int64)
    n = labels.shape[0]
    counts = np.bincount(labels[labels >= 0], minlength=mixture.num_components)
    return counts / n, float(np.sum(labels < 0)) / n
