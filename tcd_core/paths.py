"""Noise paths as values: how a timestep maps to the mixture x_t = a_t·x₀ + b_t·ε.

A path gives a step three things, each an Array API computation with no host read (``xp`` and
``device``, from :meth:`~VPPath.namespace`, are looked up once per step):

* :meth:`~VPPath.level`: the path's value at a timestep (gathered from its table; 0-d for a
  scalar timestep, ``(B, 1, …, 1)`` for one timestep per batch element);
* :meth:`~VPPath.roots`: (a, b) at a level, the weights of x₀ and ε;
* :meth:`~VPPath.relative` and :meth:`~VPPath.transition_roots`: the forward transition from one
  level to a later (noisier) one, x_to = keep·x_from + noise·z.

Today's path is the variance-preserving one of SD/SDXL (:class:`VPPath`, the ᾱ table). Its
transition is written in the references' ratio form, keep = √(ᾱ_to/ᾱ_from), noise =
√(1 − ᾱ_to/ᾱ_from), because that is the order of operations diffusers uses and bit-identity
depends on it (a general path would write keep = a_to/a_from, noise = √(b_to² − keep²·b_from²)).
A new path (a flow-matching σ path) is a new class with these four methods.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._array import device_of, gather, namespace
from ._step_common import as_index

__all__ = ["VPPath", "as_path"]


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

    def namespace(self) -> tuple[Any, Any]:
        """(the Array API namespace, the device) of the path's table: looked up once per step
        and passed to the other methods (the lookup costs more than a 0-d operation)."""
        table = self.alphas_cumprod
        return namespace(table), device_of(table)

    def level(self, timestep: Any, ndim: int, xp: Any, device: Any) -> Any:
        """ᾱ at ``timestep`` (an int, or an integer array given once or once per batch element;
        host arrays move to the table's namespace and device), shaped to broadcast against an
        array of rank ``ndim``."""
        return gather(self.alphas_cumprod, as_index(timestep, xp, device), ndim, xp)

    @staticmethod
    def roots(level: Any, xp: Any) -> tuple[Any, Any]:
        """(a, b) = (√ᾱ, √(1−ᾱ)) at ``level`` = ᾱ."""
        return xp.sqrt(level), xp.sqrt(1 - level)

    @staticmethod
    def relative(level_from: Any, level_to: Any) -> Any:
        """The level of ``level_to`` seen from ``level_from``: r = ᾱ_to/ᾱ_from (the transition's
        own ᾱ)."""
        return level_to / level_from

    @staticmethod
    def transition_roots(relative: Any, xp: Any) -> tuple[Any, Any]:
        """(keep, noise) = (√r, √(1−r)) of the transition with relative level r."""
        return VPPath.roots(relative, xp)


def as_path(path: Any) -> VPPath:
    """A path value: a :class:`VPPath` as it is, an ᾱ table wrapped (the steps' tables are
    checked before, by :func:`~tcd_core._step_common.check_table`)."""
    return path if isinstance(path, VPPath) else VPPath(path)
