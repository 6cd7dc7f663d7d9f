"""The timestep plan of both algorithms: host-side integer bookkeeping (NumPy, Python ints).

One plan type (:class:`Plan`) and one function (:func:`plan_timesteps`) serve every
:class:`~tcd_core.Algorithm`; :func:`tcd_timesteps` and :func:`lcm_timesteps` are its two named
configurations. The grid is the reference's ``set_timesteps`` bit for bit, including its quirks
(see ``docs/parity.md``): the distillation grid ``[k−1, 2k−1, …]``; for TCD only, ``range(0,
⌊N·strength⌋)`` when ``original_inference_steps`` is passed explicitly; indices chosen with a
float64 ``floor(linspace(0, L, n, endpoint=False))``; custom timesteps trimmed by ``strength``
keep the untrimmed ``num_inference_steps``.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .algorithms import LCM, TCD, Algorithm, check_eta, intermediate_timestep, lcm_final_step
from .config import TCDConfig, checked_config

__all__ = [
    "LCMPlan",
    "Plan",
    "TCDPlan",
    "lcm_previous_timesteps",
    "lcm_timesteps",
    "next_timesteps",
    "plan_timesteps",
    "previous_timesteps",
    "tcd_timesteps",
]

logger = logging.getLogger("tcd_core")


class Plan(NamedTuple):
    """A timestep plan, all on the host, for either algorithm.

    Attributes:
        timesteps: int64 array of the timesteps to visit, descending.
        next_timesteps: int64 array, each step's next timestep: the next entry, and after the last
            entry 0 (TCD) or the last timestep itself (LCM), the references' rules
            (:func:`next_timesteps`). ``prev_timesteps`` is the same array under diffusers' name.
        num_inference_steps: the step count the reference records. For custom timesteps trimmed
            by ``strength`` it keeps the untrimmed length, as the reference does; it decides which
            step is final (:meth:`final_steps`).
        custom_timesteps: whether the plan came from a custom ``timesteps`` list.
        algorithm: the :class:`~tcd_core.Algorithm` the plan is for (:data:`~tcd_core.TCD` by
            default).
    """

    timesteps: np.ndarray
    next_timesteps: np.ndarray
    num_inference_steps: int
    custom_timesteps: bool
    algorithm: Algorithm = TCD

    @property
    def prev_timesteps(self) -> np.ndarray:
        """:attr:`next_timesteps` under the name diffusers gives it (it holds the *next*
        timestep of each step; kept as an alias)."""
        return self.next_timesteps

    def final_steps(self, begin_index: int = 0) -> np.ndarray:
        """Per step of ``timesteps[begin_index:]``, whether it is the reference's final step
        (``step_index == num_inference_steps − 1``): no noise is drawn there, and LCM returns its
        denoised sample. At most one entry is True; none for trimmed custom plans.

        Example:
            >>> from tcd_core import TCDConfig
            >>> lcm_timesteps(TCDConfig(), 4).final_steps().tolist()
            [False, False, False, True]
        """
        steps = range(begin_index, len(self.timesteps))
        return np.asarray([lcm_final_step(i, self.num_inference_steps) for i in steps], dtype=bool)

    def noise_mask(self, eta: Any = None, begin_index: int = 0) -> np.ndarray:
        """Per step of ``timesteps[begin_index:]``, whether the reference draws noise there
        (:meth:`Algorithm.draws <tcd_core.Algorithm.draws>`): TCD plans need ``eta`` (η > 0 and
        not final), LCM plans take none (every step that is not final).

        Example:
            >>> from tcd_core import TCDConfig
            >>> tcd_timesteps(TCDConfig(), 4).noise_mask(0.3).tolist()
            [True, True, True, False]
        """
        if self.algorithm.has_eta:
            check_eta(eta)  # None too: a TCD plan draws where η > 0
        elif eta is not None:
            raise ValueError(f"`eta` must be None: an {self.algorithm!r} plan has no η")
        final = self.final_steps(begin_index)
        return np.asarray([self.algorithm.draws(eta, bool(f)) for f in final], dtype=bool)

    def intermediate_timesteps(self, eta: float) -> np.ndarray:
        """TCD's s = ⌊f32(1−η)·f32(p)⌋ for every step, as host int64
        (:func:`~tcd_core.intermediate_timestep`)."""
        return np.asarray(intermediate_timestep(self.next_timesteps, eta))


#: The plan type under its former names (one type serves both algorithms).
TCDPlan = Plan
LCMPlan = Plan


def next_timesteps(timesteps: Any, algorithm: Algorithm = TCD) -> np.ndarray:
    """Each step's next timestep: ``timesteps[1:]`` followed by 0 (TCD) or by the last timestep
    itself (LCM), the references' rules.

    Example:
        >>> next_timesteps([999, 759, 499, 259]).tolist()
        [759, 499, 259, 0]
        >>> from tcd_core import LCM
        >>> next_timesteps([999, 759, 499, 259], LCM).tolist()
        [759, 499, 259, 259]
    """
    t = np.asarray(timesteps, dtype=np.int64)
    last = t[-1:] if algorithm.next_after_last == "own" else np.zeros(1, dtype=np.int64)
    return np.concatenate([t[1:], last])


def previous_timesteps(timesteps: Any) -> np.ndarray:
    """TCD's :func:`next_timesteps` under its former name.

    Example:
        >>> previous_timesteps([999, 759, 499, 259]).tolist()
        [759, 499, 259, 0]
    """
    return next_timesteps(timesteps, TCD)


def lcm_previous_timesteps(timesteps: Any) -> np.ndarray:
    """LCM's :func:`next_timesteps` under its former name.

    Example:
        >>> lcm_previous_timesteps([999, 759, 499, 259]).tolist()
        [759, 499, 259, 259]
    """
    return next_timesteps(timesteps, LCM)


def _check_strength(strength: Any) -> float:
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real):
        raise ValueError(f"`strength` must be a number in (0, 1], got {strength!r}")
    if not 0.0 < float(strength) <= 1.0:
        raise ValueError(f"`strength` must be in (0, 1], got {strength!r}")
    return float(strength)


def _check_custom(timesteps: Sequence[Any], num_train_timesteps: int) -> list[int]:
    if isinstance(timesteps, (str, bytes)) or not hasattr(timesteps, "__iter__"):
        raise TypeError(
            f"`timesteps` must be a sequence of integers, got {type(timesteps).__name__}"
        )
    if getattr(timesteps, "ndim", 1) != 1:
        shape = tuple(getattr(timesteps, "shape", ()))
        raise ValueError(f"`timesteps` must be a 1-D sequence of integers, got shape {shape}")
    values = list(timesteps)
    if not values:
        raise ValueError("`timesteps` must be a non-empty list of integers")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            if hasattr(v, "item") and getattr(v, "ndim", 1) == 0 and float(v) == int(v):
                v = int(v)
            else:
                raise ValueError(f"`timesteps` must contain integers, got {v!r}")
        if v < 0:
            raise ValueError(
                f"`timesteps` must lie in [0, {num_train_timesteps}), got negative value {int(v)}"
            )
        out.append(int(v))
    return out


def plan_timesteps(
    algorithm: Algorithm,
    config: TCDConfig,
    num_inference_steps: int | None = None,
    *,
    original_inference_steps: int | None = None,
    timesteps: Sequence[int] | None = None,
    strength: float = 1.0,
) -> Plan:
    """The ``algorithm``'s timestep plan, identical to its reference's ``set_timesteps``.

    With N = ``config.num_train_timesteps`` and original_steps = ``original_inference_steps``
    (the argument, else the config's), the distillation grid is ``[k−1, 2k−1, …]`` with
    k = N // original_steps, of length L = ``int(original_steps·strength)``. For TCD only, an
    explicitly passed ``original_inference_steps`` (even the config's value) makes the grid
    ``range(0, int(N·strength))`` instead (the reference's quirk; LCM's grid is the same either
    way, and original_steps > N is an error there whatever its source).

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
    ``num_inference_steps``/``original_inference_steps`` < 1, negative or non-integer custom
    timesteps, an empty list, or a strength that keeps no custom step.

    Example:
        >>> from tcd_core import LCM, TCD, TCDConfig
        >>> plan_timesteps(TCD, TCDConfig(), 4).timesteps.tolist()
        [999, 759, 499, 259]
        >>> plan_timesteps(TCD, TCDConfig(), 4, original_inference_steps=50).timesteps.tolist()
        [999, 749, 499, 249]
        >>> plan_timesteps(LCM, TCDConfig(), 4, original_inference_steps=50).timesteps.tolist()
        [999, 759, 499, 259]
    """
    if not isinstance(algorithm, Algorithm):
        raise TypeError(
            f"`algorithm` must be tcd_core.TCD or tcd_core.LCM, got {type(algorithm).__name__}"
        )
    strength, original_steps = _opening_checks(
        config, num_inference_steps, timesteps, original_inference_steps, strength
    )
    n_train = config.num_train_timesteps

    # 1. The distillation grid the model was trained on.
    if original_inference_steps is not None and algorithm.explicit_grid == "range":
        origin = np.arange(0, int(n_train * strength), dtype=np.int64)
    else:
        origin = _distillation_grid(n_train, original_steps, strength)

    # 2. The timesteps the loop visits.
    if timesteps is not None:
        chosen, n = _custom_timesteps(n_train, timesteps, origin, original_steps, strength)
    else:
        n = _positive_int("num_inference_steps", num_inference_steps)
        chosen = _standard_timesteps(origin, n, n_train, original_steps, strength)
    return Plan(chosen, next_timesteps(chosen, algorithm), n, timesteps is not None, algorithm)


def tcd_timesteps(
    config: TCDConfig, num_inference_steps: int | None = None, **options: Any
) -> Plan:
    """TCD's plan: :func:`plan_timesteps` with :data:`~tcd_core.TCD` (``options``:
    ``original_inference_steps``, ``timesteps``, ``strength``), identical to diffusers'
    ``TCDScheduler.set_timesteps``.

    Example:
        >>> from tcd_core import TCDConfig
        >>> tcd_timesteps(TCDConfig(), 4).timesteps.tolist()
        [999, 759, 499, 259]
        >>> tcd_timesteps(TCDConfig(), 4, original_inference_steps=50).timesteps.tolist()
        [999, 749, 499, 249]
    """
    return plan_timesteps(TCD, config, num_inference_steps, **options)


def lcm_timesteps(
    config: TCDConfig, num_inference_steps: int | None = None, **options: Any
) -> Plan:
    """LCM's plan: :func:`plan_timesteps` with :data:`~tcd_core.LCM` (``options``:
    ``original_inference_steps``, ``timesteps``, ``strength``), identical to diffusers'
    ``LCMScheduler.set_timesteps``.

    Example:
        >>> from tcd_core import TCDConfig
        >>> lcm_timesteps(TCDConfig(), 4, original_inference_steps=50).timesteps.tolist()
        [999, 759, 499, 259]
        >>> lcm_timesteps(TCDConfig(), 4).next_timesteps.tolist()
        [759, 499, 259, 259]
    """
    return plan_timesteps(LCM, config, num_inference_steps, **options)


def _opening_checks(
    config: TCDConfig,
    num_inference_steps: int | None,
    timesteps: Sequence[Any] | None,
    original_inference_steps: int | None,
    strength: Any,
) -> tuple[float, int]:
    """The checks that open both plans (TCD's and LCM's), in the reference's order: exactly one
    of ``num_inference_steps`` / ``timesteps`` (the reference's two messages, naming the
    argument ``timesteps`` where the reference says ``custom_timesteps``), ``strength`` in
    (0, 1], an explicit ``original_inference_steps`` ≥ 1. Returns (strength as a float,
    original_steps: the argument, else the config's)."""
    checked_config(config, optional=False)
    if num_inference_steps is None and timesteps is None:
        raise ValueError("Must pass exactly one of `num_inference_steps` or `timesteps`.")
    if num_inference_steps is not None and timesteps is not None:
        raise ValueError("Can only pass one of `num_inference_steps` or `timesteps`.")
    checked_strength = _check_strength(strength)
    if original_inference_steps is not None:
        original_steps = _positive_int("original_inference_steps", original_inference_steps)
    else:
        original_steps = config.original_inference_steps
    return checked_strength, original_steps


def _distillation_grid(n_train: int, original_steps: int, strength: float) -> np.ndarray:
    """The distillation grid ``[k−1, 2k−1, …]``, k = N // original_steps, of length
    ``int(original_steps·strength)``, after the reference's error for original_steps > N (TCD
    builds it when original_steps comes from the config; LCM always)."""
    if original_steps > n_train:
        raise ValueError(
            f"`original_steps`: {original_steps} cannot be larger than `self.config.train_timesteps`:"
            f" {n_train} as the unet model trained with this scheduler can only handle"
            f" maximal {n_train} timesteps."
        )
    k = n_train // original_steps
    return np.arange(1, int(original_steps * strength) + 1, dtype=np.int64) * k - 1


def _standard_timesteps(
    origin: np.ndarray, n: int, n_train: int, original_steps: int, strength: float
) -> np.ndarray:
    """The reference's standard path (shared by the TCD and LCM plans): its three ValueErrors in
    its order, then ``n`` entries of the reversed grid at float64 ``floor(i·L/n)``."""
    if n > n_train:
        raise ValueError(
            f"`num_inference_steps`: {n} cannot be larger than `self.config.train_timesteps`:"
            f" {n_train} as the unet model trained with this scheduler can only handle"
            f" maximal {n_train} timesteps."
        )
    if len(origin) // n < 1:
        raise ValueError(
            f"The combination of `original_steps x strength`: {original_steps} x {strength} is smaller than "
            f"`num_inference_steps`: {n}. Make sure to either reduce `num_inference_steps` to a value smaller "
            f"than {int(original_steps * strength)} or increase `strength` to a value higher than "
            f"{float(n / original_steps)}."
        )
    if n > original_steps:
        raise ValueError(
            f"`num_inference_steps`: {n} cannot be larger than `original_inference_steps`:"
            f" {original_steps} because the final timestep schedule will be a subset of the"
            f" `original_inference_steps`-sized initial timestep schedule."
        )
    origin = origin[::-1].copy()
    indices = np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)
    return origin[indices]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
    return int(value)


