"""Flow-matching σ plans: diffusers' ``FlowMatchEulerDiscreteScheduler``, bit for bit, on the host.

:class:`FlowConfig` holds the reference's constructor fields (all but ``stochastic_sampling``,
which concerns the step, not the plan); :func:`train_sigmas` is the σ table its ``__init__``
builds; :func:`flow_plan` is its ``set_timesteps``. Every float is computed with the same NumPy
calls, in the same order and dtypes, as the reference; its few torch float32 operations (the
cast, ``σ·N``, ``1 − σ``, the concatenation) are single IEEE float32 operations, written here as
the NumPy float32 operations that round alike. Only NumPy is imported (SciPy lazily, for beta
sigmas).

What the reference computes, and in which precision:

* The training table (``__init__``) is float32 throughout: ``linspace(1, N, N)`` in float32,
  ``/ N``, then the static shift ``s·σ / (1 + (s − 1)·σ)`` with ``s`` rounded to float32.
  ``sigma_min`` and ``sigma_max`` are its last and first entries as Python floats.
* The default grid of ``set_timesteps`` is float64: ``linspace(σ_max·N, σ_min·N, n) / N`` (the
  products in Python floats), shifted (or time-shifted by ``mu``) in float64, and rounded to
  float32 once at the end. Custom ``sigmas`` (or custom ``timesteps`` alone, as ``t / N``) are
  rounded to float32 first, so their shift runs in float32 (NumPy 2 rounds the Python scalars to
  the array's dtype). Karras, exponential and beta sigmas are float64 from the endpoints (taken as
  Python floats), rounded to float32 at the end.
* The default grid is shifted twice: its endpoints come from the training table, already shifted
  by ``config.shift``, and ``set_timesteps`` shifts again, so the last σ is ``shift(shift(1/N))``.
  A ``shift`` override (the reference's ``set_shift``) changes the second shift only; the
  endpoints keep ``config.shift``. With ``use_dynamic_shifting`` the table is unshifted, the grid
  is time-shifted by ``mu``, and the ``shift`` override is ignored (as ``mu`` is when not dynamic).
* ``timesteps`` are ``σ·N`` in float32, computed from the rounded σ, unless custom timesteps are
  given. With ``invert_sigmas`` the plan's σ become ``1 − σ`` and its timesteps ``(1 − σ)·N``:
  custom timesteps are then discarded, as in the reference.
* ``mu`` and ``shift`` enter as Python floats, as pipelines pass them (a NumPy float64 given
  to the reference would promote its float32 arithmetic to float64).
* Custom timesteps without custom sigmas log the reference's warning verbatim on the
  ``tcd_core`` logger.

Where the reference silently accepts nonsense (NaN or infinite σ, negative σ, a quietly ignored
setting) or fails with an unrelated error, this module raises ``ValueError`` naming the argument:

* ``shift_terminal=0.0`` (the reference tests it for truth and ignores it); ``shift_terminal`` at
  or above 1 (division by zero) or negative (negative σ);
* ``shift_terminal`` when the last shifted σ is 1, e.g. a single default step: the reference
  divides by ``1 − σ = 0`` and returns NaN;
* ``shift`` below 0.01 or beyond float32's range. For small shifts the float32 table's
  ``1 + (s − 1)·σ`` cancels: its top σ misses 1 by up to ``2⁻²⁵/s``, which the second shift of
  the default grid divides by ``s`` again. The reference's first σ is 1.0002 at ``s = 0.005``,
  1.013 at 0.001, 0.376 at 1e-4, 0.0073 at 1e-5, NaN below 2⁻²⁵ (an infinite table top);
* ``mu`` outside [-80, 80] for ``time_shift_type="exponential"`` (``exp(mu)`` must stay a
  normal float32: beyond, σ are NaN), outside [1e-30, 1e30] for ``"linear"`` (``mu = 0`` gives
  NaN, a negative ``mu`` σ outside [0, 1]);
* custom ``sigmas`` outside [0, 1] or non-finite, custom ``timesteps`` outside [0, N] or
  non-finite, empty or non-1-D sequences, a missing step count (the reference fails with a
  ``TypeError``), and ``num_inference_steps`` that is not an integer ≥ 1 (0 gives an empty plan);
* σ that ``shift_terminal`` stretches out of [0, 1] (beyond the 2⁻¹⁰ that rounding could
  explain): custom σ that do not end at their smallest value, or whose last σ is shifted to
  about 1 (the stretch divides by ``1 − σ_last``, which may be tiny or negative). The reference
  returns negative σ, σ in the hundred thousands, or complex Karras σ cast to real. Exponential
  sigmas from an end σ of 0 (the reference's ``math domain error``);
* ``num_train_timesteps`` above 2²⁴ (its float32 ``linspace`` is no longer exact: repeated
  entries) and ``base_image_seq_len >= max_image_seq_len`` (pipelines divide by their difference).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "TIME_SHIFT_TYPES",
    "FlowConfig",
    "FlowPlan",
    "flow_plan",
    "train_sigma_range",
    "train_sigmas",
]

logger = logging.getLogger("tcd_core")

TIME_SHIFT_TYPES = ("exponential", "linear")
"""The values :attr:`FlowConfig.time_shift_type` accepts (diffusers' names)."""

_MAX_TRAIN_TIMESTEPS = 2**24  # the float32 linspace(1, N, N) is exact up to here
_SHIFT_MIN = 0.01  # below, the float32 table's top σ drifts from 1 and the grid with it
_F32_MAX = float(np.finfo(np.float32).max)
_SIGMA_MAX = 1.0 + 2.0**-10  # σ above 1 from rounding: under 3e-4 for every accepted shift
_MU_EXP_MAX = 80.0  # exp(±80) stays a normal float32
_MU_LINEAR = (1e-30, 1e30)  # a normal float32, well inside its range
_RHO = 7.0  # Karras et al.'s ρ, as the reference hard-codes it
_BETA_ALPHA = _BETA_BETA = 0.6  # the reference's beta-sigma parameters


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Integral)
    if not ok or value < lo or (hi is not None and value > hi):
        allowed = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        raise ValueError(f"`{name}` must be {allowed}, got {value!r}")
    return int(value)


