"""Hypothesis strategies: diffusers TCDScheduler configs and set_timesteps plans."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

#: η values that matter (the ends, the recommended 0.3, float32-rounding cases) and any other.
ETAS = st.one_of(
    st.sampled_from([0.0, 0.3, 1.0, 0.9, 0.5, 0.1]),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_subnormal=False),
)


@st.composite
def configs(draw: st.DrawFn, prediction_types=("epsilon", "v_prediction", "sample")) -> dict:
    """A diffusers TCDScheduler config: schedules, trained betas, zero-SNR, N, prediction."""
    n_train = draw(st.sampled_from([1000, 1000, 1000, 500, 120]))
    cfg: dict = {
        "num_train_timesteps": n_train,
        "prediction_type": draw(st.sampled_from(prediction_types)),
        "original_inference_steps": draw(
            st.sampled_from([s for s in (50, 50, 30, 25, 10, 100) if s <= n_train])
        ),
        "rescale_betas_zero_snr": draw(st.sampled_from([False, False, False, True])),
    }
    kind = draw(st.sampled_from(["scaled_linear", "scaled_linear", "linear", "squaredcos_cap_v2"]))
    if draw(st.integers(0, 4)) == 0:
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        cfg["trained_betas"] = np.sort(rng.uniform(1e-4, 0.03, n_train)).tolist()
    else:
        cfg["beta_schedule"] = kind
        if kind != "squaredcos_cap_v2" and draw(st.booleans()):
            cfg["beta_start"] = draw(st.sampled_from([1e-4, 0.00085, 0.001]))
            cfg["beta_end"] = draw(st.sampled_from([0.012, 0.02]))
    return cfg


@st.composite
def plans(draw: st.DrawFn, n_train: int, max_steps: int = 12) -> dict:
    """``set_timesteps`` keyword arguments: step counts, strength, or custom timesteps."""
    strength = draw(st.sampled_from([1.0, 1.0, 1.0, 0.75, 0.5, 0.3]))
    if draw(st.integers(0, 4)) == 0:
        size = draw(st.integers(1, 8))
        values = draw(
            st.lists(st.integers(0, n_train - 1), min_size=size, max_size=size, unique=True)
        )
        if draw(st.booleans()):
            values[0] = n_train - 1
        return {"timesteps": sorted(set(values), reverse=True), "strength": strength}
    return {"num_inference_steps": draw(st.integers(1, max_steps)), "strength": strength}


def sigma_kwargs(cfg: dict, plan: dict) -> tuple[int | None, dict]:
    """The get_sigmas_tcd arguments that ask for ``TCDScheduler(**cfg).set_timesteps(**plan)``."""
    kwargs = {
        "original_inference_steps": cfg.get("original_inference_steps", 50),
        "strength": plan.get("strength", 1.0),
    }
    if "timesteps" in plan:
        kwargs["timesteps"] = plan["timesteps"]
    return plan.get("num_inference_steps"), kwargs
