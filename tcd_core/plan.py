"""The TCD timestep plan: host-side integer bookkeeping (NumPy, Python ints).

The grid is the reference's ``set_timesteps`` bit for bit, including its quirks (see
``docs/parity.md``): the distillation grid ``[k−1, 2k−1, …]`` when ``original_inference_steps`` comes
from the config, ``range(0, ⌊N·strength⌋)`` when it is passed explicitly, and indices chosen with a
float64 ``floor(linspace(0, L, n, endpoint=False))``.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ._array import (
    device_of,
    has_float64,
    index_dtype,
    is_array,
    is_host,
    is_host_scalar,
    namespace,
)
from .config import TCDConfig, checked_config

__all__ = [
    "TCDPlan",
    "check_eta",
    "draws_noise",
    "intermediate_timestep",
    "previous_timesteps",
    "tcd_timesteps",
]

logger = logging.getLogger("tcd_core")


class TCDPlan(NamedTuple):
    """A timestep plan, all on the host.

    Attributes:
        timesteps: int64 array of the timesteps to visit, descending.
        prev_timesteps: int64 array, each step's next timestep p (0 after the last step).
        num_inference_steps: the step count the reference records. For custom timesteps trimmed
            by ``strength`` it keeps the untrimmed length, as the reference does; it decides at
            which step index the reference stops drawing noise (see :func:`draws_noise`).
        custom_timesteps: whether the plan came from a custom ``timesteps`` list.
    """

    timesteps: np.ndarray
    prev_timesteps: np.ndarray
    num_inference_steps: int
    custom_timesteps: bool

    def intermediate_timesteps(self, eta: float) -> np.ndarray:
        """s = ⌊f32(1−η)·f32(p)⌋ for every step, as host int64."""
        return intermediate_timestep(self.prev_timesteps, eta)

    def noise_mask(self, eta: float, begin_index: int = 0) -> np.ndarray:
        """Per step of ``timesteps[begin_index:]``, whether the reference draws noise there."""
        n = len(self.timesteps)
        return np.asarray(
            [draws_noise(i, eta, self.num_inference_steps) for i in range(begin_index, n)],
            dtype=bool,
        )


def check_eta(eta: Any) -> None:
    """ValueError unless a host-known η lies in [0, 1]; TypeError unless η is a real number or
    an array of real numbers.

    Python/NumPy numbers, NumPy arrays, lists and tuples are checked (the reference only has a
    bare ``assert``); other arrays (torch, JAX, traced) only by their dtype: their values are
    not read, since that would read the device (and is impossible under ``jax.jit``).

    Example:
        >>> check_eta(0.3)
        >>> check_eta(1.5)
        Traceback (most recent call last):
            ...
        ValueError: `eta` must be in [0, 1], got 1.5
        >>> check_eta("0.3")
        Traceback (most recent call last):
            ...
        TypeError: `eta` must be a real number in [0, 1] or an array of them, got '0.3'
    """
    allowed = "a real number in [0, 1] or an array of them"
    if isinstance(eta, (bool, np.bool_)):
        raise ValueError(f"`eta` must be in [0, 1], got {eta!r}")
    if is_host_scalar(eta):
        if not isinstance(eta, numbers.Real):
            raise TypeError(f"`eta` must be {allowed}, got {eta!r}")
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"`eta` must be in [0, 1], got {eta!r}")
        return
    if isinstance(eta, (list, tuple, np.ndarray)):
        try:
            host = np.asarray(eta)
        except (TypeError, ValueError):
            host = np.asarray(None)
        if host.dtype.kind not in "iuf":
            raise TypeError(f"`eta` must be {allowed}, got {eta!r}")
        if host.size and not np.all((host >= 0) & (host <= 1)):
            raise ValueError(f"`eta` must be in [0, 1], got {eta!r}")
        return
    if not is_array(eta):
        raise TypeError(f"`eta` must be {allowed}, got {eta!r}")
    if not namespace(eta).isdtype(eta.dtype, ("real floating", "integral")):
        raise TypeError(f"`eta` must be a real-valued array, got dtype {eta.dtype}")


def draws_noise(step_index: int, eta: float, num_inference_steps: int) -> bool:
    """Whether the reference draws z ~ N(0, I) at this step: η > 0 and not the last step.

    "Last" means ``step_index == num_inference_steps − 1`` with the reference's (possibly
    untrimmed) ``num_inference_steps``. Where no noise is drawn the re-noising ratio is exactly 1,
    so x_p = x_s with or without noise; this only decides whether a generator advances.

    Example:
        >>> [draws_noise(i, 0.3, 4) for i in range(4)]
        [True, True, True, False]
        >>> draws_noise(0, 0.0, 4)
        False
    """
    try:
        positive = bool(eta > 0)
    except TypeError:
        check_eta(eta)  # names `eta` and what it may be
        raise
    return positive and step_index != num_inference_steps - 1


def previous_timesteps(timesteps: Any) -> np.ndarray:
    """Each step's next timestep p: ``timesteps[1:]`` followed by 0.

    Example:
        >>> previous_timesteps([999, 759, 499, 259]).tolist()
        [759, 499, 259, 0]
    """
    t = np.asarray(timesteps, dtype=np.int64)
    return np.concatenate([t[1:], np.zeros(1, dtype=np.int64)])


def intermediate_timestep(prev_timestep: Any, eta: Any = None, *, one_minus_eta: Any = None) -> Any:
    """The intermediate timestep s = ⌊f32(1−η) · f32(p)⌋ of Strategic Stochastic Sampling.

    As in the reference, ``1 − η`` is evaluated in η's own precision (a Python float: double),
    rounded to float32 and multiplied by p in float32. Float64 arithmetic gives a different s for
    some inputs (η = 0.3, p = 90: 63 here, 62 in float64), so this is not ``int((1-eta)*p)``.

    Host inputs (Python/NumPy numbers and arrays) give host int64 results; Array API arrays give
    arrays of the namespace's index dtype on their device, with no host synchronisation. For a
    float32 η array, ``1 − η`` is rounded twice (η itself, then the difference); pass η as a
    Python float or float64 array to match the reference exactly — or, inside a compiled loop
    where η is a traced float32, pass ``one_minus_eta`` = f32(1 − η) computed once on the host
    (``np.float32(1.0 - eta)``) instead of ``eta``.

    Example:
        >>> int(intermediate_timestep(90, 0.3)), int(intermediate_timestep(10, 0.9))
        (63, 1)
        >>> import numpy as np
        >>> int(intermediate_timestep(90, one_minus_eta=np.float32(1.0 - 0.3)))
        63
    """
    if (eta is None) == (one_minus_eta is None):
        raise ValueError("pass exactly one of `eta` and `one_minus_eta`")
    if eta is None:
        return _floor_product(prev_timestep, one_minus_eta)
    check_eta(eta)
    if is_host(eta):
        # Host η: 1 − η in double precision, rounded once to float32, as the reference does.
        return _floor_product(prev_timestep, np.float32(1.0 - np.asarray(eta, dtype=np.float64)))
    xp = namespace(prev_timestep, eta)
    device = device_of(eta if is_host(prev_timestep) else prev_timestep)
    if is_host_scalar(eta):
        one_minus = xp.asarray(float(1.0 - eta), dtype=xp.float32, device=device)
    else:
        eta = xp.asarray(eta, device=device)
        if eta.dtype == xp.float64 or (eta.dtype != xp.float32 and has_float64(xp, device)):
            one_minus = xp.astype(1.0 - xp.astype(eta, xp.float64), xp.float32)
        else:
            one_minus = 1.0 - xp.astype(eta, xp.float32)
    return _floor_product(prev_timestep, one_minus)


def _floor_product(prev_timestep: Any, one_minus_eta: Any) -> Any:
    """⌊f32(1−η)·f32(p)⌋ from a float32 ``one_minus_eta``; host in, host out."""
    if is_host(prev_timestep) and is_host(one_minus_eta):
        one_minus = np.asarray(one_minus_eta, dtype=np.float32)
        s = np.floor(one_minus * np.asarray(prev_timestep).astype(np.float32))
        return s.astype(np.int64)
    device_args = [v for v in (prev_timestep, one_minus_eta) if not is_host(v)]
    xp = namespace(*device_args)
    device = device_of(device_args[0])
    if is_host(one_minus_eta):  # float32 values are exact as doubles: no rounding on the way
        one_minus_eta = np.asarray(one_minus_eta, dtype=np.float32).astype(np.float64).tolist()
    one_minus = xp.astype(xp.asarray(one_minus_eta, device=device), xp.float32)
    p = xp.asarray(prev_timestep, device=device)
    s = xp.floor(one_minus * xp.astype(p, xp.float32))
    return xp.astype(s, index_dtype(xp, device))


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


def tcd_timesteps(
    config: TCDConfig,
    num_inference_steps: int | None = None,
    *,
    original_inference_steps: int | None = None,
    timesteps: Sequence[int] | None = None,
    strength: float = 1.0,
) -> TCDPlan:
    """The TCD timestep plan, identical to the reference's ``set_timesteps``.

    Standard path (``num_inference_steps`` = n): the distillation grid has length L; reversed, it is
    subsampled at ``floor(i·L/n)`` (float64, as in the reference). With ``original_inference_steps``
    from the config, k = N // original_steps and the grid is ``[k−1, 2k−1, …]`` of length
    ``int(original_steps·strength)``; passed explicitly (even with the config's value), the grid is
    ``range(0, int(N·strength))``.

    Custom path (``timesteps``): a strictly descending list below N, trimmed by ``strength``
    (``num_inference_steps`` keeps the untrimmed length). The reference's warnings (first
    timestep not N−1, values off the grid, longer than original_steps) are logged verbatim on the
    ``tcd_core`` logger.

    Errors: the reference's ValueErrors under the same conditions, plus ValueError where the
    reference silently accepts nonsense: ``strength`` outside (0, 1], ``num_inference_steps`` < 1,
    negative or non-integer custom timesteps, an empty list, or a strength that leaves no step.

    Example:
        >>> from tcd_core import TCDConfig
        >>> tcd_timesteps(TCDConfig(), 4).timesteps.tolist()
        [999, 759, 499, 259]
        >>> tcd_timesteps(TCDConfig(), 4, original_inference_steps=50).timesteps.tolist()
        [999, 749, 499, 249]
    """
    strength, original_steps = _opening_checks(
        config, num_inference_steps, timesteps, original_inference_steps, strength
    )
    n_train = config.num_train_timesteps

    # 1. The distillation grid the model was trained on.
    if original_inference_steps is None:
        origin = _distillation_grid(n_train, original_steps, strength)
    else:
        origin = np.arange(0, int(n_train * strength), dtype=np.int64)

    if timesteps is not None:
        return _custom_plan(config, timesteps, origin, original_steps, strength)

    n = _positive_int("num_inference_steps", num_inference_steps)
    chosen = _standard_timesteps(origin, n, n_train, original_steps, strength)
    return TCDPlan(chosen, previous_timesteps(chosen), n, False)


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


def _custom_plan(
    config: TCDConfig,
    timesteps: Sequence[Any],
    origin: np.ndarray,
    original_steps: int,
    strength: float,
) -> TCDPlan:
    chosen, n = _custom_timesteps(
        config.num_train_timesteps, timesteps, origin, original_steps, strength
    )
    return TCDPlan(chosen, previous_timesteps(chosen), n, True)


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