def _check_real(name: str, value: Any, lo: float, hi: float, *, open_: bool = False) -> float:
    """A finite real in [lo, hi] (or (lo, hi) when ``open_``), as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a real number, got {value!r}")
    x = float(value)
    inside = lo < x < hi if open_ else lo <= x <= hi
    if not (math.isfinite(x) and inside):
        lb, rb = ("(", ")") if open_ else ("[", "]")
        raise ValueError(f"`{name}` must be in {lb}{lo!r}, {hi!r}{rb}, got {value!r}")
    return x


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be a bool, got {value!r}")
    return bool(value)


def _check_shift(name: str, value: Any) -> float:
    return _check_real(name, value, _SHIFT_MIN, _F32_MAX)


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """The configuration of a flow-matching σ plan: diffusers' ``FlowMatchEulerDiscreteScheduler``
    constructor fields (all but ``stochastic_sampling``), with its names and defaults.

    Frozen and hashable. Validated on construction, with ``ValueError`` naming the field and its
    allowed range: ``num_train_timesteps`` an integer in [1, 2²⁴]; ``shift`` in [0.01, float32
    max]; ``base_shift`` and ``max_shift`` None or finite; ``base_image_seq_len`` <
    ``max_image_seq_len``, both integers ≥ 1; ``shift_terminal`` None or in (0, 1); at most one of
    ``use_karras_sigmas``, ``use_exponential_sigmas``, ``use_beta_sigmas``; ``time_shift_type`` in
    :data:`TIME_SHIFT_TYPES`. The reference accepts ``shift_terminal=0.0`` (and ignores it), a
    ``shift`` too small for its float32 table (a default grid that no longer starts at 1), more than 2²⁴ training steps and equal
    sequence lengths; these raise here. ``use_beta_sigmas`` needs SciPy (``ImportError``
    otherwise, as in the reference). ``base_shift``, ``max_shift`` and the sequence lengths are
    kept for pipelines (which compute ``mu`` from them); the plan does not read them.

    Example:
        >>> from tcd_core.flow import FlowConfig
        >>> cfg = FlowConfig.from_config({"_class_name": "FlowMatchEulerDiscreteScheduler",
        ...                               "shift": 3.0, "stochastic_sampling": False})
        >>> cfg.shift, cfg.use_dynamic_shifting
        (3.0, False)
        >>> FlowConfig(shift_terminal=0.0)
        Traceback (most recent call last):
        ...
        ValueError: `shift_terminal` must be None or in (0.0, 1.0), got 0.0
    """

    num_train_timesteps: int = 1000
    shift: float = 1.0
    use_dynamic_shifting: bool = False
    base_shift: float | None = 0.5
    max_shift: float | None = 1.15
    base_image_seq_len: int = 256
    max_image_seq_len: int = 4096
    invert_sigmas: bool = False
    shift_terminal: float | None = None
    use_karras_sigmas: bool = False
    use_exponential_sigmas: bool = False
    use_beta_sigmas: bool = False
    time_shift_type: str = "exponential"

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)
        put(
            "num_train_timesteps",
            _check_int("num_train_timesteps", self.num_train_timesteps, 1, _MAX_TRAIN_TIMESTEPS),
        )
        put("shift", _check_shift("shift", self.shift))
        for name in ("base_shift", "max_shift"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"`{name}` must be None or a finite real number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"`{name}` must be None or a finite real number, got {value!r}")
            put(name, float(value))
        put("base_image_seq_len", _check_int("base_image_seq_len", self.base_image_seq_len, 1))
        put("max_image_seq_len", _check_int("max_image_seq_len", self.max_image_seq_len, 1))
        if self.max_image_seq_len <= self.base_image_seq_len:
            raise ValueError(
                f"`max_image_seq_len` must be > `base_image_seq_len`={self.base_image_seq_len}, "
                f"got {self.max_image_seq_len}"
            )
        if self.shift_terminal is not None:
            try:
                put(
                    "shift_terminal",
                    _check_real("shift_terminal", self.shift_terminal, 0.0, 1.0, open_=True),
                )
            except ValueError:
                raise ValueError(
                    f"`shift_terminal` must be None or in (0.0, 1.0), got {self.shift_terminal!r}"
                ) from None
        for name in (
            "use_dynamic_shifting",
            "invert_sigmas",
            "use_karras_sigmas",
            "use_exponential_sigmas",
            "use_beta_sigmas",
        ):
            put(name, _check_bool(name, getattr(self, name)))
        if self.use_karras_sigmas + self.use_exponential_sigmas + self.use_beta_sigmas > 1:
            raise ValueError(
                "at most one of `use_karras_sigmas`, `use_exponential_sigmas`, `use_beta_sigmas` "
                "may be True"
            )
        if self.time_shift_type not in TIME_SHIFT_TYPES:
            raise ValueError(
                f"`time_shift_type` must be one of {', '.join(map(repr, TIME_SHIFT_TYPES))}; "
                f"got {self.time_shift_type!r}"
            )
        if self.use_beta_sigmas and importlib.util.find_spec("scipy") is None:
            raise ImportError("Make sure to install scipy if you want to use beta sigmas.")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> FlowConfig:
        """A config from a diffusers config mapping (``scheduler.config``, a
        ``scheduler_config.json``): its known fields, the others (``_class_name``,
        ``stochastic_sampling``, …) ignored. Keyword ``overrides`` win over the mapping.

        Example:
            >>> FlowConfig.from_config({"shift": 3.0}, use_karras_sigmas=True).use_karras_sigmas
            True
        """
        if not isinstance(config, Mapping):
            raise ValueError(f"`config` must be a mapping, got {type(config).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(f"unknown FlowConfig field(s): {sorted(unknown)}")
        values = {k: v for k, v in config.items() if k in names}
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict, which the reference's constructor takes.

        Example:
            >>> FlowConfig().to_dict()["time_shift_type"]
            'exponential'
        """
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> FlowConfig:
        """A copy with some fields changed (validated again).

        Example:
            >>> FlowConfig().replace(shift=3.0).shift
            3.0
        """
        return dataclasses.replace(self, **changes)


