"""The scheduler configuration: the reference's constructor fields, frozen and validated.

``TCDConfig`` has exactly the fields and defaults of diffusers' ``TCDScheduler.__init__`` so a
``scheduler_config.json`` written by either library loads in the other. It is a frozen, hashable
dataclass, so it can be passed as a static argument to ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "BETA_SCHEDULES",
    "FLOW_PREDICTION",
    "PREDICTION_TYPES",
    "TIMESTEP_SPACINGS",
    "TCDConfig",
]

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
"""The values :attr:`TCDConfig.beta_schedule` accepts (diffusers' names)."""
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
"""What the model predicts on the VP path: ε, x̂₀ (diffusers' ``"sample"``) or v."""
FLOW_PREDICTION = "flow_prediction"
"""The flow path's velocity v = ε − x₀ (diffusers' name; :class:`~tcd_core.FlowPath`)."""
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
"""The values :attr:`TCDConfig.timestep_spacing` accepts (validated and kept for round trips; the
TCD and LCM plans do not use it, as in the reference)."""


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a real number, got {value!r}")
    value = float(value)
    bad_lo = value <= lo if lo_open else value < lo
    if not math.isfinite(value) or bad_lo or value > hi:
        bracket = "(" if lo_open else "["
        raise ValueError(f"`{name}` must be in {bracket}{lo}, {hi}], got {value!r}")
    return value


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be a bool, got {value!r}")
    return bool(value)


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return str(value)


@dataclasses.dataclass(frozen=True)
class TCDConfig:
    """Configuration of the TCD noise schedule and step, field for field diffusers' ``TCDScheduler``.

    Every field keeps the reference's name and default. Values are validated on construction
    (``ValueError`` naming the field and its allowed range); ``trained_betas`` is stored as a tuple
    so the config stays hashable.

    Fields the reference stores but ignores are honoured here where the documentation promises a
    behaviour: ``clip_sample``/``clip_sample_range`` and ``thresholding``/
    ``dynamic_thresholding_ratio``/``sample_max_value`` act on x̂₀ in :func:`tcd_core.tcd_step`, and
    ``timestep_scaling`` feeds :func:`tcd_core.boundary_condition_scalings`. ``timestep_spacing``
    and ``steps_offset`` are validated and kept for round trips only: the TCD grid is defined by
    ``original_inference_steps`` and does not use them (as in the reference).

    Example:
        >>> from tcd_core import TCDConfig
        >>> cfg = TCDConfig.from_dict({"_class_name": "EulerDiscreteScheduler",
        ...                            "beta_schedule": "scaled_linear", "steps_offset": 1})
        >>> cfg.beta_start, cfg.original_inference_steps
        (0.00085, 50)
    """

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    trained_betas: tuple[float, ...] | None = None
    original_inference_steps: int = 50
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    set_alpha_to_one: bool = True
    steps_offset: int = 0
    prediction_type: str = "epsilon"
    thresholding: bool = False
    dynamic_thresholding_ratio: float = 0.995
    sample_max_value: float = 1.0
    timestep_spacing: str = "leading"
    timestep_scaling: float = 10.0
    rescale_betas_zero_snr: bool = False

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)
        put("num_train_timesteps", _check_int("num_train_timesteps", self.num_train_timesteps, 1))
        put("beta_start", _check_float("beta_start", self.beta_start, 0.0, 1.0))
        put("beta_end", _check_float("beta_end", self.beta_end, 0.0, 1.0))
        if self.trained_betas is None:
            put("beta_schedule", _check_choice("beta_schedule", self.beta_schedule, BETA_SCHEDULES))
        else:
            put("trained_betas", self._check_trained_betas(self.trained_betas))
        put(
            "original_inference_steps",
            _check_int("original_inference_steps", self.original_inference_steps, 1),
        )
        put("clip_sample", _check_bool("clip_sample", self.clip_sample))
        put(
            "clip_sample_range",
            _check_float("clip_sample_range", self.clip_sample_range, 0.0, math.inf, lo_open=True),
        )
        put("set_alpha_to_one", _check_bool("set_alpha_to_one", self.set_alpha_to_one))
        put("steps_offset", _check_int("steps_offset", self.steps_offset, 0))
        put(
            "prediction_type",
            _check_choice(
                "prediction_type", self.prediction_type, (*PREDICTION_TYPES, FLOW_PREDICTION)
            ),
        )
        put("thresholding", _check_bool("thresholding", self.thresholding))
        put(
            "dynamic_thresholding_ratio",
            _check_float("dynamic_thresholding_ratio", self.dynamic_thresholding_ratio, 0.0, 1.0),
        )
        put(
            "sample_max_value",
            _check_float("sample_max_value", self.sample_max_value, 0.0, math.inf, lo_open=True),
        )
        put(
            "timestep_spacing",
            _check_choice("timestep_spacing", self.timestep_spacing, TIMESTEP_SPACINGS),
        )
        put(
            "timestep_scaling",
            _check_float("timestep_scaling", self.timestep_scaling, 0.0, math.inf, lo_open=True),
        )
        put(
            "rescale_betas_zero_snr",
            _check_bool("rescale_betas_zero_snr", self.rescale_betas_zero_snr),
        )

    def _check_trained_betas(self, betas: Any) -> tuple[float, ...]:
        try:
            values = np.asarray(betas, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"`trained_betas` must be a 1-D sequence of numbers: {err}") from None
        if values.ndim != 1 or values.size != self.num_train_timesteps:
            raise ValueError(
                f"`trained_betas` must be a 1-D sequence of length num_train_timesteps="
                f"{self.num_train_timesteps}, got shape {values.shape}"
            )
        if not np.all((values >= 0.0) & (values < 1.0)):
            raise ValueError("`trained_betas` values must lie in [0, 1)")
        return tuple(float(b) for b in values)

    # ---------------------------------------------------------------- dict interchange
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names of the configuration fields, in the reference's constructor order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], **overrides: Any) -> TCDConfig:
        """Build a config from a ``scheduler_config.json``-style mapping.

        Keys that are not fields (``_class_name``, ``_diffusers_version``, other schedulers' keys
        such as ``interpolation_type``) are ignored, as diffusers' ``from_config`` does. Keyword
        ``overrides`` win over the mapping. Wrong types or values raise ``ValueError``.
        """
        if not isinstance(config, Mapping):
            raise ValueError(f"`config` must be a mapping, got {type(config).__name__}")
        names = set(cls.field_names())
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(f"unknown TCDConfig field(s): {sorted(unknown)}")
        values = {k: v for k, v in config.items() if k in names}
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict (``trained_betas`` as a list, like diffusers)."""
        out = dataclasses.asdict(self)
        if self.trained_betas is not None:
            out["trained_betas"] = list(self.trained_betas)
        return out

    def replace(self, **changes: Any) -> TCDConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


_DEFAULT = TCDConfig()


def checked_config(config: Any, optional: bool = True) -> TCDConfig:
    """``config`` itself, or (when ``optional``) the default ``TCDConfig()`` for None; TypeError
    for anything else (a dict, a diffusers config: build one with :meth:`TCDConfig.from_dict`).

    Example:
        >>> checked_config(None) == TCDConfig()
        True
    """
    if config is None and optional:
        return _DEFAULT
    if not isinstance(config, TCDConfig):
        allowed = "a tcd_core.TCDConfig" + (" (or None for the default)" if optional else "")
        raise TypeError(
            f"`config` must be {allowed}, got {type(config).__name__}; build one with "
            "TCDConfig.from_dict(...)"
        )
    return config
