"""The LCM timestep plan (consistency models' multistep sampling, Algorithm 1): host-side integer
bookkeeping (NumPy, Python ints), bit for bit diffusers' ``LCMScheduler.set_timesteps``.

The LCM plan shares most of its code path with the TCD plan (:func:`tcd_core.tcd_timesteps`) but
not all of its quirks; measured against diffusers 0.42.1:

* ``original_inference_steps`` passed explicitly is used like the config's value: the grid is
  always ``[k−1, 2k−1, …]`` with k = N // original_steps (TCD switches to ``range(0, ⌊N·strength⌋)``
  when the argument is given, so ``set_timesteps(4, original_inference_steps=50)`` is
  ``[999, 759, 499, 259]`` here and ``[999, 749, 499, 249]`` for TCD);
* ``original_steps > N`` is therefore an error whether the value comes from the config or from
  the argument;
* each step's "previous" timestep after the last entry is the step's **own** timestep (TCD: 0);
  it only matters when that step still renoises (see below);
* the last step is ``step_index == num_inference_steps − 1`` and is the only step that does not
  draw noise (there is no η). With custom timesteps trimmed by ``strength``,
  ``num_inference_steps`` keeps the untrimmed length, so *no* step of the trimmed plan is final:
  the reference renoises after its last step to ᾱ of that step's own timestep.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .config import TCDConfig
from .plan import (
    _custom_timesteps,
    _distillation_grid,
    _opening_checks,
    _positive_int,
    _standard_timesteps,
)

__all__ = ["LCMPlan", "lcm_final_step", "lcm_previous_timesteps", "lcm_timesteps"]


class LCMPlan(NamedTuple):
    """An LCM timestep plan, all on the host.

    Attributes:
        timesteps: int64 array of the timesteps to visit, descending.
        prev_timesteps: int64 array, each step's "previous" timestep: the next entry, and the
            step's own timestep after the last entry (the reference's rule).
        num_inference_steps: the step count the reference records (untrimmed for custom
            timesteps cut by ``strength``); it decides which step is final
            (:func:`lcm_final_step`).
        custom_timesteps: whether the plan came from a custom ``timesteps`` list.
    """

    timesteps: np.ndarray
    prev_timesteps: np.ndarray
    num_inference_steps: int
    custom_timesteps: bool

    def final_steps(self, begin_index: int = 0) -> np.ndarray:
        """Per step of ``timesteps[begin_index:]``, whether it is the final step (returns the
        denoised sample, draws no noise). At most one entry is True; none for trimmed custom
        plans.

        Example:
            >>> from tcd_core import TCDConfig
            >>> lcm_timesteps(TCDConfig(), 4).final_steps().tolist()
            [False, False, False, True]
        """
        return np.asarray(
            [
                lcm_final_step(i, self.num_inference_steps)
                for i in range(begin_index, len(self.timesteps))
            ],
            dtype=bool,
        )

    def noise_mask(self, begin_index: int = 0) -> np.ndarray:
        """Per step of ``timesteps[begin_index:]``, whether the reference draws noise there: every
        step that is not final."""
        return ~self.final_steps(begin_index)


def lcm_final_step(step_index: int, num_inference_steps: int) -> bool:
    """Whether the step at ``step_index`` is LCM's final step: ``step_index ==
    num_inference_steps − 1``. The final step returns the denoised sample; every other step
    draws z ~ N(0, I) (the reference's ``randn_tensor`` call) and renoises.

    Example:
        >>> [lcm_final_step(i, 4) for i in range(4)]
        [False, False, False, True]
    """
    return step_index == num_inference_steps - 1


def lcm_previous_timesteps(timesteps: Any) -> np.ndarray:
    """Each step's "previous" timestep in the reference's LCM step: ``timesteps[1:]`` followed by
    the last timestep itself (TCD uses 0 there, see :func:`tcd_core.previous_timesteps`).

    Example:
        >>> lcm_previous_timesteps([999, 759, 499, 259]).tolist()
        [759, 499, 259, 259]
    """
    t = np.asarray(timesteps, dtype=np.int64)
    return np.concatenate([t[1:], t[-1:]])


def lcm_timesteps(
    config: TCDConfig,
    num_inference_steps: int | None = None,
    *,
    original_inference_steps: int | None = None,
    timesteps: Sequence[int] | None = None,
    strength: float = 1.0,
) -> LCMPlan:
    """The LCM timestep plan, identical to diffusers' ``LCMScheduler.set_timesteps``.

    With N = ``config.num_train_timesteps`` and original_steps = ``original_inference_steps``
    (the argument, else the config's), the distillation grid is ``[k−1, 2k−1, …]`` with
    k = N // original_steps, of length L = ``int(original_steps·strength)``.

    Standard path (``num_inference_steps`` = n): the reversed grid subsampled at float64
    ``floor(i·L/n)``, i < n.

    Custom path (``timesteps``): a strictly descending list below N, trimmed by ``strength`` to
    its last ``int(n·strength)`` entries (``num_inference_steps`` keeps the untrimmed length). The
    reference's warnings (first timestep not N−1, values off the grid, longer than
    original_steps) are logged verbatim on the ``tcd_core`` logger.

    Errors: the reference's ValueErrors with the same messages under the same conditions, in the
    same order (exactly one of ``num_inference_steps``/``timesteps``; original_steps > N; then
    n > N, L // n < 1, n > original_steps; or not descending, first ≥ N), plus ValueError where the
    reference accepts nonsense or crashes: ``strength`` outside (0, 1],
    ``num_inference_steps``/``original_inference_steps`` < 1 (ZeroDivisionError there), negative
    or non-integer custom timesteps, an empty list, or a strength that keeps no custom step.

    Example:
        >>> from tcd_core import TCDConfig
        >>> lcm_timesteps(TCDConfig(), 4).timesteps.tolist()
        [999, 759, 499, 259]
        >>> lcm_timesteps(TCDConfig(), 4, original_inference_steps=50).timesteps.tolist()
        [999, 759, 499, 259]
        >>> lcm_timesteps(TCDConfig(), 4).prev_timesteps.tolist()
        [759, 499, 259, 259]
    """
    strength, original_steps = _opening_checks(
        config, num_inference_steps, timesteps, original_inference_steps, strength
    )
    n_train = config.num_train_timesteps
    origin = _distillation_grid(n_train, original_steps, strength)

    if timesteps is not None:
        chosen, n = _custom_timesteps(n_train, timesteps, origin, original_steps, strength)
        return LCMPlan(chosen, lcm_previous_timesteps(chosen), n, True)
    n = _positive_int("num_inference_steps", num_inference_steps)
    chosen = _standard_timesteps(origin, n, n_train, original_steps, strength)
    return LCMPlan(chosen, lcm_previous_timesteps(chosen), n, False)