def _checked(config: Any) -> FlowConfig:
    if not isinstance(config, FlowConfig):
        raise TypeError(
            f"`config` must be a tcd_core.FlowConfig, got {type(config).__name__}; "
            "build one with FlowConfig.from_config(...)"
        )
    return config


def train_sigmas(config: FlowConfig) -> np.ndarray:
    """The reference's training σ table (its ``__init__``): float32, length
    ``num_train_timesteps``, from 1 down to 1/N, shifted by ``config.shift`` unless
    ``use_dynamic_shifting``. ``scale_noise`` reads it before any plan is set.

    Example:
        >>> from tcd_core.flow import FlowConfig, train_sigmas
        >>> table = train_sigmas(FlowConfig(shift=3.0))
        >>> table.dtype, table.shape, float(table[0]), round(float(table[-1]), 6)
        (dtype('float32'), (1000,), 1.0, 0.002994)
    """
    config = _checked(config)
    n_train = config.num_train_timesteps
    timesteps = np.linspace(1, n_train, n_train, dtype=np.float32)[::-1].copy()
    sigmas = timesteps / n_train  # float32: the Python int rounds to float32 (exact)
    if not config.use_dynamic_shifting:
        shift = config.shift
        sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return sigmas


def train_sigma_range(config: FlowConfig) -> tuple[float, float]:
    """``(sigma_min, sigma_max)`` as the reference stores them: the last and first entries of
    :func:`train_sigmas`, as Python floats. They are the ends of the default grid.

    Example:
        >>> from tcd_core.flow import FlowConfig, train_sigma_range
        >>> train_sigma_range(FlowConfig(use_dynamic_shifting=True))
        (0.0010000000474974513, 1.0)
    """
    table = train_sigmas(config)
    return table[-1].item(), table[0].item()


