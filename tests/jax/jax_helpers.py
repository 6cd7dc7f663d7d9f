"""The reference run with injected noise, a toy denoiser shared by both sides, tolerances."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import float32_bound as fb
import jax.numpy as jnp
import numpy as np
import torch
from diffusers import TCDScheduler
from diffusers.schedulers import scheduling_tcd
from hypothesis import strategies as st
from jax_toy import toy_model_jax, toy_model_np  # noqa: F401 (re-exported)

import tcd_jax
from tcd_core import TCDConfig, alphas_cumprod, intermediate_timestep

#: Half precision: |Δ| <= TOL[dtype]·(1 + max|reference|), a few ulps of the dtype (torch keeps
#: half arithmetic with float32 0-d coefficients, JAX promotes to float32 and rounds once).
#: float32 comparisons use the derived elementwise bound of tests/float32_bound.py instead.
TOL = {"float16": 4e-3, "bfloat16": 3e-2}
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _host(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.to(torch.float64).numpy()
    return np.asarray(jnp.asarray(x).astype(jnp.float32), dtype=np.float64)


def assert_close(actual, reference, dtype: str = "float32", what: str = "", bound=None) -> float:
    """float32: |Δ| <= ``bound`` elementwise (a derived bound: see ``tcd_bounds``); halves:
    |Δ| <= TOL[dtype]·(1 + max|reference|). Returns the worst |Δ|/bound."""
    actual, reference = _host(actual), _host(reference)
    assert actual.shape == reference.shape, (actual.shape, reference.shape)
    if dtype == "float32":
        assert bound is not None, "float32 comparisons take a derived bound"
        return fb.assert_within(actual, reference, bound, what)
    limit = TOL[dtype] * (1.0 + np.max(np.abs(reference)))
    err = np.max(np.abs(actual - reference))
    assert err <= limit, f"{what}: max|Δ| = {err:.3g} > {limit:.3g}"
    return float(err / limit)


def toy_model_torch(x: torch.Tensor, t) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float32)
    if t.ndim == 1:
        t = t.reshape(-1, *([1] * (x.ndim - 1)))
    return (0.5 * x + 0.25 * x / (1.0 + x * x) * (t / 1000.0)).to(x.dtype)


@contextlib.contextmanager
def injected_noise(
    scheduler: Any,
    noise_for_step: Callable[[int], np.ndarray],
    drawn: list[int],
    module: Any = scheduling_tcd,
) -> Iterator[None]:
    """Replace the reference's ``randn_tensor`` (in ``module``: diffusers' ``scheduling_tcd``, or
    ``scheduling_lcm`` for the LCM reference) by the noise JAX draws for the current step, and
    record at which step indices the reference asked for noise."""
    original = module.randn_tensor

    def fake(shape, generator=None, device=None, dtype=None, **_):
        index = scheduler.step_index
        drawn.append(index)
        z = torch.from_numpy(np.array(noise_for_step(index), dtype=np.float32))
        assert tuple(z.shape) == tuple(shape)
        return z.to(dtype)

    module.randn_tensor = fake
    try:
        yield
    finally:
        module.randn_tensor = original


def jax_noise(key, shape, dtype: str) -> Callable[[int], np.ndarray]:
    """Step i's noise exactly as tcd_jax draws it (in ``dtype``), as float32 NumPy."""
    return lambda i: np.asarray(tcd_jax.step_noise(key, i, shape, dtype).astype(jnp.float32))


def reference_run(
    config: TCDConfig,
    latents: np.ndarray,
    eta: float,
    key,
    dtype: str = "float32",
    begin_index: int | None = None,
    **plan_kwargs,
) -> tuple[list[torch.Tensor], list[int], TCDScheduler]:
    """Run diffusers' TCDScheduler with tcd_jax's noise; every prev_sample and the drawn steps."""
    scheduler = TCDScheduler(**config.to_dict())
    scheduler.set_timesteps(**plan_kwargs)
    timesteps = scheduler.timesteps
    if begin_index is not None:
        scheduler.set_begin_index(begin_index)
        timesteps = timesteps[begin_index:]
    x = torch.from_numpy(np.asarray(latents, dtype=np.float32)).to(TORCH_DTYPES[dtype])
    drawn: list[int] = []
    outputs = []
    with injected_noise(scheduler, jax_noise(key, latents.shape, dtype), drawn):
        for t in timesteps:
            x = scheduler.step(toy_model_torch(x, t), t, x, eta=eta).prev_sample
            outputs.append(x)
    return outputs, drawn, scheduler


