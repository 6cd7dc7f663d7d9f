"""What every contender is: a ``Contender`` whose ``prepare`` turns a workload's shared inputs into
a ``Loop``, one callable that runs a whole generation loop; ``Unavailable`` when it cannot run."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..workloads import Inputs, Workload

__all__ = ["Contender", "Loop", "Unavailable", "import_or_unavailable"]


class Unavailable(Exception):
    """Raised by ``Contender.load`` when the contender cannot run here (the message says why)."""


@dataclass
class Loop:
    """One prepared contender on one workload."""

    run: Callable[[], Any]
    to_numpy: Callable[[Any], np.ndarray]
    memory: Callable[[], int] | None = None
    compile_s: float | None = None


@dataclass
class Contender:
    key: str
    name: str
    backend: str
    floor: str | None
    description: str
    # The contender whose final latents this one's must match: one that draws the same noise
    # (the reference's torch generator stream, or the same JAX key and fold_in scheme).
    compare_with: str | None = None
    is_floor: bool = False

    def load(self) -> None:  # pragma: no cover - overridden
        """Import what is needed; raise Unavailable(reason) when it cannot run."""

    def prepare(self, inputs: Inputs) -> Loop:  # pragma: no cover - overridden
        raise NotImplementedError

    def runs_on(self, workload: Workload) -> bool:
        """Whether this contender has a row in ``workload``'s cell (default: every cell)."""
        return True

    def checked_against(self, workload: Workload) -> str | None:
        """The contender whose final latents this one's must match in ``workload``'s cell
        (default: ``compare_with`` in every cell)."""
        return self.compare_with

    def describe(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "backend": self.backend,
            "floor": self.floor,
            "description": self.description,
            "is_floor": self.is_floor,
        }


def import_or_unavailable(name: str, attr: str | None = None) -> Any:
    """``import name`` (and its ``attr``), raising Unavailable with the reason when it fails."""
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # ImportError, or the package failing while importing
        raise Unavailable(f"import {name} failed: {type(exc).__name__}: {exc}") from exc
    if attr is None:
        return module
    if not hasattr(module, attr):
        raise Unavailable(f"{name} has no attribute {attr!r} (not implemented yet)")
    return getattr(module, attr)
