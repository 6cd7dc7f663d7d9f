"""Backends, the reference scheduler and comparison helpers shared by tests/core."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import array_api_compat
import array_api_strict
import diffusers
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import LCMScheduler, TCDScheduler

from tcd_core import LCM, TCD, Algorithm, TCDConfig

#: A test parametrised over the two algorithms (ids ``TCD``, ``LCM``): one test of the one core
#: for both, each against its own reference (:func:`reference`).
each_algorithm = pytest.mark.parametrize("algorithm", (TCD, LCM), ids=repr)

BACKENDS = ("numpy", "torch", "jax", "array_api_strict")
NON_TORCH = ("numpy", "jax", "array_api_strict")

#: floating dtypes each backend can hold (JAX runs without x64, array-api-strict has no halves).
DTYPES = {
    "numpy": ("float16", "float32", "float64"),
    "torch": ("float16", "bfloat16", "float32", "float64"),
    "jax": ("float16", "bfloat16", "float32"),
    "array_api_strict": ("float32", "float64"),
}

#: |Δ| <= TOL[dtype] * (1 + max|reference|): 1e-5 for float32 (the issue's bound); for halves a
#: few units of that dtype's machine epsilon on the same scale. float64 samples meet float32
#: coefficients (ᾱ is a float32 table, as in the reference), whose square roots torch computes
#: through MKL (1 ulp off in ~0.65 % of cases): agreement is at float32-coefficient precision.
TOL = {
    "float64": 1e-5,
    "float32": 1e-5,
    "float16": 4 * 2.0**-10,
    "bfloat16": 4 * 2.0**-7,
}

TORCH_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def backend_dtype(backend: str, name: str):
    if backend == "torch":
        return TORCH_DTYPES[name]
    if backend == "jax":
        return jnp.dtype(name)
    if backend == "array_api_strict":
        return getattr(array_api_strict, name)
    return np.dtype(name)


def to_backend(x, backend: str, dtype: str | None = None):
    """A host array (NumPy or torch) as an array of ``backend`` with dtype ``dtype``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to(torch.float64 if x.is_floating_point() else x.dtype).numpy()
    x = np.asarray(x)
    if backend == "torch":
        t = torch.from_numpy(np.array(x))
        return t if dtype is None else t.to(TORCH_DTYPES[dtype])
    if backend == "jax":
        return jnp.asarray(x) if dtype is None else jnp.asarray(x, dtype=jnp.dtype(dtype))
    if backend == "array_api_strict":
        if dtype is None:
            return array_api_strict.asarray(x)
        return array_api_strict.asarray(x.astype(dtype), dtype=getattr(array_api_strict, dtype))
    return x if dtype is None else x.astype(dtype)


