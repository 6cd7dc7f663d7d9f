"""Clipping and dynamic thresholding of x̂₀, and the quantile they need (Array API has none)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._array import device_of, has_float64, namespace

__all__ = ["clip_sample", "dynamic_threshold", "quantile"]


def quantile(x: Any, q: float, axis: int = -1) -> Any:
    """The q-quantile along ``axis`` with linear interpolation, equal to ``torch.quantile``.

    With the sorted values v and rank r = f32(q)·(n−1) (in x's dtype), the result is
    lerp(v[⌊r⌋], v[⌈r⌉], r − ⌊r⌋), the lerp evaluated as torch evaluates it (one rounding, a
    fused multiply-add; emulated in float64 for float32 input where float64 exists, and with
    error-free transformations for float64 input). A row holding NaN gives NaN, as in
    ``torch.quantile``.

    Example:
        >>> import numpy as np
        >>> float(quantile(np.array([0.0, 1.0, 2.0, 3.0], np.float32), 0.5))
        1.5
    """
    xp = namespace(x)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"`q` must be in [0, 1], got {q!r}")
    x = xp.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("`x` must have at least one element along `axis`")
    ordered = xp.sort(x, axis=-1)
    # The rank is static (q and n are host numbers): computed on the host in x's precision, as
    # torch computes it (q rounded to x's dtype, times n - 1), so nothing here reads the device.
    host_dtype = np.float64 if x.dtype == xp.float64 else np.float32
    rank = host_dtype(q) * host_dtype(n - 1)
    below = int(rank)
    above = int(np.ceil(rank))
    weight = float(rank - host_dtype(below))
    complement = float(host_dtype(1) - host_dtype(weight))  # 1 - w in x's precision, as torch
    low, high = ordered[..., below], ordered[..., above]
    diff = high - low
    device = device_of(x)
    if x.dtype == xp.float32 and has_float64(xp, device):
        # torch's lerp is one fused multiply-add: exact product, one rounding.
        d64 = xp.astype(diff, xp.float64)
        if abs(weight) < 0.5:
            out = xp.astype(xp.astype(low, xp.float64) + weight * d64, x.dtype)
        else:
            out = xp.astype(xp.astype(high, xp.float64) - d64 * complement, x.dtype)
    elif x.dtype == xp.float64:
        # The same fused multiply-add in float64, where nothing wider exists: emulated with
        # error-free transformations (Dekker's product, Knuth's sum).
        out = _fma(weight, diff, low) if abs(weight) < 0.5 else _fma(-complement, diff, high)
    else:
        out = low + weight * diff if abs(weight) < 0.5 else high - diff * complement
    has_nan = xp.any(xp.isnan(x), axis=-1)
    return xp.where(has_nan, xp.asarray(float("nan"), dtype=x.dtype, device=device), out)


_SPLIT = 134217729.0  # 2**27 + 1: Veltkamp's splitter for float64


def _fma(w: float, d: Any, c: Any) -> Any:
    """w·d + c rounded once (a fused multiply-add) for a host float ``w`` and float64 arrays.

    w·d = p + e exactly (Dekker), p + c = s + t exactly (Knuth); the result s + (t + e) is the
    correctly rounded w·d + c except in rare double-rounding cases of t + e. Plain Array API
    arithmetic, so it runs on every backend with float64.
    """
    p = w * d
    w_hi = (_SPLIT * w) - ((_SPLIT * w) - w)
    w_lo = w - w_hi
    t_d = _SPLIT * d
    d_hi = t_d - (t_d - d)
    d_lo = d - d_hi
    e = ((w_hi * d_hi - p) + w_hi * d_lo + w_lo * d_hi) + w_lo * d_lo
    s = p + c
    b = s - p
    t = (p - (s - b)) + (c - b)
    return s + (t + e)


def clip_sample(x0: Any, clip_sample_range: float = 1.0) -> Any:
    """x̂₀ clamped to [−range, range] (the reference documents ``clip_sample`` but ignores it).

    Example:
        >>> import numpy as np
        >>> clip_sample(np.array([-3.0, 0.5, 3.0]), 1.0).tolist()
        [-1.0, 0.5, 1.0]
    """
    xp = namespace(x0)
    return xp.clip(x0, -clip_sample_range, clip_sample_range)


def dynamic_threshold(x0: Any, ratio: float = 0.995, max_value: float = 1.0) -> Any:
    """Dynamic thresholding (Imagen, Saharia et al. 2022), as diffusers' ``_threshold_sample``.

    Per batch element, s = quantile(|x̂₀|, ratio) clamped to [1, max_value]; x̂₀ is clamped to
    [−s, s] and divided by s. Half-precision input is upcast to float32 for the computation and
    cast back.

    Example:
        >>> import numpy as np
        >>> x = np.linspace(-4, 4, 16, dtype=np.float32).reshape(1, 1, 4, 4)
        >>> float(abs(dynamic_threshold(x, 0.9, 2.0)).max())
        1.0
    """
    xp = namespace(x0)
    dtype = x0.dtype
    x = x0 if dtype in (xp.float32, xp.float64) else xp.astype(x0, xp.float32)
    batch = x.shape[0]
    flat = xp.reshape(x, (batch, -1))
    s = quantile(xp.abs(flat), ratio, axis=1)
    # torch.clamp(s, min=1, max=max_value): min first, then max (max wins if max_value < 1).
    s = xp.minimum(
        xp.maximum(s, xp.asarray(1.0, dtype=s.dtype)), xp.asarray(max_value, dtype=s.dtype)
    )
    s = xp.reshape(s, (batch, 1))
    flat = xp.minimum(xp.maximum(flat, -s), s) / s
    out = xp.reshape(flat, x0.shape)
    return out if out.dtype == dtype else xp.astype(out, dtype)
