r"""Isotropic 2-D Gaussian mixtures: the data distribution of the toy problem, exactly.

A mixture p₀(x₀) = Σₖ wₖ·N(x₀; μₖ, sₖ²·I) stays a mixture on any Gaussian noise path
x = a·x₀ + b·ε: component k becomes N(a·μₖ, (a²·sₖ² + b²)·I). On the VP path (a, b) =
(√ᾱ_t, √(1−ᾱ_t)); on the flow-matching path (a, b) = (1−σ, σ). Everything the toy needs
(samples, densities, posteriors, the exact ε-prediction and flow velocity) is therefore closed
form.

Host-side helpers (sampling, densities for plotting) use NumPy; :meth:`GaussianMixture.weighted_offset`
and :meth:`GaussianMixture.assign` are Array API code and run on any backend.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import sys
from typing import Any

import array_api_compat
import numpy as np

__all__ = ["PRESETS", "GaussianMixture", "preset"]


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """Σₖ wₖ·N(μₖ, sₖ²·I) in two dimensions.

    Attributes:
        means: K points (μₖ), each a pair of floats.
        stds: K standard deviations sₖ > 0.
        weights: K positive weights wₖ (normalised on construction).
        name: a label for tables and figures.

    Example:
        >>> import numpy as np
        >>> m = GaussianMixture(((-1.0, 0.0), (1.0, 0.0)), (0.1, 0.1), (1.0, 3.0))
        >>> m.weights
        (0.25, 0.75)
        >>> x, k = m.sample(4, np.random.default_rng(0))
        >>> x.shape, k.shape
        ((4, 2), (4,))
    """

    means: tuple[tuple[float, float], ...]
    stds: tuple[float, ...]
    weights: tuple[float, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        means = tuple(tuple(float(c) for c in m) for m in self.means)
        if not means or any(len(m) != 2 for m in means):
            raise ValueError("`means` must be a non-empty sequence of 2-D points")
        k = len(means)
        stds = tuple(float(s) for s in self.stds)
        weights = tuple(float(w) for w in self.weights)
        if len(stds) != k or len(weights) != k:
            raise ValueError(f"`stds` and `weights` must have {k} entries, like `means`")
        if not all(math.isfinite(s) and s > 0 for s in stds):
            raise ValueError(f"`stds` must be positive, got {stds}")
        if not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(f"`weights` must be positive, got {weights}")
        total = sum(weights)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "stds", stds)
        object.__setattr__(self, "weights", tuple(w / total for w in weights))

    @property
    def num_components(self) -> int:
        """K, the number of components."""
        return len(self.means)

    def noised(self, alpha_bar: float) -> GaussianMixture:
        """The marginal of x_t = √ᾱ·x₀ + √(1−ᾱ)·ε: means √ᾱ·μₖ, stds √(ᾱ·sₖ² + 1 − ᾱ).

        Example:
            >>> m = GaussianMixture(((2.0, 0.0),), (0.5,), (1.0,))
            >>> m.noised(0.25).means, m.noised(0.25).stds
            (((1.0, 0.0),), (0.9013878188659973,))
        """
        a = float(alpha_bar)
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"`alpha_bar` must be in [0, 1], got {alpha_bar!r}")
        r = math.sqrt(a)
        return GaussianMixture(
            tuple((r * mx, r * my) for mx, my in self.means),
            tuple(math.sqrt(a * s * s + 1.0 - a) for s in self.stds),
            self.weights,
            self.name,
        )

    def on_path(self, a: float, b: float) -> GaussianMixture:
        """The marginal of x = a·x₀ + b·ε on any Gaussian noise path: means a·μₖ, stds
        √(a²·sₖ² + b²). On the flow path, x_σ = (1−σ)·x₀ + σ·ε is ``on_path(1 − σ, σ)``; σ = 0
        gives the mixture itself (same means and stds, bit for bit), σ = 1 gives N(0, I).

        Example:
            >>> m = GaussianMixture(((2.0, 0.0),), (0.5,), (1.0,))
            >>> m.on_path(0.5, 0.5).means, m.on_path(0.5, 0.5).stds
            (((1.0, 0.0),), (0.5590169943749475,))
        """
        a, b = float(a), float(b)
        if not (math.isfinite(a) and math.isfinite(b) and a >= 0 and b >= 0 and a + b > 0):
            raise ValueError(f"`a` and `b` must be >= 0 and not both 0, got {a!r} and {b!r}")
        return GaussianMixture(
            tuple((a * mx, a * my) for mx, my in self.means),
            tuple(math.sqrt(a * a * s * s + b * b) for s in self.stds),
            self.weights,
            self.name,
        )

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n exact float64 samples and their component labels (host NumPy)."""
        labels = rng.choice(self.num_components, size=n, p=np.asarray(self.weights))
        mu = np.asarray(self.means)[labels]
        sd = np.asarray(self.stds)[labels][:, None]
        return mu + sd * rng.standard_normal((n, 2)), labels

    def log_density(self, points: np.ndarray) -> np.ndarray:
        """log p(x) at host points of shape (..., 2) (for contour plots)."""
        pts = np.asarray(points, dtype=np.float64)[..., None, :]
        mu = np.asarray(self.means)
        var = np.asarray(self.stds) ** 2
        d2 = np.sum((pts - mu) ** 2, axis=-1)
        logp = np.log(np.asarray(self.weights)) - 0.5 * d2 / var - np.log(2 * np.pi * var)
        top = np.max(logp, axis=-1, keepdims=True)
        return (top + np.log(np.sum(np.exp(logp - top), axis=-1, keepdims=True)))[..., 0]

    # ---- Array API code: runs on any backend -------------------------------------------------

    def _tables(self, like: Any) -> tuple[Any, ...]:
        """(xp, μ, s², log w, |μ|²) in ``like``'s namespace, dtype and device, with components on
        axis 0 (s², log w and |μ|² as (K, 1) columns); cached per (namespace, dtype, device)."""
        xp = array_api_compat.array_namespace(like)
        dev = array_api_compat.device(like)

        def build() -> tuple[Any, ...]:
            means = np.asarray(self.means)
            return tuple(
                [xp]
                + [
                    xp.asarray(t, dtype=like.dtype, device=dev)
                    for t in (
                        means,
                        (np.asarray(self.stds) ** 2)[:, None],
                        np.log(np.asarray(self.weights))[:, None],
                        np.sum(means * means, axis=1)[:, None],
                    )
                ]
            )

        if array_api_compat.is_jax_namespace(xp) and isinstance(
            like, sys.modules["jax"].core.Tracer
        ):
            # Inside jax.jit (weighted_offset and posterior_mean compile), jnp.asarray gives
            # tracers, which must not outlive their trace: a cached one broke the next trace
            # (another shape, or the other function). Uncached: constants of the program.
            return build()
        key = (xp.__name__, str(like.dtype), str(dev))
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:
            cache[key] = build()
        return cache[key]

    def weighted_offset(self, y: Any, sigma2: Any) -> Any:
        r"""g(y, σ²) = Σₖ rₖ(y)·(y − μₖ)/(sₖ² + σ²) for y = x₀ + σ·ε (the "y-space" of DDIM).

        rₖ(y) ∝ wₖ·N(y; μₖ, (sₖ² + σ²)·I) is the posterior probability of component k. Then
        E[ε | y] = σ·g and the score is ∇ log p_σ(y) = −g, so g carries the whole mixture. The
        computation is a softmax over components (stable: the largest logit is subtracted).

        Args:
            y: array of shape (N, 2).
            sigma2: σ², a Python float, a 0-d array or an (N, 1) array.
        """
        xp = array_api_compat.array_namespace(y)
        if array_api_compat.is_jax_namespace(xp):
            # JAX runs eagerly op by op otherwise (one dispatch each): compile the whole thing.
            sigma2 = xp.asarray(sigma2, dtype=y.dtype)
            return self._jitted(y)(y, sigma2)
        return self._weighted_offset(y, sigma2)

    def _jitted(self, like: Any, function: str = "_weighted_offset") -> Any:
        cache = self.__dict__.setdefault("_jit_cache", {})
        key = (function, str(like.dtype), str(array_api_compat.device(like)))
        if key not in cache:
            jit = importlib.import_module("jax").jit
            cache[key] = jit(getattr(self, function))
        return cache[key]

    def _weighted_offset(self, y: Any, sigma2: Any) -> Any:
        xp, mu, s2, logw, mu2 = self._tables(y)
        if not isinstance(sigma2, (int, float)):
            sigma2 = xp.reshape(sigma2, (1, -1))  # one column per sample
        # Components on axis 0, samples on axis 1: reductions over K stay contiguous and fast.
        yt = xp.permute_dims(y, (1, 0))  # (2, N)
        var = s2 + sigma2  # (K, 1) or (K, N)
        # |y − μₖ|² = |y|² − 2·μₖ·y + |μₖ|²: matrix products instead of a (K, N, 2) array
        d2 = (xp.sum(yt * yt, axis=0, keepdims=True) - 2 * (mu @ yt)) + mu2
        logits = logw - 0.5 * d2 / var - xp.log(var)
        # Clipped at −80 so that exp never produces subnormal floats (slow on CPUs); the
        # components it affects weigh < e⁻⁸⁰ relative to the nearest one.
        r = xp.exp(xp.clip(logits - xp.max(logits, axis=0, keepdims=True), min=-80.0))
        w = r / (xp.sum(r, axis=0, keepdims=True) * var)  # rₖ / (sₖ² + σ²), shape (K, N)
        gt = yt * xp.sum(w, axis=0, keepdims=True) - xp.permute_dims(mu, (1, 0)) @ w
        return xp.permute_dims(gt, (1, 0))

    def posterior_mean(self, x: Any, a: Any, b: Any, of: tuple[float, float] = (1.0, 0.0)) -> Any:
        r"""E[c·x₀ + d·ε | x] for x = a·x₀ + b·ε on any Gaussian noise path, (c, d) = ``of``.

        Written in x itself, not in y = x/a: component k gives x ~ N(a·μₖ, vₖ·I) with
        vₖ = a²·sₖ² + b² ≥ min(sₖ², 1)/2 > 0 wherever a + b = 1 or a² + b² = 1, and the
        per-component conditionals E[x₀ | x, k] = μₖ + a·sₖ²·(x − a·μₖ)/vₖ, E[ε | x, k] =
        b·(x − a·μₖ)/vₖ. Weighted by the posterior probabilities rₖ(x) ∝ wₖ·N(x; a·μₖ, vₖ·I):

            E[c·x₀ + d·ε | x] = c·Σₖ rₖ·μₖ + Σₖ rₖ·(c·a·sₖ² + d·b)/vₖ·(x − a·μₖ).

        Nothing divides by a or b, so both ends of the flow path are plain: at a = 0 (σ = 1,
        pure noise) E[x₀ | x] is the mixture's mean and E[ε | x] = x; at b = 0 (clean data)
        E[x₀ | x] = x and E[ε | x] = 0. (The y-space of :meth:`weighted_offset` divides by a,
        infinite at σ = 1.) ``of`` = (1, 0) is E[x₀ | x], (0, 1) is E[ε | x] and (−1, 1) is
        the flow path's exact velocity E[ε − x₀ | x].

        Args:
            x: array of shape (N, 2).
            a: the weight of x₀ at x's level (the path's first root): a Python float, a 0-d array
                or an (N, 1) array.
            b: the weight of ε, likewise.
            of: (c, d), Python floats.

        Example:
            >>> import numpy as np
            >>> m = GaussianMixture(((1.0, 0.0), (-1.0, 0.0)), (0.5, 0.5), (1.0, 1.0))
            >>> x = np.array([[0.3, 0.2]])
            >>> m.posterior_mean(x, 0.0, 1.0).round(12).tolist()       # σ = 1: the mixture's mean
            [[0.0, 0.0]]
            >>> m.posterior_mean(x, 1.0, 0.0).round(12).tolist()       # clean data: x itself
            [[0.3, 0.2]]
        """
        xp = array_api_compat.array_namespace(x)
        c, d = (float(v) for v in of)
        if array_api_compat.is_jax_namespace(xp):
            # compiled, like weighted_offset (c and d traced too: one program per dtype)
            a, b = xp.asarray(a, dtype=x.dtype), xp.asarray(b, dtype=x.dtype)
            c_, d_ = xp.asarray(c, dtype=x.dtype), xp.asarray(d, dtype=x.dtype)
            return self._jitted(x, "_posterior_mean")(x, a, b, c_, d_)
        return self._posterior_mean(x, a, b, c, d)

    def _posterior_mean(self, x: Any, a: Any, b: Any, c: Any, d: Any) -> Any:
        xp, mu, s2, logw, mu2 = self._tables(x)
        if not isinstance(a, (int, float)):
            a = xp.reshape(a, (1, -1)) if a.ndim else a  # one column per sample
        if not isinstance(b, (int, float)):
            b = xp.reshape(b, (1, -1)) if b.ndim else b
        xt = xp.permute_dims(x, (1, 0))  # (2, N): components on axis 0, as in weighted_offset
        var = (a * a) * s2 + b * b  # vₖ, (K, 1) or (K, N)
        # |x − a·μₖ|² = |x|² − 2a·μₖ·x + a²·|μₖ|², by matrix products
        d2 = (xp.sum(xt * xt, axis=0, keepdims=True) - (2 * a) * (mu @ xt)) + (a * a) * mu2
        logits = logw - 0.5 * d2 / var - xp.log(var)
        # the same stable softmax as weighted_offset (clipped at −80: no subnormal floats)
        r = xp.exp(xp.clip(logits - xp.max(logits, axis=0, keepdims=True), min=-80.0))
        r = r / xp.sum(r, axis=0, keepdims=True)  # rₖ(x), (K, N)
        w = r * ((c * a) * s2 + d * b) / var  # rₖ·(c·a·sₖ² + d·b)/vₖ
        mu_t = xp.permute_dims(mu, (1, 0))  # (2, K)
        out = (xt * xp.sum(w, axis=0, keepdims=True) - a * (mu_t @ w)) + c * (mu_t @ r)
        return xp.permute_dims(out, (1, 0))

    def assign(self, x: Any, off_mode_radius: float = 4.0) -> Any:
        """Per sample, the most probable component, or −1 when the sample is off every mode.

        "Off-mode" means farther than ``off_mode_radius`` standard deviations from every mean
        (for a 2-D Gaussian that happens with probability exp(−r²/2): 3.4e-4 at r = 4).
        """
        xp, mu, s2, logw, _ = self._tables(x)
        diff = x[None, :, :] - mu[:, None, :]  # (K, N, 2)
        z2 = xp.sum(diff * diff, axis=-1) / s2  # squared distance in component stds, (K, N)
        logits = logw - 0.5 * z2 - xp.log(s2)
        best = xp.argmax(logits, axis=0)
        off = xp.min(z2, axis=0) > off_mode_radius**2
        return xp.where(off, xp.full_like(best, -1), best)


