"""The two algorithms as tests drive them, the reference run with injected noise, a toy denoiser
shared by both sides, the derived float32 bounds."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import float32_bound as fb
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import LCMScheduler, TCDScheduler
from diffusers.schedulers import scheduling_lcm, scheduling_tcd
from hypothesis import strategies as st
from jax_toy import toy_model_jax, toy_model_np  # noqa: F401 (re-exported)

import tcd_jax
from tcd_core import LCM, TCD, Algorithm, TCDConfig, alphas_cumprod, intermediate_timestep

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
    """float32: |Δ| <= ``bound`` elementwise (a derived bound: see ``step_bounds``); halves:
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


JAX = fb.deviation("jax")


class Algo(NamedTuple):
    """An algorithm as these tests drive it: the core's value, tcd_jax's scheduler (and its state
    type), compiled loop and plan, and the diffusers reference with the module whose
    ``randn_tensor`` it calls."""

    core: Algorithm
    scheduler: type
    state: type
    loop: Callable[..., Any]
    plan: Callable[..., Any]
    reference: type
    module: Any

    def eta(self, value: Any) -> Any:
        """``value`` as TCD's η; None for LCM, which has none."""
        return value if self.core.has_eta else None

    def sample(self, model_fn, latents, key, plan, eta=None, **kwargs) -> Any:
        """The compiled loop: TCD's with ``eta`` (default 0.3), LCM's (which has no η)."""
        if not self.core.has_eta:
            assert eta is None, "LCM has no η"
            return self.loop(model_fn, latents, key, plan, **kwargs)
        return self.loop(model_fn, latents, key, plan, 0.3 if eta is None else eta, **kwargs)


def eta_kwargs(algo: Algo, eta: Any) -> dict[str, Any]:
    """``{"eta": eta}`` for TCD (to ``step``, ``create_state``, ``replace``…), nothing for LCM."""
    return {"eta": eta} if algo.core.has_eta else {}


TCD_JAX = Algo(
    TCD,
    tcd_jax.FlaxTCDScheduler,
    tcd_jax.FlaxTCDSchedulerState,
    tcd_jax.sample,
    tcd_jax.sampling_plan,
    TCDScheduler,
    scheduling_tcd,
)
LCM_JAX = Algo(
    LCM,
    tcd_jax.FlaxLCMScheduler,
    tcd_jax.FlaxLCMSchedulerState,
    tcd_jax.sample_lcm,
    tcd_jax.lcm_sampling_plan,
    LCMScheduler,
    scheduling_lcm,
)
#: ``@pytest.mark.parametrize("algo", ALGORITHMS)``: a test of a property both algorithms have.
ALGORITHMS = [pytest.param(TCD_JAX, id="TCD"), pytest.param(LCM_JAX, id="LCM")]

#: A test taking ``overrides``: the config fields that clip x̂₀, or threshold it.
clip_or_threshold = pytest.mark.parametrize(
    "overrides",
    [
        dict(prediction_type="sample", clip_sample=True, clip_sample_range=0.5),
        dict(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5),
    ],
    ids=["clip_sample", "thresholding"],
)


class Reference(NamedTuple):
    """A reference run: every step's ``prev_sample`` and estimate (TCD's ``pred_noised_sample``,
    LCM's ``denoised``), the step indices where it drew, the scheduler, and (float32 runs) the
    derived bounds on |ours − reference| of both, per step."""

    outputs: list[torch.Tensor]
    estimates: list[torch.Tensor]
    drawn: list[int]
    scheduler: Any
    bounds: list[np.ndarray] | None
    estimate_bounds: list[np.ndarray] | None