def to_numpy(x) -> np.ndarray:
    """Any backend's array as a float64 (or integer) NumPy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        return (x.to(torch.float64) if x.is_floating_point() else x).numpy()
    if isinstance(x, jnp.ndarray):
        if jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        return (
            np.asarray(x).astype(np.float64) if np.asarray(x).dtype.kind == "f" else np.asarray(x)
        )
    if type(x).__module__.startswith("array_api_strict"):
        return np.from_dlpack(x).copy()
    out = np.asarray(x)
    return out.astype(np.float64) if out.dtype.kind == "f" else out


def dtype_name(x) -> str:
    return str(x.dtype).replace("torch.", "").replace("array_api_strict.", "")


def namespace_of(backend: str):
    return array_api_compat.array_namespace(to_backend(np.zeros(1, np.float32), backend))


#: the largest |Δ|/(1+max|ref|) seen per dtype in this session (reported by conftest.py)
MEASURED: dict[str, float] = {}


def assert_close_scaled(ours, ref, dtype: str, what: str = "") -> float:
    """|Δ| <= TOL[dtype]·(1 + max|ref|) over finite entries; inf/nan where the reference has them.

    Returns the measured |Δ| / (1 + max|ref|) for reporting.
    """
    a, b = to_numpy(ours), to_numpy(ref)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    finite = np.isfinite(b)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{what}: nan pattern")
    np.testing.assert_array_equal(a[np.isinf(b)], b[np.isinf(b)], err_msg=f"{what}: infs")
    if not finite.any():
        return 0.0
    scale = 1.0 + float(np.max(np.abs(b[finite])))
    err = float(np.max(np.abs(a[finite] - b[finite]))) / scale
    MEASURED[dtype] = max(MEASURED.get(dtype, 0.0), err)
    assert err <= TOL[dtype], f"{what}: |Δ|/(1+max|ref|) = {err:.3g} > {TOL[dtype]:.3g} ({dtype})"
    return err


def bound_table(reference_table, config: TCDConfig, backend: str):
    """For tests/float32_bound.py: the reference's ᾱ table, erring by its difference from the
    table ``backend`` builds for ``config`` (zero without zero-SNR), in that backend's
    arithmetic. Built once per example, not per step."""
    import float32_bound as fb

    from tcd_core import noise_schedule

    ours = to_numpy(noise_schedule(config).alphas_cumprod)
    return fb.table(to_numpy(reference_table), ours, fb.deviation(backend))


def assert_bounded(ours, ref, bound, what: str = "") -> float:
    """|ours − ref| <= ``bound`` elementwise (the derived float32 bound of
    tests/float32_bound.py) over finite entries; inf/nan where the reference has them.
    Returns the worst |Δ|/bound."""
    import float32_bound as fb

    a, b = to_numpy(ours), to_numpy(ref)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{what}: nan pattern")
    np.testing.assert_array_equal(a[np.isinf(b)], b[np.isinf(b)], err_msg=f"{what}: infs")
    return fb.assert_within(a, b, bound, what)


def assert_identical(ours: torch.Tensor, ref: torch.Tensor, what: str = "") -> None:
    """Bit-identical torch tensors (same dtype and shape; NaN where the reference has NaN)."""
    assert isinstance(ours, torch.Tensor), what
    assert ours.dtype == ref.dtype and ours.shape == ref.shape, (what, ours.dtype, ref.dtype)
    if torch.isnan(ref).any():
        assert torch.equal(torch.isnan(ours), torch.isnan(ref)), f"{what}: nan pattern"
        mask = ~torch.isnan(ref)
        assert torch.equal(ours[mask], ref[mask]), f"{what}: not bit-identical"
    else:
        assert torch.equal(ours, ref), f"{what}: not bit-identical, max |Δ| = " + str(
            (ours.double() - ref.double()).abs().max().item()
        )


def reference(config: TCDConfig, algorithm: Algorithm = TCD) -> TCDScheduler | LCMScheduler:
    """The ``algorithm``'s diffusers scheduler (``TCDScheduler``, ``LCMScheduler``: its
    ``reference``) built from our config's dict."""
    return getattr(diffusers, algorithm.reference)(**config.to_dict())


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def captured_warnings(logger_name: str) -> Iterator[list[str]]:
    """Collect the WARNING+ messages of one logger (diffusers' loggers do not propagate)."""
    log = logging.getLogger(logger_name)
    handler = _ListHandler()
    handler.setLevel(logging.WARNING)
    old_level = log.level
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.WARNING:
        log.setLevel(logging.WARNING)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


OUR_LOGGER = "tcd_core"


def ref_plan(config: TCDConfig, algorithm: Algorithm = TCD, **kwargs):
    """(timesteps, num_inference_steps, warnings) of the ``algorithm``'s reference, or the
    exception it raised (warnings from its module's logger)."""
    sched = reference(config, algorithm)
    with captured_warnings(type(sched).__module__) as msgs:
        try:
            sched.set_timesteps(**kwargs)
        except Exception as err:
            return err, None, list(msgs)
    return sched.timesteps.numpy(), sched.num_inference_steps, list(msgs)


def dummy_sample_deter() -> torch.Tensor:
    """diffusers' SchedulerCommonTest.dummy_sample_deter: shape (4, 3, 8, 8), values in [0, 1)."""
    num_elems = 4 * 3 * 8 * 8
    sample = torch.arange(num_elems).reshape(3, 8, 8, 4) / num_elems
    return sample.permute(3, 0, 1, 2)
