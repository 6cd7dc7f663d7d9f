"""Backend loading (lazily, by name) and host conversion for the toy problem (private)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

BACKENDS = ("numpy", "torch", "jax")

_MODULES = {"numpy": "numpy", "torch": "torch", "jax": "jax.numpy"}


def load_backend(name: str) -> ModuleType:
    """The Array API namespace of backend ``name``; ImportError when it is not installed.

    Backends are imported here, by name, on demand: the demo, like ``tcd_core``, never imports
    torch or JAX at module level, so a NumPy-only install works.
    """
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module = importlib.import_module(_MODULES[name])
    if name == "numpy":
        return array_api_compat.array_namespace(np.empty(0))
    if name == "torch":
        return array_api_compat.array_namespace(module.empty(0))
    return array_api_compat.array_namespace(module.zeros(0))


def to_numpy(a: Any) -> np.ndarray:
    """A host NumPy copy of any backend's array (waits for the device)."""
    if array_api_compat.is_torch_array(a):
        a = a.detach().cpu()
    return np.asarray(a)
