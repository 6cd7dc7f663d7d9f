"""Small Array API helpers shared by the core modules (private)."""

from __future__ import annotations

import numbers
from typing import Any

import array_api_compat
import numpy as np


def namespace(*arrays: Any) -> Any:
    """The Array API namespace of the array arguments (Python scalars and None are skipped)."""
    arrays = tuple(a for a in arrays if a is not None and not _is_python_scalar(a))
    return array_api_compat.array_namespace(*arrays)


def default_namespace(xp: Any | None) -> Any:
    """The Array API namespace to build in: ``xp`` itself, the compatible namespace of a plain
    module (``torch`` becomes ``array_api_compat.torch``), or NumPy's when ``xp`` is None."""
    if xp is None:
        return array_api_compat.array_namespace(np.empty(0))
    if not hasattr(xp, "__array_namespace_info__") and hasattr(xp, "asarray"):
        # A plain library module such as ``torch``: use its Array API compatible namespace.
        return array_api_compat.array_namespace(xp.asarray(0.0))
    return xp


def _is_python_scalar(x: Any) -> bool:
    return isinstance(x, (numbers.Number, np.generic)) and not hasattr(x, "__array_namespace__")


def is_host_scalar(x: Any) -> bool:
    """True for Python/NumPy scalars: values known on the host without a device read."""
    return isinstance(x, (numbers.Number, np.generic))


def is_host(x: Any) -> bool:
    """True for values that live on the host: Python/NumPy scalars, NumPy arrays, lists, tuples."""
    return is_host_scalar(x) or isinstance(x, (np.ndarray, list, tuple))


def is_array(x: Any) -> bool:
    """An array of some namespace: it has a shape and a dtype (NumPy scalars do too, but are
    host numbers, not arrays). Attribute tests only, cheap and traceable."""
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, np.generic)


def device_of(x: Any) -> Any:
    """The device an Array API array lives on."""
    return array_api_compat.device(x)


def index_dtype(xp: Any, device: Any = None) -> Any:
    """The namespace's default integer dtype for indexing (int64, or int32 for 32-bit JAX)."""
    return xp.__array_namespace_info__().default_dtypes(device=device)["indexing"]


def has_float64(xp: Any, device: Any = None) -> bool:
    """Whether float64 is usable in this namespace on this device (not so for JAX without x64)."""
    return "float64" in xp.__array_namespace_info__().dtypes(device=device, kind="real floating")


def gather(table: Any, index: Any, ndim: int, xp: Any) -> Any:
    """``table[index]`` shaped to broadcast against an array of rank ``ndim``.

    A scalar index gives a 0-d array (exactly what ``table[int]`` gives in the reference, so that
    torch treats it as a scalar in type promotion); a 1-D index of length B gives shape
    ``(B, 1, ..., 1)``, one coefficient per batch element.
    """
    if isinstance(index, numbers.Integral):
        return table[int(index)]
    flat = xp.reshape(index, (-1,))
    picked = xp.take(table, flat, axis=0)
    if index.ndim == 0:
        return xp.reshape(picked, ())
    return xp.reshape(picked, (picked.shape[0],) + (1,) * (ndim - 1))


def cast_like(x: Any, like: Any, xp: Any) -> Any:
    """``x`` with ``like``'s dtype (no copy when it already has it)."""
    if x.dtype == like.dtype:
        return x
    return xp.astype(x, like.dtype)
