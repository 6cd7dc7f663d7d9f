"""Hypothesis strategies over the space of inputs the reference accepts."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis_profiles import examples  # noqa: F401 (re-exported for tests/core)

from tcd_core import PREDICTION_TYPES, TCD, Algorithm, TCDConfig

#: η values that matter: the ends, the recommended 0.3, and ones where a float64 floor of
#: (1−η)·p differs from the reference's float32 one for some p (0.3 at p=90, 0.9 at p=10).
SPECIAL_ETAS = (0.0, 1.0, 0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.6)

etas = st.one_of(
    st.sampled_from(SPECIAL_ETAS),
    st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False),
)

#: η values exactly representable in float32 (so a float32 η array rounds 1−η only once).
f32_exact_etas = st.integers(0, 256).map(lambda k: k / 256)


@st.composite
def edge_eta_for(draw, p: int) -> float:
    """η = 1 − m/p: (1−η)·p is an integer in exact arithmetic, so rounding decides the floor."""
    if p == 0:
        return draw(etas)
    m = draw(st.integers(0, p))
    return 1.0 - m / p


@st.composite
def configs(draw, *, prediction_types=PREDICTION_TYPES, max_train: int = 1200) -> TCDConfig:
    """A TCDConfig from the whole space the reference accepts (schedules, ranges, trained betas,
    zero-SNR, prediction types, N, original_inference_steps, set_alpha_to_one)."""
    n = draw(st.one_of(st.just(1000), st.integers(20, max_train)))
    kind = draw(st.sampled_from(("scaled_linear", "linear", "squaredcos_cap_v2", "trained")))
    beta_start = draw(st.one_of(st.just(0.00085), st.just(1e-4), st.floats(1e-5, 5e-3)))
    beta_end = draw(st.one_of(st.just(0.012), st.just(0.02), st.floats(1e-3, 0.04)))
    trained = None
    if kind == "trained":
        seed = draw(st.integers(0, 2**32 - 1))
        lo, hi = sorted((beta_start, beta_end))
        rng = np.random.default_rng(seed)
        trained = np.sort(rng.uniform(lo, hi + 1e-6, n)).tolist()
    if n >= 50:
        original = draw(st.one_of(st.just(50), st.integers(1, min(n, 100))))
    else:
        original = draw(st.integers(1, n))
    return TCDConfig(
        num_train_timesteps=n,
        beta_start=beta_start,
        beta_end=beta_end,
        beta_schedule="scaled_linear" if kind == "trained" else kind,
        trained_betas=trained,
        original_inference_steps=original,
        set_alpha_to_one=draw(st.booleans()),
        prediction_type=draw(st.sampled_from(prediction_types)),
        rescale_betas_zero_snr=draw(st.booleans()),
        timestep_scaling=draw(st.sampled_from((10.0, 1.0, 2.5))),
    )


strengths = st.one_of(st.just(1.0), st.just(0.5), st.floats(0.01, 1.0))


@st.composite
def plan_kwargs(draw, config: TCDConfig, *, allow_custom: bool = True) -> dict:
    """``set_timesteps`` keyword arguments, valid or not by the reference's own checks (but inside
    what it accepts without crashing: n ≥ 1, strength in (0, 1], non-negative timesteps)."""
    n_train = config.num_train_timesteps
    kwargs: dict = {"strength": draw(strengths)}
    if draw(st.booleans()):
        kwargs["original_inference_steps"] = draw(
            st.one_of(st.just(config.original_inference_steps), st.integers(1, n_train))
        )
    original = kwargs.get("original_inference_steps", config.original_inference_steps)
    if allow_custom and draw(st.integers(0, 3)) == 0:
        k = draw(st.integers(1, min(n_train, 70)))
        if draw(st.booleans()):
            # on the distillation grid, from N−1 down (no warnings when it fits)
            step = max(n_train // max(original, 1), 1)
            grid = list(range(n_train - 1, -1, -step))
            picked = draw(st.sets(st.sampled_from(grid), min_size=1, max_size=min(k, len(grid))))
        else:
            picked = draw(st.sets(st.integers(0, n_train - 1), min_size=1, max_size=k))
        kwargs["timesteps"] = sorted(picked, reverse=True)
    else:
        kwargs["num_inference_steps"] = draw(
            st.one_of(st.sampled_from((1, 2, 4, 8)), st.integers(1, min(n_train, original + 5)))
        )
    return kwargs


def valid_plan_kwargs(config: TCDConfig, algorithm: Algorithm = TCD, **kw):
    """plan_kwargs whose plan the ``algorithm``'s reference builds (non-empty); invalid draws are
    rejected."""
    from core_helpers import ref_plan

    def ok(kwargs: dict) -> bool:
        ts, _, _ = ref_plan(config, algorithm, **kwargs)
        return not isinstance(ts, Exception) and len(ts) > 0

    return plan_kwargs(config, **kw).filter(ok)
