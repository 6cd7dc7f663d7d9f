"""Fixtures for the tcd-sample / toy-problem tests."""

import pytest

from tcd_core import TCDConfig, alphas_cumprod


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
