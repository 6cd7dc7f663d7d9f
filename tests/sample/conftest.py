"""Fixtures for the tcd-sample / toy-problem tests."""

import numpy as np
import pytest

from tcd_core import TCDConfig, alphas_cumprod
from tcd_sample.toy import preset


@pytest.fixture(scope="session")
def config():
    return TCDConfig()


@pytest.fixture(scope="session")
def table(config):
    """The float32 ᾱ table of diffusers' default TCDScheduler config (host NumPy)."""
    return alphas_cumprod(config)


@pytest.fixture(scope="session")
def alpha0(table):
    return float(table[0])


@pytest.fixture(scope="session")
def ring_reference(alpha0):
    """The ``ring`` preset and 4000 exact samples of it at ᾱ₀ (fixed seed): what the quality
    tests measure sampled points against."""
    m = preset("ring")
    ref, _ = m.noised(alpha0).sample(4000, np.random.default_rng(12345))
    return m, ref


@pytest.fixture(scope="session")
def ring_flow_reference():
    """The ``ring`` preset and 4000 exact samples of it at σ = 0, the flow path's end (the
    mixture itself; fixed seed): what the flow-path tests measure sampled points against."""
    m = preset("ring")
    ref, _ = m.sample(4000, np.random.default_rng(12345))
    return m, ref
