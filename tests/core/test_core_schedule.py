"""Noise schedule tables against the reference's: torch bit-identical, others bit-identical or
(zero-SNR only) within float32 tolerance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from core_helpers import BACKENDS, NON_TORCH, assert_close_scaled, namespace_of, reference, to_numpy
from core_strategies import configs
from diffusers.schedulers.scheduling_tcd import betas_for_alpha_bar as ref_betas_for_alpha_bar
from diffusers.schedulers.scheduling_tcd import rescale_zero_terminal_snr as ref_rescale
from hypothesis import given, settings
from hypothesis import strategies as st

from tcd_core import (
    TCDConfig,
    alphas_cumprod,
    betas,
    betas_for_alpha_bar,
    final_alpha_cumprod,
    linspace_f32,
    noise_schedule,
    rescale_zero_terminal_snr,
)

FIELDS = ("betas", "alphas", "alphas_cumprod", "final_alpha_cumprod")


@given(configs())
def test_torch_tables_are_bit_identical(config):
    ref = reference(config)
    ours = noise_schedule(config, namespace_of("torch"))
    for field in FIELDS:
        got, want = getattr(ours, field), getattr(ref, field)
        assert got.dtype == torch.float32 and got.shape == want.shape, field
        assert torch.equal(got, want), field
    assert torch.equal(alphas_cumprod(config, namespace_of("torch")), ref.alphas_cumprod)
    assert torch.equal(betas(config, namespace_of("torch")), ref.betas)


@pytest.mark.parametrize("backend", NON_TORCH)
@settings(max_examples=25)
@given(config=configs())
def test_other_backends_tables(backend, config):
    """Bit-identical without zero-SNR (host linspace/cumprod are exact); with zero-SNR within the
    float32 bound, because torch's CPU sqrt is not correctly rounded (see parity notes)."""
    ref = reference(config)
    ours = noise_schedule(config, namespace_of(backend))
    for field in FIELDS:
        got, want = to_numpy(getattr(ours, field)), getattr(ref, field).numpy()
        assert str(getattr(ours, field).dtype).endswith("float32"), field
        if config.rescale_betas_zero_snr and field in ("betas", "alphas"):
            # β_t = 1 − ᾱ_t/ᾱ_{t−1} after √ᾱ − √ᾱ_T: a cancellation that turns torch's 1-ulp sqrt
            # errors into up to ~1e-4 absolute in β near the end of the schedule.
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-3, err_msg=field)
        elif config.rescale_betas_zero_snr:
            assert_close_scaled(got, want, "float32", field)
        else:
            np.testing.assert_array_equal(got, want, err_msg=field)


def test_zero_snr_tables_are_identical_given_correctly_rounded_sqrt():
    """The zero-SNR differences come only from torch's sqrt: with torch's sqrt replaced by a
    correctly rounded one (float64 sqrt rounded to float32), torch and NumPy tables agree bit for
    bit, and ᾱ[N−1] is exactly 0 on every backend."""
    config = TCDConfig(rescale_betas_zero_snr=True)
    b = torch.from_numpy(betas(config.replace(rescale_betas_zero_snr=False)))
    alphas = 1.0 - b
    sq = torch.cumprod(alphas, 0).double().sqrt().float()
    first, last = sq[0].clone(), sq[-1].clone()
    sq = (sq - last) * (first / (first - last))
    bar = sq * sq
    exact = 1 - torch.cat([bar[0:1], bar[1:] / bar[:-1]])
    np.testing.assert_array_equal(betas(config), exact.numpy())
    for backend in BACKENDS:
        ac = to_numpy(alphas_cumprod(config, namespace_of(backend)))
        assert ac[-1] == 0.0 and ac[0] > 0.99


@pytest.mark.parametrize("kind", ("cosine", "exp", "laplace"))
@pytest.mark.parametrize("n", (1, 10, 1000, 1234))
def test_betas_for_alpha_bar(kind, n):
    ours = betas_for_alpha_bar(n, alpha_transform_type=kind)
    assert torch.equal(torch.from_numpy(ours), ref_betas_for_alpha_bar(n, alpha_transform_type=kind))
    ours = betas_for_alpha_bar(n, max_beta=0.5, alpha_transform_type=kind)
    assert torch.equal(
        torch.from_numpy(ours), ref_betas_for_alpha_bar(n, 0.5, alpha_transform_type=kind)
    )


@given(st.floats(-2.0, 2.0), st.floats(-2.0, 2.0), st.integers(1, 3000))
def test_linspace_f32_is_torch_linspace(a, b, n):
    want = torch.linspace(a, b, n, dtype=torch.float32).numpy()
    np.testing.assert_array_equal(linspace_f32(a, b, n), want)


@settings(max_examples=20)
@given(configs())
def test_rescale_zero_terminal_snr_torch_exact(config):
    b = torch.from_numpy(betas(config.replace(rescale_betas_zero_snr=False)))
    assert torch.equal(rescale_zero_terminal_snr(b.clone()), ref_rescale(b.clone()))


@pytest.mark.parametrize("set_alpha_to_one", (True, False))
def test_final_alpha_cumprod(set_alpha_to_one):
    config = TCDConfig(set_alpha_to_one=set_alpha_to_one)
    ref = reference(config)
    ac = alphas_cumprod(config, namespace_of("torch"))
    assert torch.equal(final_alpha_cumprod(config, ac), ref.final_alpha_cumprod)
    assert final_alpha_cumprod(config, ac).ndim == 0


def test_device_and_namespace_follow_the_caller():
    import array_api_strict
    import jax.numpy as jnp

    assert isinstance(alphas_cumprod(TCDConfig()), np.ndarray)
    assert isinstance(alphas_cumprod(TCDConfig(), namespace_of("torch"), device="cpu"), torch.Tensor)
    assert isinstance(alphas_cumprod(TCDConfig(), jnp), jnp.ndarray)
    table = alphas_cumprod(TCDConfig(), array_api_strict)
    assert type(table).__module__.startswith("array_api_strict")
