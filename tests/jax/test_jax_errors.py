"""Bad input to tcd_jax: a ValueError or TypeError naming the argument, for every host value (a
traced value is not read; what is then unchecked is in docs/guides/jax.md)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tcd_jax
from tcd_jax import FlaxLCMScheduler, FlaxTCDScheduler

X = jnp.zeros((2, 3))
KEY = jax.random.key(0)


def model(x: jax.Array, t: jax.Array) -> jax.Array:
    return 0.1 * x


@pytest.mark.parametrize("eta", ["0.3", None, 0.3j])
def test_eta_of_the_wrong_type_is_a_type_error_naming_eta(eta) -> None:
    plan = tcd_jax.sampling_plan(num_inference_steps=2)
    scheduler = FlaxTCDScheduler()
    state = scheduler.set_timesteps(scheduler.create_state(), 2)
    calls = [
        lambda: tcd_jax.sample(model, X, KEY, plan, eta=eta),
        lambda: scheduler.create_state(eta=eta),
    ]
    if eta is not None:  # None in `step` means "the state's η"
        calls.append(lambda: scheduler.step(state, X, 999, X, eta=eta))
    for call in calls:
        with pytest.raises(TypeError, match="`eta` must be a real number"):
            call()


@pytest.mark.parametrize("cls", (FlaxTCDScheduler, FlaxLCMScheduler))
def test_scheduler_host_values_are_checked(cls: type) -> None:
    """JAX clamps an index out of range, so without these checks t = 1500 ran as t = 999."""
    scheduler = cls()
    state = scheduler.set_timesteps(scheduler.create_state(), 4)
    with pytest.raises(ValueError, match=r"`timestep` must be an integer in \[0, 999\]"):
        scheduler.step(state, X, 1500, X)
    with pytest.raises(TypeError, match="`timestep`"):
        scheduler.step(state, X, "999", X)
    with pytest.raises(TypeError, match="`sample` must be an array"):
        scheduler.step(state, X, 999, [[0.0] * 3] * 2)
    with pytest.raises(TypeError, match="`model_output` must be an array"):
        scheduler.step(state, None, 999, X)
    with pytest.raises(ValueError, match="`begin_index`"):
        scheduler.set_begin_index(state, 7)
    with pytest.raises(TypeError, match="`begin_index`"):
        scheduler.set_begin_index(state, "a")
    for bad in (np.array([1500, 0]), [-1, 0]):
        with pytest.raises(ValueError, match=r"`timesteps` must be an integer in \[0, 999\]"):
            scheduler.add_noise(state, X, X, bad)
    with pytest.raises(TypeError, match="`timesteps`"):
        scheduler.add_noise(state, X, X, jnp.array([1.5, 0.0]))
    with pytest.raises(TypeError, match="`timesteps` must be a sequence"):
        scheduler.set_timesteps(state, timesteps=999)


def test_traced_values_are_not_checked() -> None:
    """Under jit a traced timestep is not read (the documented limit): no error, no host sync."""
    scheduler = FlaxTCDScheduler()
    state = scheduler.set_timesteps(scheduler.create_state(), 4)
    step = jax.jit(lambda t: scheduler.step(state, X, t, X).prev_sample)
    assert step(jnp.int32(1500)).shape == X.shape
