"""What the TCD and LCM steps share around their maths (private): the checks of a step's
arguments at the API boundary, the host-to-device handling of timestep indices, and the
clipping/thresholding of x̂₀ that both configs control the same way.

Only host facts are checked (shapes, host numbers): nothing here reads a device value or
branches on one, so the steps stay ``jax.jit`` / ``torch.compile(fullgraph=True)`` safe.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from ._array import is_array, is_host, is_host_scalar, namespace
from .config import TCDConfig
from .thresholding import clip_sample, dynamic_threshold

__all__ = [
    "as_index",
    "check_array",
    "check_index",
    "check_indices",
    "check_order",
    "check_per_batch",
    "check_step_arrays",
    "check_table",
    "clean_original",
    "former_names",
]

_F = TypeVar("_F", bound=Callable[..., Any])


def former_names(**renamed: str) -> Callable[[_F], _F]:
    """A decorator: keyword arguments under their former names (``former="current"``) keep
    working, so a rename breaks no caller; passing both names is a TypeError.

    Example:
        >>> @former_names(prev_timestep="next_timestep")
        ... def f(next_timestep):
        ...     return next_timestep
        >>> f(prev_timestep=3)
        3
    """

    def decorate(function: _F) -> _F:
        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            if kwargs and not renamed.keys().isdisjoint(kwargs):
                for former, current in renamed.items():
                    if former in kwargs:
                        if current in kwargs:
                            raise TypeError(
                                f"pass `{current}` only (`{former}` is its former name)"
                            )
                        kwargs[current] = kwargs.pop(former)
            return function(*args, **kwargs)

        return call  # type: ignore[return-value]

    return decorate


#: How a per-batch argument may look, as the error messages say it.
SCALAR_OR_VECTOR = "a scalar or a 1-D array"


def check_per_batch(
    name: str, shape: tuple[int, ...], batch: int, allowed: str = SCALAR_OR_VECTOR
) -> None:
    """ValueError unless ``shape`` is ``()`` or ``(batch,)``: an argument given once or once per
    batch element. ``allowed`` words the accepted forms in the message.

    Example:
        >>> check_per_batch("eta", (2,), 2)
        >>> check_per_batch("eta", (3,), 2)
        Traceback (most recent call last):
            ...
        ValueError: `eta` must be a scalar or a 1-D array with one entry per batch element (2), ...
    """
    if len(shape) > 1 or (len(shape) == 1 and shape[0] != batch):
        raise ValueError(
            f"`{name}` must be {allowed} with one entry per batch element ({batch}), "
            f"got shape {shape}"
        )


def _check_timestep(name: str, value: Any, batch: int) -> None:
    """A host timestep, or an array given once or once per batch element. Only the form is
    checked here; :func:`check_index` checks the values against the table."""
    if is_host_scalar(value):
        return
    ndim = getattr(value, "ndim", None)
    if ndim is None:
        raise TypeError(
            f"`{name}` must be an integer or an integer array, got {type(value).__name__}"
        )
    check_per_batch(name, tuple(value.shape), batch)


def check_array(name: str, value: Any, optional: bool = False) -> None:
    """TypeError unless ``value`` is an array (or None when ``optional``)."""
    if (value is None and optional) or is_array(value):
        return
    allowed = "an array or None" if optional else "an array"
    raise TypeError(f"`{name}` must be {allowed}, got {type(value).__name__}")


def check_table(alphas_cumprod: Any) -> int:
    """The ᾱ table's length: TypeError unless it is an array, ValueError unless it is 1-D and
    not empty (a shape, known without reading the device).

    Example:
        >>> import numpy as np
        >>> check_table(np.ones(1000, np.float32))
        1000
        >>> check_table(np.ones((1, 1000), np.float32))
        Traceback (most recent call last):
            ...
        ValueError: `alphas_cumprod` must be a 1-D array (the ᾱ table, one entry per training timestep), got shape (1, 1000)
    """
    check_array("alphas_cumprod", alphas_cumprod)
    shape = tuple(alphas_cumprod.shape)
    if len(shape) != 1 or shape[0] == 0:
        raise ValueError(
            "`alphas_cumprod` must be a 1-D array (the ᾱ table, one entry per training "
            f"timestep), got shape {shape}"
        )
    return int(shape[0])


def check_index(name: str, value: Any, size: int) -> None:
    """A timestep that indexes the ᾱ table of length ``size``.

    Host values (Python/NumPy numbers and arrays, lists) must be integers in [0, size − 1]
    (ValueError; TypeError for a non-numeric type). Other arrays must have an integer dtype
    (TypeError); their values are not read (a device read, impossible under ``jax.jit``).

    Example:
        >>> check_index("timestep", 1000, 1000)
        Traceback (most recent call last):
            ...
        ValueError: `timestep` must be an integer in [0, 999] (an index into `alphas_cumprod`), got 1000
    """
    allowed = f"an integer in [0, {size - 1}] (an index into `alphas_cumprod`)"
    if is_host_scalar(value):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"`{name}` must be {allowed}, got {value!r}")
        v = float(value)
        if not (math.isfinite(v) and v == int(v) and 0 <= v <= size - 1):
            raise ValueError(f"`{name}` must be {allowed}, got {value!r}")
        return
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iu":
            raise TypeError(
                f"`{name}` must be {allowed} or an integer array, got dtype {value.dtype}"
            )
        if value.size and (value.min() < 0 or value.max() > size - 1):
            raise ValueError(f"`{name}` must be {allowed}, got {value.tolist()}")
        return
    if not is_array(value):
        raise TypeError(
            f"`{name}` must be {allowed} or an integer array, got {type(value).__name__}"
        )
    if not namespace(value).isdtype(value.dtype, "integral"):
        raise TypeError(f"`{name}` must be an integer array, got dtype {value.dtype}")


def check_order(name: str, value: Any, upper_name: str, upper: Any) -> None:
    """ValueError when host values have ``value`` > ``upper`` (elementwise): sampling runs from
    high timesteps to low, so the next timestep never exceeds the current one (equal is allowed:
    LCM's last step, and plans the reference builds that way). Arrays that are not on the host
    are not read."""
    if is_host_scalar(value) and is_host_scalar(upper):
        above = value > upper
    elif is_host(value) and is_host(upper):
        above = np.any(np.asarray(value) > np.asarray(upper))
    else:
        return
    if above:
        raise ValueError(
            f"`{name}` ({_shown(value)}) must not exceed `{upper_name}` ({_shown(upper)}): "
            "sampling runs from high timesteps to low"
        )


def _shown(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def check_indices(alphas_cumprod: Any, timestep: Any, next_timestep: Any) -> int:
    """The checks of a step's coefficients: the table (:func:`check_table`), ``timestep`` and
    ``next_timestep`` (:func:`check_index`), ``next_timestep`` ≤ ``timestep`` for host values
    (:func:`check_order`). Returns the table's length."""
    size = check_table(alphas_cumprod)
    check_index("timestep", timestep, size)
    check_index("next_timestep", next_timestep, size)
    check_order("next_timestep", next_timestep, "timestep", timestep)
    return size


def check_step_arrays(
    model_output: Any, sample: Any, noise: Any, timestep: Any, next_timestep: Any
) -> int:
    """The checks every step makes first, in this order: ``model_output``, ``sample`` (and
    ``noise`` when given) arrays (TypeError otherwise) of one namespace, ``model_output`` and
    ``noise`` of the sample's shape, then ``timestep`` and ``next_timestep`` each a host number
    or an array given once or once per batch element. Returns the batch size (1 for a 0-d
    sample).

    Example:
        >>> import numpy as np
        >>> x = np.zeros((2, 3), np.float32)
        >>> check_step_arrays(x, x, None, 999, np.array([759, 499]))
        2
    """
    check_array("model_output", model_output)
    check_array("sample", sample)
    check_array("noise", noise, optional=True)
    namespace(model_output, sample)  # one namespace for both (TypeError otherwise)
    if tuple(model_output.shape) != tuple(sample.shape):
        raise ValueError(
            f"`model_output` must have the sample's shape {tuple(sample.shape)}, "
            f"got {tuple(model_output.shape)}"
        )
    if noise is not None and tuple(noise.shape) != tuple(sample.shape):
        raise ValueError(
            f"`noise` must have the sample's shape {tuple(sample.shape)}, got {tuple(noise.shape)}"
        )
    batch: int = sample.shape[0] if sample.ndim else 1
    _check_timestep("timestep", timestep, batch)
    _check_timestep("next_timestep", next_timestep, batch)
    return batch


def as_index(value: Any, xp: Any, device: Any) -> Any:
    """A timestep ready to index the ᾱ table: host integers stay Python ints (plain indexing,
    as in the reference); host arrays move to the table's namespace and device; device arrays
    pass through untouched."""
    if is_host_scalar(value):
        return int(value)
    if is_host(value):
        host = np.asarray(value)
        return int(host) if host.ndim == 0 else xp.asarray(host, device=device)
    return value


def clean_original(x0: Any, config: TCDConfig) -> Any:
    """x̂₀ dynamically thresholded when ``config.thresholding``, else clipped when
    ``config.clip_sample``, else as given (the reference's precedence; a config flag, never an
    array value, decides).

    Example:
        >>> import numpy as np
        >>> clean_original(np.array([-3.0, 0.5]), TCDConfig(clip_sample=True)).tolist()
        [-1.0, 0.5]
    """
    if config.thresholding:
        return dynamic_threshold(x0, config.dynamic_thresholding_ratio, config.sample_max_value)
    if config.clip_sample:
        return clip_sample(x0, config.clip_sample_range)
    return x0
