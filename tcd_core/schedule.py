"""The discrete VP noise schedule: betas, alphas, ᾱ (``alphas_cumprod``) and the final ᾱ.

Tables are float32, built in the caller's Array API namespace and on its device, bit for bit the
reference's on torch:

* ``torch.linspace`` in float32 is reproduced exactly on the host (see :func:`linspace_f32`);
* ``torch.cumprod`` in float32 accumulates in float64 and rounds each prefix; we do the same
  (in the namespace where it has float64, on the host in NumPy otherwise, e.g. JAX without x64);
* the zero-terminal-SNR rescale uses the namespace's own ``sqrt`` in the reference's op order.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ._array import default_namespace, device_of, has_float64, namespace
from .config import TCDConfig

__all__ = [
    "NoiseSchedule",
    "alphas_cumprod",
    "betas",
    "betas_for_alpha_bar",
    "final_alpha_cumprod",
    "linspace_f32",
    "noise_schedule",
    "rescale_zero_terminal_snr",
]


def linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps, dtype=torch.float32)``, bit for bit, in NumPy.

    torch rounds the end points to float32, takes ``step = f32(f32(end - start) / f32(steps - 1))``
    and fills the first half as ``start + step·i`` and the second as ``end - step·(steps-1-i)``,
    each with one rounding (a fused multiply-add). Products of float32 numbers with integers below
    2²⁹ are exact in float64; the sum is rounded to float64 and then to float32, which is one
    correct rounding except when the float64 sum lands exactly on a float32 midpoint: there the
    sum's rounding error (an exact two-sum) decides the direction, as the single rounding would.

    Example:
        >>> linspace_f32(0.0, 1.0, 5).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1, got {steps}")
    a, b = np.float32(start), np.float32(end)
    if steps == 1:
        return np.asarray([a], dtype=np.float32)
    step = np.float32(np.float32(b - a) / np.float32(steps - 1))
    i = np.arange(steps, dtype=np.float64)
    low = _fma_f32(np.float64(step) * i, np.float64(a))
    high = _fma_f32(-np.float64(step) * (steps - 1 - i), np.float64(b))
    return np.where(i < steps // 2, low, high)


def _fma_f32(x: np.ndarray, y: np.float64) -> np.ndarray:
    """f32(x + y) with one rounding, for float64 ``x`` and ``y`` that are exact (see above)."""
    r = x + y
    bb = r - x
    err = (x - (r - bb)) + (y - bb)  # exact: x + y == r + err (Knuth's two-sum)
    r32 = r.astype(np.float32)
    side = np.where(r > r32.astype(np.float64), np.inf, -np.inf).astype(np.float32)
    other = np.nextafter(r32, side)
    midpoint = (r32.astype(np.float64) + other.astype(np.float64)) / 2
    tie = (r == midpoint) & (err != 0) & (r32 != other)
    above = np.maximum(r32, other)
    below = np.minimum(r32, other)
    return np.where(tie, np.where(err > 0, above, below), r32).astype(np.float32)


def betas_for_alpha_bar(
    num_diffusion_timesteps: int,
    max_beta: float = 0.999,
    alpha_transform_type: str = "cosine",
) -> np.ndarray:
    """Betas discretising a continuous ᾱ(t) on [0, 1]: βᵢ = min(1 − ᾱ((i+1)/N)/ᾱ(i/N), max_beta).

    ``alpha_transform_type``: ``"cosine"`` (Nichol & Dhariwal, ᾱ = cos²((t+0.008)/1.008·π/2), the
    ``squaredcos_cap_v2`` schedule), ``"exp"`` (ᾱ = e^(−12t)) or ``"laplace"``. Evaluated in double
    precision, returned as float32 like diffusers' function of the same name.

    Example:
        >>> betas_for_alpha_bar(1000)[:2]
        array([4.1284224e-05, 4.6141751e-05], dtype=float32)
    """
    if alpha_transform_type == "cosine":

        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    elif alpha_transform_type == "laplace":

        def alpha_bar(t: float) -> float:
            lmb = -0.5 * math.copysign(1, 0.5 - t) * math.log(1 - 2 * math.fabs(0.5 - t) + 1e-6)
            snr = math.exp(lmb)
            return math.sqrt(snr / (1 + snr))

    elif alpha_transform_type == "exp":

        def alpha_bar(t: float) -> float:
            return math.exp(t * -12.0)

    else:
        raise ValueError(
            "`alpha_transform_type` must be one of 'cosine', 'exp', 'laplace'; "
            f"got {alpha_transform_type!r}"
        )
    n = num_diffusion_timesteps
    out = [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)]
    return np.asarray(out, dtype=np.float32)


def _cumprod(x: Any, xp: Any) -> Any:
    """float32 cumulative product accumulated in float64, rounding each prefix (torch's behaviour).

    Namespaces without float64 on ``x``'s device (JAX without x64) accumulate on the host in
    NumPy: the tables are built once, outside any jit, so the one transfer costs nothing per step.
    Only if ``x`` cannot be read on the host (a tracer) does the product accumulate in float32,
    within ~1e-6 of the reference.
    """
    device = device_of(x)
    if has_float64(xp, device):
        return xp.astype(xp.cumulative_prod(xp.astype(x, xp.float64), axis=0), xp.float32)
    try:
        host = np.asarray(x, dtype=np.float64)
    except Exception:
        return xp.cumulative_prod(x, axis=0)
    prefix = np.cumprod(host).astype(np.float32)
    return xp.asarray(prefix, dtype=xp.float32, device=device)


def rescale_zero_terminal_snr(betas: Any) -> Any:
    """Rescale float32 betas to zero terminal SNR (Lin et al. 2023, Algorithm 1).

    √ᾱ is shifted so its last entry is 0 and scaled so its first is unchanged; the result's
    ``ᾱ[N−1]`` is exactly 0, so epsilon prediction at t = N−1 divides by zero (as in the reference).

    Example:
        >>> from tcd_core import TCDConfig, betas
        >>> b = rescale_zero_terminal_snr(betas(TCDConfig()))
        >>> float(b[-1]), b.dtype
        (1.0, dtype('float32'))
    """
    xp = namespace(betas)
    alphas = 1.0 - betas
    sqrt_bar = xp.sqrt(_cumprod(alphas, xp))
    first, last = sqrt_bar[0], sqrt_bar[-1]
    sqrt_bar = sqrt_bar - last
    sqrt_bar = sqrt_bar * (first / (first - last))
    bar = sqrt_bar * sqrt_bar
    alphas = xp.concat([bar[0:1], bar[1:] / bar[:-1]])
    return 1 - alphas


def betas(config: TCDConfig, xp: Any = None, device: Any = None) -> Any:
    """The float32 betas of ``config`` in namespace ``xp`` (default NumPy) on ``device``.

    ``linear``: linspace(β_start, β_end); ``scaled_linear``: linspace(√β_start, √β_end)²;
    ``squaredcos_cap_v2``: :func:`betas_for_alpha_bar` (cosine); ``trained_betas`` verbatim.
    Zero-terminal-SNR rescaling is applied when the config asks for it.

    Example:
        >>> from tcd_core import TCDConfig
        >>> b = betas(TCDConfig())
        >>> b.dtype, b.shape
        (dtype('float32'), (1000,))
    """
    xp = default_namespace(xp)
    n = config.num_train_timesteps
    if config.trained_betas is not None:
        host = np.asarray(config.trained_betas, dtype=np.float32)
    elif config.beta_schedule == "linear":
        host = linspace_f32(config.beta_start, config.beta_end, n)
    elif config.beta_schedule == "scaled_linear":
        host = linspace_f32(config.beta_start**0.5, config.beta_end**0.5, n)
    else:  # squaredcos_cap_v2 (the config validated the choice)
        host = betas_for_alpha_bar(n)
    out = xp.asarray(host, dtype=xp.float32, device=device)
    if config.trained_betas is None and config.beta_schedule == "scaled_linear":
        out = out * out
    if config.rescale_betas_zero_snr:
        out = rescale_zero_terminal_snr(out)
    return out


class NoiseSchedule(NamedTuple):
    """All float32 tables of a config: ``betas``, ``alphas = 1 − β``, ``alphas_cumprod`` (ᾱ) and
    the 0-d ``final_alpha_cumprod`` (1 if ``set_alpha_to_one`` else ᾱ[0])."""

    betas: Any
    alphas: Any
    alphas_cumprod: Any
    final_alpha_cumprod: Any


def noise_schedule(config: TCDConfig, xp: Any = None, device: Any = None) -> NoiseSchedule:
    """Every table of the schedule in one call (one construction of the betas).

    Example:
        >>> from tcd_core import TCDConfig
        >>> sched = noise_schedule(TCDConfig())
        >>> round(float(sched.alphas_cumprod[0]), 5), float(sched.final_alpha_cumprod)
        (0.99915, 1.0)
    """
    xp = default_namespace(xp)
    b = betas(config, xp, device)
    alphas = 1.0 - b
    cumprod = _cumprod(alphas, xp)
    return NoiseSchedule(b, alphas, cumprod, final_alpha_cumprod(config, cumprod))


def alphas_cumprod(config: TCDConfig, xp: Any = None, device: Any = None) -> Any:
    """ᾱₜ = ∏_{i≤t} (1 − βᵢ) as a float32 array of length ``num_train_timesteps``.

    Example:
        >>> from tcd_core import TCDConfig
        >>> ac = alphas_cumprod(TCDConfig(beta_schedule="linear", beta_start=1e-4, beta_end=0.02))
        >>> float(ac[0])
        0.9998999834060669
    """
    return noise_schedule(config, xp, device).alphas_cumprod


def final_alpha_cumprod(config: TCDConfig, alphas_cumprod: Any) -> Any:
    """The 0-d ᾱ used past the last training timestep: 1 if ``set_alpha_to_one`` else ᾱ[0].

    The reference reaches it only with negative custom timesteps (which tcd_core rejects); it is
    kept for completeness of the schedule.

    Example:
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> cfg = TCDConfig(set_alpha_to_one=False)
        >>> round(float(final_alpha_cumprod(cfg, alphas_cumprod(cfg))), 5)
        0.99915
    """
    xp = namespace(alphas_cumprod)
    if config.set_alpha_to_one:
        return xp.asarray(1.0, dtype=xp.float32, device=device_of(alphas_cumprod))
    return alphas_cumprod[0]
