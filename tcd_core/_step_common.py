"""What the TCD and LCM steps share around their maths (private): the checks of a step's
arguments at the API boundary, the host-to-device handling of timestep indices, and the
clipping/thresholding of x̂₀ that both configs control the same way.

Only host facts are checked (shapes, host numbers): nothing here reads a device value or
branches on one, so the steps stay ``jax.jit`` / ``torch.compile(fullgraph=True)`` safe.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._array import is_host, is_host_scalar, namespace
from .config import TCDConfig
from .thresholding import clip_sample, dynamic_threshold

__all__ = ["as_index", "check_per_batch", "check_step_arrays", "clean_original"]

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
    """A non-negative integer host timestep, or an array given once or once per batch element
    (array values are not read)."""
    if is_host_scalar(value):
        if isinstance(value, bool) or float(value) != int(value) or int(value) < 0:
            raise ValueError(f"`{name}` must be a non-negative integer timestep, got {value!r}")
        return
    ndim = getattr(value, "ndim", None)
    if ndim is None:
        raise ValueError(f"`{name}` must be an integer or an array, got {type(value).__name__}")
    check_per_batch(name, tuple(value.shape), batch)


def check_step_arrays(
    model_output: Any, sample: Any, noise: Any, timestep: Any, prev_timestep: Any
) -> int:
    """The checks every step makes first, in this order: one namespace for ``model_output`` and
    ``sample`` (TypeError otherwise), ``model_output`` and ``noise`` (when given) of the sample's
    shape, then ``timestep`` and ``prev_timestep`` each a non-negative integer or an array given
    once or once per batch element. Returns the batch size (1 for a 0-d sample).

    Example:
        >>> import numpy as np
        >>> x = np.zeros((2, 3), np.float32)
        >>> check_step_arrays(x, x, None, 999, np.array([759, 499]))
        2
    """
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
    _check_timestep("prev_timestep", prev_timestep, batch)
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
