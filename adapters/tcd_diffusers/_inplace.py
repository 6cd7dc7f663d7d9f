"""The in-place arithmetic of the diffusers adapter's fast path (private).

:func:`tcd_core.update` is written once, against :class:`tcd_core.Arithmetic`, and names at each
operation a temporary of its own that is dead afterwards. :data:`IN_PLACE` runs the same torch
kernels, with the same operands in the same order, but writes each result into that temporary
with ``out=``, so a step allocates two or three latent-sized tensors instead of nine. That is the
whole difference from the core's default arithmetic, and why results are bit-identical to it
(``tests/diffusers/test_diffusers_core_delegation.py``).

``torch.mul(c, x, out=...)`` is the kernel ``c * x`` dispatches to; never ``x.mul_(c)``, which for
half dtypes with a float32 0-d ``c`` rounds differently. A Python-number coefficient (LCM's
c_skip/c_out for an ``int`` timestep) goes second, as ``c * x`` puts it.
"""

from __future__ import annotations

from typing import Any

import torch

from tcd_core import Arithmetic

__all__ = ["IN_PLACE", "InPlace"]


class InPlace(Arithmetic):
    """torch's ``out=`` into the temporary the formula names; a fresh tensor where it names none."""

    in_place = True

    def mul(self, c: Any, x: Any, reuse: Any = None) -> Any:
        if reuse is None:
            return c * x
        if c.__class__ is torch.Tensor:
            return torch.mul(c, x, out=reuse)
        return torch.mul(x, c, out=reuse)

    def add(self, x: Any, y: Any, reuse: Any = None) -> Any:
        return x + y if reuse is None else torch.add(x, y, out=reuse)

    def sub(self, x: Any, y: Any, reuse: Any = None) -> Any:
        return x - y if reuse is None else torch.sub(x, y, out=reuse)

    def div(self, x: Any, c: Any, reuse: Any = None) -> Any:
        return x / c if reuse is None else torch.div(x, c, out=reuse)


IN_PLACE = InPlace()