class FlowPlan(NamedTuple):
    """A flow-matching plan, on the host: what the reference's ``set_timesteps`` leaves in
    ``timesteps``, ``sigmas`` and ``num_inference_steps``.

    Attributes:
        timesteps: float32, shape ``(n,)``: the model's time at each step (``σ·N`` unless custom).
        sigmas: float32, shape ``(n + 1,)``: each step's σ, then the terminal σ (0, or 1 with
            ``invert_sigmas``). Step ``i`` goes from ``sigmas[i]`` to ``sigmas[i + 1]``.
        num_inference_steps: ``n``.

    Example:
        >>> from tcd_core.flow import FlowConfig, flow_plan
        >>> plan = flow_plan(FlowConfig(), 2)
        >>> plan.sigmas.tolist(), plan.next_sigmas.tolist()
        ([1.0, 0.0010000000474974513, 0.0], [0.0010000000474974513, 0.0])
    """

    timesteps: np.ndarray
    sigmas: np.ndarray
    num_inference_steps: int

    @property
    def next_sigmas(self) -> np.ndarray:
        """Each step's target σ: ``sigmas[1:]``, shape ``(n,)``."""
        return self.sigmas[1:]


def _custom(name: str, values: Any, hi: float) -> np.ndarray:
    """The reference's ``np.array(values).astype(np.float32)``, checked: 1-D, not empty, real,
    finite and in [0, hi] after the rounding."""
    try:
        raw = np.array(values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be a 1-D sequence of real numbers: {err}") from None
    if raw.ndim != 1 or raw.size == 0 or raw.dtype.kind not in "iuf":
        raise ValueError(
            f"`{name}` must be a non-empty 1-D sequence of real numbers, got shape {raw.shape} "
            f"and dtype {raw.dtype}"
        )
    out = raw.astype(np.float32)
    if not np.all(np.isfinite(out) & (out >= 0) & (out <= hi)):
        raise ValueError(f"`{name}` must be finite and in [0, {hi!r}], got {out.tolist()}")
    return out


def _check_mu(mu: Any, time_shift_type: str) -> float:
    if time_shift_type == "exponential":
        return _check_real("mu", mu, -_MU_EXP_MAX, _MU_EXP_MAX)
    return _check_real("mu", mu, *_MU_LINEAR)


def _time_shift(time_shift_type: str, mu: float, t: np.ndarray) -> np.ndarray:
    """The reference's time shift with its σ exponent 1.0; ``t = 0`` (or a subnormal ``t``)
    maps to 0 through ``1/t = inf``."""
    sigma = 1.0
    with np.errstate(divide="ignore", over="ignore"):
        if time_shift_type == "exponential":
            return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)
        return mu / (mu + (1 / t - 1) ** sigma)