def _ring(k: int, radius: float, std: float, name: str, phase: float = 0.0) -> GaussianMixture:
    angles = [phase + 2 * math.pi * i / k for i in range(k)]
    means = tuple((radius * math.cos(a), radius * math.sin(a)) for a in angles)
    return GaussianMixture(means, (std,) * k, (1.0,) * k, name)


def _grid(n: int, spacing: float, std: float) -> GaussianMixture:
    c = (n - 1) / 2
    means = tuple(((i - c) * spacing, (j - c) * spacing) for i in range(n) for j in range(n))
    return GaussianMixture(means, (std,) * (n * n), (1.0,) * (n * n), "grid")


def _rings() -> GaussianMixture:
    inner, outer = _ring(4, 0.8, 0.08, "", math.pi / 4), _ring(8, 2.0, 0.1, "")
    return GaussianMixture(inner.means + outer.means, inner.stds + outer.stds, (1.0,) * 12, "rings")


PRESETS: dict[str, GaussianMixture] = {
    "ring": _ring(8, 2.0, 0.1, "ring"),
    "grid": _grid(4, 1.2, 0.08),
    "rings": _rings(),
    "pair": GaussianMixture(((-1.5, 0.0), (1.5, 0.0)), (0.2, 0.2), (0.8, 0.2), "pair"),
}
"""The built-in mixtures: ``ring`` (8 components on a circle of radius 2, default), ``grid``
(4×4, spacing 1.2), ``rings`` (4 inside 8, concentric) and ``pair`` (two components, weights
0.8/0.2: the share per component shows whether a sampler keeps the imbalance)."""


def preset(name: str) -> GaussianMixture:
    """The built-in mixture called ``name`` (ValueError naming the choices otherwise)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