def reference_run(
    algo: Algo,
    config: TCDConfig,
    latents: np.ndarray,
    key,
    eta: float | None = None,
    dtype: str = "float32",
    begin_index: int | None = None,
    **plan_kwargs,
) -> Reference:
    """Run diffusers' reference scheduler of ``algo`` with tcd_jax's noise (TCD with ``eta``)."""
    scheduler = algo.reference(**config.to_dict())
    scheduler.set_timesteps(**plan_kwargs)
    timesteps = scheduler.timesteps
    if begin_index is not None:
        scheduler.set_begin_index(begin_index)
        timesteps = timesteps[begin_index:]
    x = torch.from_numpy(np.asarray(latents, dtype=np.float32)).to(TORCH_DTYPES[dtype])
    drawn: list[int] = []
    outputs, estimates = [], []
    noise = jax_noise(key, latents.shape, dtype)
    with injected_noise(scheduler, noise, drawn, algo.module):
        for t in timesteps:
            out = scheduler.step(toy_model_torch(x, t), t, x, **eta_kwargs(algo, eta))
            x = out.prev_sample
            outputs.append(x)
            estimates.append(getattr(out, algo.core.estimate))
    bounds = estimate_bounds = None
    if dtype == "float32":
        rows = reference_rows(scheduler, begin_index, lcm=not algo.core.has_eta)
        tab = reference_table(config, scheduler)
        bounds, estimate_bounds = step_bounds(
            algo.core,
            config,
            latents,
            eta,
            jax_noise(key, latents.shape, "float32"),
            rows,
            drawn,
            tab,
        )
    return Reference(outputs, estimates, drawn, scheduler, bounds, estimate_bounds)


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


def step_bounds(
    algorithm: Algorithm,
    config: TCDConfig,
    latents: np.ndarray,
    eta: float | None,
    noise_for_step: Callable[[int], np.ndarray],
    rows: list[tuple[int, int, int]],
    drawn: list[int],
    tab: fb.Bounded,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per step (``rows``: index, t, p): the derived elementwise bounds on |tcd_jax − reference|
    of the next sample and of the step's estimate, for a float32 loop of ``algorithm`` over the
    toy model drawing at ``drawn``, from the tables ``tab`` (:func:`float32_bound.table`) in
    ``tab``'s arithmetic (tests/float32_bound.py). TCD's reference ignores clipping and
    thresholding, LCM's honours them."""
    samples, estimates = [], []
    x = fb.Bounded.exact(latents, tab.dev)
    for i, t, p in rows:
        noise = noise_for_step(i) if i in drawn else None
        m, kind = fb.toy_model(x, t), config.prediction_type
        if algorithm.has_eta:
            s = int(intermediate_timestep(p, eta))
            x, estimate = fb.tcd_step(kind, m, x, noise, tab, t, s, p, i in drawn)
        else:
            x, estimate = fb.lcm_step(kind, m, x, noise, tab, t, p, i in drawn, config)
        samples.append(x.err)
        estimates.append(estimate.err)
    return samples, estimates


def reference_table(config: TCDConfig, scheduler: Any) -> fb.Bounded:
    """The reference's ᾱ and ours (built on the host in NumPy for tcd_jax), for XLA steps."""
    ours = alphas_cumprod(config)
    return fb.table(scheduler.alphas_cumprod.to(torch.float64).numpy(), ours, JAX)


#: Two float32 XLA evaluations of one loop on one table: each side deviates by JAX's ulps.
BOTH_JAX = fb.deviation("jax", "jax")


def loop_bound(algo: Algo, config: TCDConfig, latents, key, plan, eta=None) -> np.ndarray:
    """The derived bound on |one float32 XLA run of the 1-D ``plan`` − another| (the scheduler's
    and the compiled loop's, or two compilations of one loop) after its last step: same table,
    same noise, both sides XLA."""
    latents = np.asarray(latents)
    rows = [
        (i, int(t), int(p)) for i, (t, p) in enumerate(zip(plan.timesteps, plan.next_timesteps))
    ]
    drawn = [i for i, final in enumerate(plan.final) if algo.core.draws(eta, bool(final))]
    table = np.asarray(alphas_cumprod(config))
    noise = jax_noise(key, latents.shape, "float32")
    tab = fb.table(table, table, BOTH_JAX)
    return step_bounds(algo.core, config, latents, eta, noise, rows, drawn, tab)[0][-1]


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