def _custom_timesteps(
    n_train: int,
    timesteps: Sequence[Any],
    origin: np.ndarray,
    original_steps: int,
    strength: float,
) -> tuple[np.ndarray, int]:
    """The reference's custom path (shared by the TCD and LCM plans): validation, its three
    warnings, the ``strength`` trim. Returns (kept timesteps, untrimmed length)."""
    values = _check_custom(timesteps, n_train)
    train = set(origin.tolist())
    off_grid = []
    for i in range(1, len(values)):
        if values[i] >= values[i - 1]:
            raise ValueError("`timesteps` must be in descending order.")
        if values[i] not in train:
            off_grid.append(values[i])
    if values[0] >= n_train:
        raise ValueError(f"`timesteps` must start before `self.config.train_timesteps`: {n_train}.")
    if strength == 1.0 and values[0] != n_train - 1:
        logger.warning(
            f"The first timestep on the custom timestep schedule is {values[0]}, not"
            f" `self.config.num_train_timesteps - 1`: {n_train - 1}. You may get"
            f" unexpected results when using this timestep schedule."
        )
    if off_grid:
        logger.warning(
            f"The custom timestep schedule contains the following timesteps which are not on the original"
            f" training/distillation timestep schedule: {off_grid}. You may get unexpected results"
            f" when using this timestep schedule."
        )
    if len(values) > original_steps:
        logger.warning(
            f"The number of timesteps in the custom timestep schedule is {len(values)}, which exceeds the"
            f" the length of the timestep schedule used for training: {original_steps}. You may get some"
            f" unexpected results when using this timestep schedule."
        )
    n = len(values)
    init = min(int(n * strength), n)
    start = max(n - init, 0)
    if start >= n:
        raise ValueError(
            f"`strength`={strength} keeps no step of the {n} custom timesteps "
            f"(int({n} * {strength}) == 0); raise `strength` or pass more timesteps"
        )
    return np.asarray(values[start:], dtype=np.int64), n
