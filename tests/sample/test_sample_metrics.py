"""The metrics on distributions whose distances are known."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from tcd_sample.toy import GaussianMixture, component_shares, preset, sliced_wasserstein
from tcd_sample.toy._backend import load_backend


def _gauss(n, seed, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal((n, 2))


def test_identical_clouds_are_at_distance_zero():
    a = _gauss(1000, 0)
    assert sliced_wasserstein(a, a) == 0.0
    assert sliced_wasserstein(a, a[::-1].copy()) == 0.0  # order does not matter
    assert sliced_wasserstein(a, a, p=2) == 0.0


@settings(max_examples=examples(30))
@given(st.floats(-5, 5), st.floats(-5, 5), st.integers(1, 64))
def test_a_translate_is_at_the_known_distance(dx, dy, directions):
    a = _gauss(300, 1)
    d = np.array([dx, dy])
    theta = np.pi * (np.arange(directions) + 0.5) / directions
    exact_w1 = np.mean(np.abs(dx * np.cos(theta) + dy * np.sin(theta)))
    assert sliced_wasserstein(a, a + d, directions) == pytest.approx(exact_w1, abs=1e-9)
    # p = 2: exactly |d|/√2 whenever the directions average cos² to ½ (L ≥ 2)
    if directions >= 2:
        assert sliced_wasserstein(a, a + d, directions, p=2) == pytest.approx(
            math.hypot(dx, dy) / math.sqrt(2), abs=1e-9
        )


def test_shifted_gaussians_approach_two_over_pi_times_the_shift():
    a, b = _gauss(20_000, 2), _gauss(20_000, 3) + [1.0, 0.0]
    # independent samples: ≈ 2|d|/π = 0.637 plus sampling noise
    assert sliced_wasserstein(a, b) == pytest.approx(2 / math.pi, abs=0.02)


@pytest.mark.parametrize("c", [0.5, 2.0])
def test_scaled_gaussians_are_at_the_known_distance(c):
    a, b = _gauss(20_000, 4), _gauss(20_000, 5, scale=c)
    assert sliced_wasserstein(a, b) == pytest.approx(abs(1 - c) * math.sqrt(2 / math.pi), rel=0.05)
    assert sliced_wasserstein(a, b, p=2) == pytest.approx(abs(1 - c), rel=0.05)


def test_independent_samples_of_one_distribution_are_close_and_shrink_with_n():
    m = preset("ring")
    d = {}
    for n in (500, 8000):
        vals = [
            sliced_wasserstein(
                m.sample(n, np.random.default_rng(s))[0],
                m.sample(n, np.random.default_rng(100 + s))[0],
            )
            for s in range(3)
        ]
        d[n] = np.mean(vals)
    # measured: ≈ 0.09 at n = 500, ≈ 0.02 at n = 8000 (SW₁ noise falls like n^-1/2)
    assert d[8000] < 0.04
    assert d[8000] < d[500] / 2


def test_unequal_sizes_and_symmetry():
    a, b = _gauss(1000, 6), _gauss(3000, 7) + [0.5, 0.5]
    ab, ba = sliced_wasserstein(a, b), sliced_wasserstein(b, a)
    assert ab == pytest.approx(ba, rel=1e-12)
    assert ab == pytest.approx(2 / math.pi * math.hypot(0.5, 0.5), abs=0.06)
    # a cloud against itself repeated: the same empirical distribution
    assert sliced_wasserstein(a, np.concatenate([a, a, a])) == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="clouds"):
        sliced_wasserstein(np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="p"):
        sliced_wasserstein(np.zeros((3, 2)), np.zeros((3, 2)), p=3)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_metric_agrees_across_backends(backend):
    xp = load_backend(backend)
    a, b = _gauss(500, 8).astype(np.float32), _gauss(700, 9).astype(np.float32) * 1.3
    expected = sliced_wasserstein(a, b)
    got = sliced_wasserstein(xp.asarray(a), xp.asarray(b))
    assert got == pytest.approx(expected, rel=1e-5)


def test_shares_of_exact_samples_follow_the_weights():
    m = preset("pair")
    x, _labels = m.sample(50_000, np.random.default_rng(10))
    shares, off = component_shares(x, m)
    np.testing.assert_allclose(shares, [0.8, 0.2], atol=0.01)
    assert off < 2e-3  # exp(-8) = 3.4e-4 expected
    assert shares.sum() + off == pytest.approx(1.0)


def test_shares_on_hand_placed_points():
    m = GaussianMixture(((0.0, 0.0), (10.0, 0.0)), (1.0, 1.0), (0.5, 0.5))
    x = np.array([[0.1, 0.0], [9.0, 1.0], [10.0, 3.9], [5.0, 0.0], [0.0, -4.5], [20.0, 0.0]])
    shares, off = component_shares(x, m)
    np.testing.assert_allclose(shares, [1 / 6, 2 / 6])
    assert off == pytest.approx(3 / 6)  # the midpoint (5σ from both), 4.5σ below, far right
    shares, off = component_shares(x, m, off_mode_radius=6.0)
    assert off == pytest.approx(1 / 6)
