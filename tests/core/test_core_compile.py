"""Compile-friendliness: jax.jit with t, p and η traced (one trace for every value), per-batch
arrays under jit, the config as a static argument, and torch.compile(fullgraph=True)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from core_helpers import assert_close_scaled, namespace_of, to_backend, to_numpy

from tcd_core import TCDConfig, alphas_cumprod, intermediate_timestep, tcd_step, tcd_timesteps

CONFIG = TCDConfig(thresholding=True, sample_max_value=3.0)


def _inputs(seed=0, shape=(2, 4, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(3)]


def test_jax_jit_one_trace_serves_every_eta_and_timestep():
    traces = []

    @jax.jit
    def step(model_output, t, sample, p, eta, noise):
        traces.append(1)  # runs only while tracing
        return tcd_step(model_output, t, sample, p, ac, eta=eta, noise=noise, config=CONFIG)

    ac = alphas_cumprod(CONFIG, jnp)
    ac_np = alphas_cumprod(CONFIG)
    mo, x, z = (to_backend(a, "jax", "float32") for a in _inputs())
    plan = tcd_timesteps(CONFIG, 8)
    # η values exactly representable in float32 (a traced η is a float32 array), plus 0.3
    for eta in (0.0, 0.25, 0.3, 0.5, 0.75, 1.0):
        for t, p in zip(plan.timesteps.tolist(), plan.prev_timesteps.tolist()):
            got = step(mo, jnp.asarray(t), x, jnp.asarray(p), jnp.asarray(eta, jnp.float32), z)
            want = tcd_step(
                to_numpy(mo).astype(np.float32),
                t,
                to_numpy(x).astype(np.float32),
                p,
                ac_np,
                eta=eta,
                noise=to_numpy(z).astype(np.float32),
                config=CONFIG,
            )
            for a, b in zip(got, want):
                assert a.dtype == jnp.float32
                assert_close_scaled(a, b, "float32", f"jit t={t} eta={eta}")
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


def test_torch_compile_fullgraph_equals_eager():
    """One torch.compile(fullgraph=True) of the step with tensor t, p and η: a single graph serves
    every value, and it equals eager to 1e-6 (Inductor emits its own vectorised code; its float32
    sqrt is correctly rounded, eager's MKL one is not, so results may differ by an ulp)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    ac = alphas_cumprod(CONFIG, namespace_of("torch"))
    mo, x, z = _inputs(2)

    def step(model_output, t, sample, p, eta, noise):
        return tcd_step(model_output, t, sample, p, ac, eta=eta, noise=noise, config=CONFIG)

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    for t, p, eta in ((759, 499, 0.3), (499, 259, 0.75)):
        args = (mo, torch.tensor(t), x, torch.tensor(p), torch.tensor(eta, dtype=torch.float64), z)
        got = compiled(*args)
        want = step(*args)
        for a, b in zip(got, want):
            assert a.dtype == b.dtype
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        # eager with tensor arguments equals eager with Python scalars (the reference's path)
        plain = step(mo, t, x, p, eta, z)
        for a, b in zip(want, plain):
            assert torch.equal(a, b)
    assert counters["stats"]["unique_graphs"] == 1