def _check_in_range(sigmas: np.ndarray) -> None:
    """σ in [0, 1], up to the reference's own rounding: only ``shift_terminal``'s stretch of
    custom σ that do not end at their smallest value (or end at about 1) leaves it."""
    if np.any(sigmas < 0) or np.any(sigmas > _SIGMA_MAX):
        raise ValueError(
            f"stretching to `shift_terminal` put σ outside [0, 1]: {sigmas.tolist()}; custom "
            "`sigmas` (or `timesteps`) must end at their smallest value, shifted below 1"
        )


def _karras(in_sigmas: np.ndarray, n: int) -> np.ndarray:
    sigma_min, sigma_max = in_sigmas[-1].item(), in_sigmas[0].item()
    ramp = np.linspace(0, 1, n)
    min_inv_rho = sigma_min ** (1 / _RHO)
    max_inv_rho = sigma_max ** (1 / _RHO)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** _RHO


def _exponential(in_sigmas: np.ndarray, n: int) -> np.ndarray:
    sigma_min, sigma_max = in_sigmas[-1].item(), in_sigmas[0].item()
    if sigma_min == 0 or sigma_max == 0:
        raise ValueError(
            "`use_exponential_sigmas` needs both end σ above 0 (it takes their logarithms), got "
            f"first {sigma_max!r}, last {sigma_min!r}: custom `sigmas` (or `timesteps`) must not "
            "start or end at 0 here"
        )
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), n))


def _beta(in_sigmas: np.ndarray, n: int) -> np.ndarray:
    try:
        import scipy.stats
    except ImportError:  # pragma: no cover - FlowConfig checks first
        raise ImportError("Make sure to install scipy if you want to use beta sigmas.") from None
    sigma_min, sigma_max = in_sigmas[-1].item(), in_sigmas[0].item()
    ppfs = [
        scipy.stats.beta.ppf(timestep, _BETA_ALPHA, _BETA_BETA)
        for timestep in 1 - np.linspace(0, 1, n)
    ]
    return np.array([sigma_min + (ppf * (sigma_max - sigma_min)) for ppf in ppfs])


