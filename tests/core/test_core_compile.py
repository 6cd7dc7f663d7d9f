"""Compile-friendliness of both algorithms' step: jax.jit with t, p and η (TCD) or the final flag
(LCM) traced (one trace for every value), per-batch arrays under jit, the config as a static
argument, and torch.compile(fullgraph=True)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from core_helpers import assert_close_scaled, each_algorithm, namespace_of, to_backend, to_numpy

from tcd_core import (
    LCM,
    TCD,
    TCDConfig,
    alphas_cumprod,
    intermediate_timestep,
    plan_timesteps,
    step,
    tcd_step,
)

CONFIG = TCDConfig(thresholding=True, sample_max_value=3.0)


def _inputs(seed=0, shape=(2, 4, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(3)]


def traced_cases(algorithm, plan):
    """(t, p, the algorithm's own argument) over a plan: TCD at several η (exactly representable
    in float32, as a traced η is a float32 array, plus 0.3), LCM with each step's final flag."""
    steps = zip(plan.timesteps.tolist(), plan.next_timesteps.tolist(), plan.final_steps())
    if algorithm is LCM:
        return [(t, p, {"final": bool(final)}) for t, p, final in steps]
    steps = list(steps)
    return [(t, p, {"eta": eta}) for eta in (0.0, 0.25, 0.3, 0.5, 0.75, 1.0) for t, p, _ in steps]


@each_algorithm
def test_jax_jit_one_trace_serves_every_timestep_and_own_argument(algorithm):
    traces = []

    @jax.jit
    def jitted(model_output, t, sample, p, noise, own):
        traces.append(1)  # runs only while tracing
        return step(algorithm, model_output, t, sample, p, ac, noise=noise, config=CONFIG, **own)

    ac = alphas_cumprod(CONFIG, jnp)
    ac_np = alphas_cumprod(CONFIG)
    mo, x, z = (to_backend(a, "jax", "float32") for a in _inputs())
    host = [to_numpy(a).astype(np.float32) for a in (mo, x, z)]
    for t, p, own in traced_cases(algorithm, plan_timesteps(algorithm, CONFIG, 8)):
        traced = {k: jnp.asarray(v, jnp.float32 if k == "eta" else bool) for k, v in own.items()}
        got = jitted(mo, jnp.asarray(t), x, jnp.asarray(p), z, traced)
        # a host 0-d t: LCM's c_skip/c_out in float32, as for a traced t
        want = step(
            algorithm,
            host[0],
            np.asarray(t),
            host[1],
            p,
            ac_np,
            noise=host[2],
            config=CONFIG,
            **own,
        )
        for a, b in zip(got, want):
            assert a.dtype == jnp.float32
            assert_close_scaled(a, b, "float32", f"jit t={t} {own}")
    assert len(traces) == 1


def test_jax_jit_traced_intermediate_timestep_is_exact_for_the_float32_floor():
    """Under jit η is float32: s = ⌊(1 − η)·p⌋ in float32 equals the host value wherever
    f32(1 − f32(η)) == f32(1 − η) — e.g. the documented η=0.3, p=90 → 63 and η=0.9, p=10 → 1."""
    f = jax.jit(intermediate_timestep)
    assert int(f(jnp.asarray(90), jnp.asarray(0.3, jnp.float32))) == 63
    assert int(f(jnp.asarray(10), jnp.asarray(0.9, jnp.float32))) == 1
    ps = np.arange(0, 1000)
    for eta in (0.0, 0.25, 0.3, 0.5, 1.0):
        got = np.asarray(f(jnp.asarray(ps), jnp.asarray(eta, jnp.float32)))
        np.testing.assert_array_equal(got, intermediate_timestep(ps, eta))


def test_jax_jit_per_batch_arrays_and_static_config():
    traces = []

    def step(model_output, t, sample, p, eta, noise, config):
        traces.append(1)
        return tcd_step(model_output, t, sample, p, ac, eta=eta, noise=noise, config=config)

    jitted = jax.jit(step, static_argnames="config")
    ac = alphas_cumprod(CONFIG, jnp)
    mo, x, z = (to_backend(a, "jax", "float32") for a in _inputs(1, (4, 4, 8, 8)))
    ts, ps, es = [999, 759, 499, 259], [759, 499, 259, 0], [0.0, 0.25, 0.5, 1.0]
    for shift in (0, 1):
        t = jnp.asarray(ts, jnp.int32) - shift
        p = jnp.asarray(ps, jnp.int32)
        eta = jnp.asarray(es, jnp.float32)
        # an equal but distinct config object hits the same cache entry (hashable, __eq__)
        cfg = TCDConfig(thresholding=True, sample_max_value=3.0)
        got = jitted(mo, t, x, p, eta, z, cfg)
        for j in range(4):
            one = tcd_step(
                mo[j : j + 1],
                ts[j] - shift,
                x[j : j + 1],
                ps[j],
                ac,
                eta=es[j],
                noise=z[j : j + 1],
                config=CONFIG,
            )
            assert_close_scaled(
                got.prev_sample[j : j + 1], one.prev_sample, "float32", "per-batch jit"
            )
    assert len(traces) == 1
    jitted(mo, t, x, p, eta, z, TCDConfig(prediction_type="sample"))
    assert len(traces) == 2  # a different config is a different static argument


#: (t, p, the algorithm's own argument) for the compiled step; each as tensors, then as the
#: host values the reference takes
COMPILED = {
    TCD: [(759, 499, {"eta": 0.3}), (499, 259, {"eta": 0.75})],
    LCM: [(759, 499, {"final": False}), (259, 259, {"final": True})],
}


@each_algorithm
def test_torch_compile_fullgraph_equals_eager(algorithm):
    """One torch.compile(fullgraph=True) of the step with tensor t, p and η or final flag: a
    single graph serves every value, and it equals eager to 1e-6 (Inductor emits its own
    vectorised code; its float32 sqrt is correctly rounded, eager's MKL one is not, so results
    may differ by an ulp)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    ac = alphas_cumprod(CONFIG, namespace_of("torch"))
    mo, x, z = _inputs(2)

    def eager(model_output, t, sample, p, noise, own):
        return step(algorithm, model_output, t, sample, p, ac, noise=noise, config=CONFIG, **own)

    compiled = torch.compile(eager, fullgraph=True, dynamic=False)
    for t, p, own in COMPILED[algorithm]:
        tensors = {
            k: torch.tensor(v, dtype=torch.float64 if k == "eta" else torch.bool)
            for k, v in own.items()
        }
        args = (mo, torch.tensor(t), x, torch.tensor(p), z, tensors)
        got, want = compiled(*args), eager(*args)
        for a, b in zip(got, want):
            assert a.dtype == b.dtype
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        # eager with tensor arguments equals eager with host values (the reference's path); LCM
        # keeps t a tensor: an int t gives its reference's double-precision c_skip/c_out
        host_t = t if algorithm is TCD else torch.tensor(t)
        plain = eager(mo, host_t, x, p, z, own)
        for a, b in zip(want, plain):
            assert torch.equal(a, b)
    assert counters["stats"]["unique_graphs"] == 1