JAX = fb.deviation("jax")


def reference_rows(
    scheduler: Any, begin_index: int | None = None, lcm: bool = False
) -> list[tuple[int, int, int]]:
    """(step index, t, next timestep p) of the steps a reference run took. After the last entry
    TCDScheduler's p is 0, LCMScheduler's the step's own t."""
    timesteps = scheduler.timesteps.tolist()
    start = begin_index or 0
    last = lambda t: t if lcm else 0
    return [
        (i, timesteps[i], timesteps[i + 1] if i + 1 < len(timesteps) else last(timesteps[i]))
        for i in range(start, len(timesteps))
    ]


def tcd_bounds(
    config: TCDConfig,
    latents: np.ndarray,
    eta: float,
    noise_for_step: Callable[[int], np.ndarray],
    rows: list[tuple[int, int, int]],
    drawn: list[int],
    tab: fb.Bounded,
) -> list[np.ndarray]:
    """Per step (``rows``: index, t, p): the derived elementwise bound on |tcd_jax − reference|
    for a float32 TCD loop over the toy model drawing at ``drawn``, from the tables ``tab``
    (:func:`float32_bound.table`) in ``tab``'s arithmetic (tests/float32_bound.py)."""
    bounds = []
    x = fb.Bounded.exact(latents, tab.dev)
    for i, t, p in rows:
        s = int(intermediate_timestep(p, eta))
        noise = noise_for_step(i) if i in drawn else None
        x, _ = fb.tcd_step(
            config.prediction_type, fb.toy_model(x, t), x, noise, tab, t, s, p, i in drawn
        )
        bounds.append(x.err)
    return bounds


def tcd_reference_bounds(
    config: TCDConfig,
    latents: np.ndarray,
    eta: float,
    key,
    scheduler: Any,
    drawn: list[int],
    begin_index: int | None = None,
) -> list[np.ndarray]:
    """The derived bounds on |tcd_jax − reference| for each step of ``reference_run``."""
    noise = jax_noise(key, latents.shape, "float32")
    rows = reference_rows(scheduler, begin_index)
    return tcd_bounds(config, latents, eta, noise, rows, drawn, reference_table(config, scheduler))


def reference_table(config: TCDConfig, scheduler: Any) -> fb.Bounded:
    """The reference's ᾱ and ours (built on the host in NumPy for tcd_jax), for XLA steps."""
    ours = alphas_cumprod(config)
    return fb.table(scheduler.alphas_cumprod.to(torch.float64).numpy(), ours, JAX)


def lcm_reference_bounds(
    config: TCDConfig,
    latents: np.ndarray,
    key,
    scheduler: Any,
    drawn: list[int],
    begin_index: int | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per step of an LCM reference run: the derived bounds on prev_sample and denoised."""
    noise_for_step = jax_noise(key, latents.shape, "float32")
    prev, denoised = [], []
    tab = reference_table(config, scheduler)
    x = fb.Bounded.exact(latents, JAX)
    for i, t, p in reference_rows(scheduler, begin_index, lcm=True):
        noise = noise_for_step(i) if i in drawn else None
        m = fb.toy_model(x, t)
        x, d = fb.lcm_step(config.prediction_type, m, x, noise, tab, t, p, i in drawn, config)
        prev.append(x.err)
        denoised.append(d.err)
    return prev, denoised


@st.composite
def configs(draw) -> TCDConfig:
    """Configs the reference runs without dividing by zero (zero-SNR only with v/sample)."""
    prediction = draw(st.sampled_from(["epsilon", "sample", "v_prediction"]))
    schedule = draw(st.sampled_from(["linear", "scaled_linear", "squaredcos_cap_v2"]))
    beta_start = draw(st.sampled_from([0.0001, 0.00085, 0.001]))
    beta_end = draw(st.sampled_from([0.012, 0.02]))
    rescale = draw(st.booleans()) if prediction != "epsilon" else False
    original = draw(st.sampled_from([50, 30, 25, 100]))
    return TCDConfig(
        beta_start=beta_start,
        beta_end=beta_end,
        beta_schedule=schedule,
        prediction_type=prediction,
        rescale_betas_zero_snr=rescale,
        original_inference_steps=original,
    )


#: η values that matter: the ends, the recommended 0.3, and ones where f32(1−η) rounded from a
#: float32 η gives a different s than the reference's (0.33, 0.8), plus arbitrary ones.
etas = st.one_of(
    st.sampled_from([0.0, 0.3, 0.33, 0.8, 0.9, 1.0]),
    st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False),
)