def flow_plan(
    config: FlowConfig,
    num_inference_steps: int | None = None,
    *,
    sigmas: Any = None,
    mu: float | None = None,
    timesteps: Any = None,
    shift: float | None = None,
) -> FlowPlan:
    """The plan of diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps``, bit for bit.

    Args:
        config: the :class:`FlowConfig`.
        num_inference_steps: the step count; may be omitted when ``sigmas`` or ``timesteps`` are
            given (it is then their length), and must equal it otherwise.
        sigmas: custom σ per step (a 1-D sequence in [0, 1], rounded to float32 first, as in the
            reference); they are shifted (or time-shifted) like the default grid.
        mu: the time shift, needed when ``config.use_dynamic_shifting`` (ignored otherwise, as
            in the reference): in [-80, 80] for ``time_shift_type="exponential"``, in [1e-30,
            1e30] for ``"linear"``.
        timesteps: custom model times per step (a 1-D sequence in [0, N]). Without ``sigmas``
            they also define σ = t/N (and the reference's warning is logged); with
            ``invert_sigmas`` they are discarded, as in the reference.
        shift: overrides ``config.shift`` for the plan's shift (the reference's ``set_shift``);
            the default grid's endpoints keep ``config.shift``'s table.

    Returns:
        A :class:`FlowPlan` of host NumPy float32 arrays.

    Raises:
        ValueError: naming the argument, for anything the reference rejects and for the nonsense
            it accepts (see the module's docstring). TypeError: ``config`` is not a FlowConfig.

    Example:
        >>> from tcd_core.flow import FlowConfig, flow_plan
        >>> plan = flow_plan(FlowConfig(shift=3.0), 4)
        >>> plan.sigmas.astype(float).round(4).tolist()
        [1.0, 0.8577, 0.6022, 0.0089, 0.0]
        >>> plan.timesteps.astype(float).round(1).tolist()
        [1000.0, 857.7, 602.2, 8.9]
        >>> flow_plan(FlowConfig(use_dynamic_shifting=True), 4, mu=1.15).num_inference_steps
        4
        >>> flow_plan(FlowConfig(use_dynamic_shifting=True), 4)
        Traceback (most recent call last):
        ...
        ValueError: `mu` must be passed when `use_dynamic_shifting` is set to be `True`
    """
    config = _checked(config)
    n_train = config.num_train_timesteps
    step_shift = config.shift if shift is None else _check_shift("shift", shift)
    if config.use_dynamic_shifting:
        if mu is None:
            raise ValueError("`mu` must be passed when `use_dynamic_shifting` is set to be `True`")
        mu = _check_mu(mu, config.time_shift_type)
    custom_sigmas = None if sigmas is None else _custom("sigmas", sigmas, 1.0)
    custom_timesteps = None if timesteps is None else _custom("timesteps", timesteps, n_train)
    if (
        custom_sigmas is not None
        and custom_timesteps is not None
        and len(custom_sigmas) != len(custom_timesteps)
    ):
        raise ValueError("`sigmas` and `timesteps` should have the same length")
    if num_inference_steps is not None:
        n = _check_int("num_inference_steps", num_inference_steps, 1)
        if (custom_sigmas is not None and len(custom_sigmas) != n) or (
            custom_timesteps is not None and len(custom_timesteps) != n
        ):
            raise ValueError(
                "`sigmas` and `timesteps` should have the same length as num_inference_steps, "
                "if `num_inference_steps` is provided"
            )
    elif custom_sigmas is not None:
        n = len(custom_sigmas)
    elif custom_timesteps is not None:
        n = len(custom_timesteps)
    else:
        raise ValueError(
            "`num_inference_steps` must be given (an integer >= 1) when neither `sigmas` nor "
            "`timesteps` is"
        )

    # 1. the σ before shifting: custom (float32), t/N of custom timesteps (float32), or the
    #    default grid between the table's ends (float64)
    if custom_timesteps is not None and custom_sigmas is None:
        logger.warning(
            "`timesteps` were passed without `sigmas`. The timesteps are used as given, while the "
            "sigmas derived from them go through the scheduler's shifting, so the two may not be "
            "consistent. Pass `sigmas` to get a shifted schedule, or pass both `sigmas` and "
            "`timesteps` to control them separately."
        )
    s: np.ndarray
    if custom_sigmas is not None:
        s = custom_sigmas
    elif custom_timesteps is not None:
        s = custom_timesteps / n_train
    else:
        sigma_min, sigma_max = train_sigma_range(config)
        s = np.linspace(sigma_max * n_train, sigma_min * n_train, n) / n_train

    # 2. the shift: static, or dynamic by mu
    if config.use_dynamic_shifting:
        assert mu is not None
        s = _time_shift(config.time_shift_type, mu, s)
    else:
        s = step_shift * s / (1 + (step_shift - 1) * s)

    # 3. stretched to end at shift_terminal
    if config.shift_terminal is not None:
        one_minus_z = 1 - s
        if one_minus_z[-1] == 0:
            raise ValueError(
                "`shift_terminal` needs the last shifted σ below 1, got 1.0 (a single default "
                "step, a `shift` rounding every σ to 1, or custom `sigmas`/`timesteps` ending "
                "at 1): the reference divides by 1 − σ = 0"
            )
        scale_factor = one_minus_z[-1] / (1 - config.shift_terminal)
        s = 1 - (one_minus_z / scale_factor)

    # 4. the σ family, from the two ends
    if config.use_karras_sigmas or config.use_exponential_sigmas or config.use_beta_sigmas:
        _check_in_range(s[[0, -1]])
    if config.use_karras_sigmas:
        s = _karras(s, n)
    elif config.use_exponential_sigmas:
        s = _exponential(s, n)
    elif config.use_beta_sigmas:
        s = _beta(s, n)

    # 5. float32, as torch.from_numpy(s).to(torch.float32); timesteps = σ·N in float32
    plan_sigmas = s.astype(np.float32)
    _check_in_range(plan_sigmas)
    plan_timesteps = plan_sigmas * n_train if custom_timesteps is None else custom_timesteps

    # 6. the terminal σ: 0, or 1 for inverted σ (whose timesteps are then (1 − σ)·N)
    if config.invert_sigmas:
        plan_sigmas = 1.0 - plan_sigmas
        plan_timesteps = plan_sigmas * n_train
        plan_sigmas = np.concatenate([plan_sigmas, np.ones(1, dtype=np.float32)])
    else:
        plan_sigmas = np.concatenate([plan_sigmas, np.zeros(1, dtype=np.float32)])
    return FlowPlan(plan_timesteps, plan_sigmas, n)
