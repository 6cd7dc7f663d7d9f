"""tcd_core.flow_plan against diffusers' FlowMatchEulerDiscreteScheduler: the training σ table and
its ends, and ``set_timesteps``' timesteps and σ, bit for bit, over every option the reference
has; where we raise, the reference fails or returns nonsense; each error names its argument."""

from __future__ import annotations

import importlib.util
import itertools
import warnings

import numpy as np
import pytest
from core_helpers import OUR_LOGGER, captured_warnings
from core_strategies import examples
from diffusers import FlowMatchEulerDiscreteScheduler
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tcd_core.flow import (
    FlowConfig,
    FlowPlan,
    flow_plan,
    train_sigma_range,
    train_sigmas,
)

REF_LOGGER = FlowMatchEulerDiscreteScheduler.__module__
FAMILIES = {
    None: {},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "beta": {"use_beta_sigmas": True},
}


def bits(array) -> np.ndarray:
    """The float32 bit patterns (so -0.0 and 0.0 differ, and NaN equals itself)."""
    array = np.asarray(array)
    assert array.dtype == np.float32, array.dtype
    return array.view(np.uint32)


def reference_plan(fields: dict, kwargs: dict):
    """(scheduler after set_timesteps, or the exception it raised; its logged warnings; whether
    it returned nonsense: non-finite σ, σ outside [0, 1], or complex σ cast to real)."""
    sched = FlowMatchEulerDiscreteScheduler(**fields)
    if "shift" in kwargs:
        sched.set_shift(kwargs["shift"])
    call = {k: v for k, v in kwargs.items() if k != "shift"}
    with captured_warnings(REF_LOGGER) as msgs, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sched.set_timesteps(**call)
        except Exception as err:
            return err, list(msgs), True
    if fields.get("invert_sigmas"):  # judge the σ before their inversion, 1 − σ
        _, _, nonsense = reference_plan({**fields, "invert_sigmas": False}, kwargs)
        return sched, list(msgs), nonsense
    sigmas = sched.sigmas.numpy()
    nonsense = (
        not np.all(np.isfinite(sigmas))
        or bool(np.any(sigmas < 0) or np.any(sigmas > 1 + 2**-11))  # above 1 beyond rounding
        or any("complex" in str(w.message) for w in caught)
    )
    return sched, list(msgs), nonsense


def our_plan(fields: dict, kwargs: dict):
    with captured_warnings(OUR_LOGGER) as msgs:
        try:
            return flow_plan(FlowConfig(**fields), **kwargs), list(msgs)
        except ValueError as err:
            return err, list(msgs)


def assert_same_plan(fields: dict, kwargs: dict) -> str:
    """Ours equals the reference bit for bit (and logs its warnings), or we raise where the
    reference fails or returns nonsense. Returns what happened, for ``event``."""
    ours, our_msgs = our_plan(fields, kwargs)
    ref, ref_msgs, nonsense = reference_plan(fields, kwargs)
    if isinstance(ours, ValueError):
        assert "`" in str(ours), f"the message names no argument: {ours}"
        assert nonsense, f"we raised {ours!r}; the reference gave a sane plan {ref.sigmas}"
        return f"rejected: reference {'raised' if isinstance(ref, Exception) else 'nonsense'}"
    assert not isinstance(ref, Exception), f"reference raised {ref!r}, ours gave {ours}"
    assert isinstance(ours, FlowPlan)
    np.testing.assert_array_equal(bits(ours.sigmas), bits(ref.sigmas.numpy()))
    np.testing.assert_array_equal(bits(ours.timesteps), bits(ref.timesteps.numpy()))
    assert ours.num_inference_steps == ref.num_inference_steps
    assert type(ours.num_inference_steps) is int
    assert ours.sigmas.shape == (ours.num_inference_steps + 1,)
    assert ours.timesteps.shape == (ours.num_inference_steps,)
    np.testing.assert_array_equal(ours.next_sigmas, ours.sigmas[1:])
    # the reference's rounding may leave σ a little above 1 (so below 0 once inverted)
    assert np.all(np.isfinite(ours.sigmas)) and np.all(np.abs(ours.sigmas - 0.5) <= 0.5 + 2**-10)
    assert our_msgs == ref_msgs
    return "equal"


# ------------------------------------------------------------------------------- strategies
SHIFTS = st.one_of(
    st.sampled_from([1.0, 3.0, 0.5, 7.0, 1.15, 2, 5]),  # ints too: the reference keeps them
    st.floats(0.01, 30.0),
    st.floats(0.01, 3.4e38),
)


def mus(time_shift_type: str) -> st.SearchStrategy[float]:
    if time_shift_type == "exponential":
        return st.one_of(st.sampled_from([0.5, 1.15, 0.0, 3.0]), st.floats(-80.0, 80.0))
    return st.one_of(st.sampled_from([0.5, 1.0, 3.0]), st.floats(1e-30, 1e30))


@st.composite
def config_fields(draw) -> dict:
    """Constructor fields over the space both the reference and FlowConfig accept."""
    fields = {
        "num_train_timesteps": draw(st.one_of(st.just(1000), st.integers(1, 2000))),
        "shift": draw(SHIFTS),
        "use_dynamic_shifting": draw(st.booleans()),
        "invert_sigmas": draw(st.booleans()),
        "shift_terminal": draw(
            st.one_of(st.none(), st.floats(0.0, 1.0, exclude_min=True, exclude_max=True))
        ),
        "time_shift_type": draw(st.sampled_from(["exponential", "linear"])),
        **FAMILIES[draw(st.sampled_from(list(FAMILIES)))],
    }
    if draw(st.booleans()):  # the pipelines' fields: kept, not read by the plan
        fields["base_shift"] = draw(st.floats(-2.0, 2.0))
        fields["max_shift"] = draw(st.floats(-2.0, 2.0))
        fields["base_image_seq_len"] = draw(st.integers(1, 1024))
        fields["max_image_seq_len"] = fields["base_image_seq_len"] + draw(st.integers(1, 8192))
    return fields


@st.composite
def custom_values(draw, n: int, hi: float, *, integers: bool = False):
    """n values in [0, hi], as pipelines pass them (linspace from hi down) or any order, in a
    list, a float64 or a float32 array, or (for timesteps) a list of ints."""
    kind = draw(st.sampled_from(["linspace", "descending", "any"]))
    if kind == "linspace":
        values = np.linspace(hi, draw(st.sampled_from([0.0, hi / n, hi / (n + 1)])), n)
    else:
        values = np.array(
            draw(
                st.lists(
                    st.one_of(st.sampled_from([0.0, hi]), st.floats(0.0, hi)),
                    min_size=n,
                    max_size=n,
                )
            )
        )
        if kind == "descending":
            values = np.sort(values)[::-1]
    container = draw(st.sampled_from(["list", "float64", "float32"] + ["int"] * integers))
    if container == "int":
        return np.round(values).astype(int).tolist()
    if container == "list":
        return values.tolist()
    return values.astype(container)


@st.composite
def plan_cases(draw) -> tuple[dict, dict]:
    fields = draw(config_fields())
    n = draw(st.integers(1, 50))
    mode = draw(st.sampled_from(["n", "n", "sigmas", "timesteps", "both"]))
    kwargs: dict = {}
    if mode in ("sigmas", "both"):
        kwargs["sigmas"] = draw(custom_values(n, 1.0))
    if mode in ("timesteps", "both"):
        n_train = fields["num_train_timesteps"]
        kwargs["timesteps"] = draw(custom_values(n, n_train, integers=True))
    if mode == "n" or draw(st.booleans()):
        kwargs["num_inference_steps"] = n
    if fields["use_dynamic_shifting"]:
        kwargs["mu"] = draw(mus(fields["time_shift_type"]))
    elif draw(st.integers(0, 3)) == 0:
        kwargs["mu"] = draw(st.floats(-5.0, 5.0))  # ignored, as in the reference
    if draw(st.integers(0, 3)) == 0:
        kwargs["shift"] = draw(SHIFTS)
    return fields, kwargs


# ------------------------------------------------------------------------------- the plans
@settings(max_examples=examples(240))
@given(plan_cases())
def test_plan_matches_reference(case):
    fields, kwargs = case
    event(assert_same_plan(fields, kwargs))
    custom = "+".join(k for k in ("sigmas", "timesteps") if k in kwargs)
    event(f"custom {custom}" if custom else "default grid")


#: every option combination, on a fixed step count: default grid, custom σ, custom timesteps
#: (ending above 0, so that exponential σ are defined), and both
GRID_CALLS = {
    "default": {"num_inference_steps": 10},
    "sigmas": {"sigmas": np.linspace(1.0, 0.1, 10)},
    "timesteps": {"timesteps": np.linspace(1000.0, 37.0, 10)},
    "both": {"sigmas": [0.9, 0.6, 0.35, 0.2, 0.05], "timesteps": [999, 700, 400, 150, 20]},
}


def test_every_option_combination_matches_reference():
    shifts = [("exponential", False), ("exponential", True), ("linear", True)]
    combos = itertools.product(
        shifts, (False, True), (None, 0.1), FAMILIES, GRID_CALLS, (None, 2.5)
    )
    count = 0
    for (kind, dynamic), invert, terminal, family, call, shift in combos:
        fields = dict(
            shift=3.0,
            use_dynamic_shifting=dynamic,
            time_shift_type=kind,
            invert_sigmas=invert,
            shift_terminal=terminal,
            **FAMILIES[family],
        )
        kwargs = dict(GRID_CALLS[call])
        if dynamic:
            kwargs["mu"] = 1.15 if kind == "exponential" else 2.0
        if shift is not None:
            kwargs["shift"] = shift
        assert assert_same_plan(fields, kwargs) == "equal", (fields, kwargs)
        count += 1
    assert count == 3 * 2 * 2 * 4 * 4 * 2


@settings(max_examples=examples(60))
@given(config_fields())
def test_train_sigmas_and_range_match_reference(fields):
    ref = FlowMatchEulerDiscreteScheduler(**fields)
    config = FlowConfig(**fields)
    table = train_sigmas(config)
    assert table.shape == (config.num_train_timesteps,)
    np.testing.assert_array_equal(bits(table), bits(ref.sigmas.numpy()))
    sigma_min, sigma_max = train_sigma_range(config)
    assert type(sigma_min) is float and type(sigma_max) is float
    assert (sigma_min, sigma_max) == (ref.sigma_min, ref.sigma_max)


def test_plan_is_host_numpy_and_fresh():
    plan = flow_plan(FlowConfig(), 3)
    assert isinstance(plan.sigmas, np.ndarray) and isinstance(plan.timesteps, np.ndarray)
    sigmas = [0.9, 0.5, 0.2]
    custom = np.asarray(sigmas, dtype=np.float32)
    flow_plan(FlowConfig(shift=3.0), sigmas=custom).sigmas[0] = 7.0
    np.testing.assert_array_equal(custom, np.asarray(sigmas, dtype=np.float32))


def test_perturbing_one_float_op_is_caught():
    """The comparison sees a single-ulp change: the same shift written with the division first
    differs from the reference somewhere on the default grid."""
    n_train, shift = 1000, 3.0
    table = np.linspace(1, n_train, n_train, dtype=np.float32)[::-1].copy() / n_train
    reordered = shift * (table / (1 + (shift - 1) * table))
    assert not np.array_equal(bits(reordered), bits(train_sigmas(FlowConfig(shift=shift))))


# ------------------------------------------------------------------------------- config
def test_from_config_round_trips():
    ref = FlowMatchEulerDiscreteScheduler()
    assert FlowConfig.from_config(ref.config) == FlowConfig()
    config = FlowConfig(
        num_train_timesteps=777,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=None,
        max_shift=None,
        invert_sigmas=True,
        shift_terminal=0.02,
        use_beta_sigmas=True,
        time_shift_type="linear",
    )
    ref = FlowMatchEulerDiscreteScheduler.from_config(config.to_dict())
    assert FlowConfig.from_config(ref.config) == config
    assert set(config.to_dict()) == set(ref.config) - {"stochastic_sampling", "_use_default_values"}
    assert hash(config) == hash(config.replace())
    assert config.replace(shift=5.0).shift == 5.0


def test_beta_sigmas_need_scipy(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else find_spec(name)
    )
    with pytest.raises(ImportError, match="scipy"):
        FlowConfig(use_beta_sigmas=True)


# ------------------------------------------------------------------------------- errors
CONFIG_ERRORS = [
    ({"num_train_timesteps": 0}, "num_train_timesteps"),
    ({"num_train_timesteps": 10.0}, "num_train_timesteps"),
    ({"num_train_timesteps": True}, "num_train_timesteps"),
    ({"num_train_timesteps": 2**24 + 1}, "num_train_timesteps"),
    ({"shift": 0.0}, "shift"),
    ({"shift": -1.0}, "shift"),
    ({"shift": float("nan")}, "shift"),
    ({"shift": float("inf")}, "shift"),
    ({"shift": 1e-9}, "shift"),
    ({"shift": 0.009}, "shift"),
    ({"shift": 1e39}, "shift"),
    ({"shift": "3"}, "shift"),
    ({"base_shift": float("nan")}, "base_shift"),
    ({"max_shift": "1.15"}, "max_shift"),
    ({"base_image_seq_len": 0}, "base_image_seq_len"),
    ({"max_image_seq_len": 256}, "max_image_seq_len"),
    ({"shift_terminal": 0.0}, "shift_terminal"),
    ({"shift_terminal": 1.0}, "shift_terminal"),
    ({"shift_terminal": -0.1}, "shift_terminal"),
    ({"shift_terminal": float("nan")}, "shift_terminal"),
    ({"use_dynamic_shifting": 1}, "use_dynamic_shifting"),
    ({"invert_sigmas": None}, "invert_sigmas"),
    ({"use_karras_sigmas": True, "use_beta_sigmas": True}, "use_karras_sigmas"),
    ({"use_exponential_sigmas": True, "use_beta_sigmas": True}, "use_exponential_sigmas"),
    ({"time_shift_type": "cosine"}, "time_shift_type"),
]


@pytest.mark.parametrize(("fields", "name"), CONFIG_ERRORS)
def test_config_errors_name_the_field(fields, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        FlowConfig(**fields)


def test_from_config_errors():
    with pytest.raises(ValueError, match="`config`"):
        FlowConfig.from_config([("shift", 3.0)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bogus"):
        FlowConfig.from_config({}, bogus=1)
    with pytest.raises(TypeError, match="`config`"):
        flow_plan({"shift": 3.0}, 4)  # type: ignore[arg-type]


DYNAMIC = {"use_dynamic_shifting": True}
LINEAR = {"use_dynamic_shifting": True, "time_shift_type": "linear"}
PLAN_ERRORS = [
    (DYNAMIC, {"num_inference_steps": 4}, "mu"),
    (DYNAMIC, {"num_inference_steps": 4, "mu": 100.0}, "mu"),
    (DYNAMIC, {"num_inference_steps": 4, "mu": float("nan")}, "mu"),
    (DYNAMIC, {"num_inference_steps": 4, "mu": "1.0"}, "mu"),
    (LINEAR, {"num_inference_steps": 4, "mu": 0.0}, "mu"),
    (LINEAR, {"num_inference_steps": 4, "mu": -1.0}, "mu"),
    ({}, {}, "num_inference_steps"),
    ({}, {"num_inference_steps": 0}, "num_inference_steps"),
    ({}, {"num_inference_steps": 2.0}, "num_inference_steps"),
    ({}, {"num_inference_steps": True}, "num_inference_steps"),
    ({}, {"num_inference_steps": 3, "sigmas": [1.0, 0.5]}, "num_inference_steps"),
    ({}, {"num_inference_steps": 3, "timesteps": [900, 500]}, "num_inference_steps"),
    ({}, {"sigmas": [1.0, 0.5], "timesteps": [900, 500, 100]}, "sigmas"),
    ({}, {"sigmas": []}, "sigmas"),
    ({}, {"sigmas": [[1.0, 0.5]]}, "sigmas"),
    ({}, {"sigmas": 0.5}, "sigmas"),
    ({}, {"sigmas": ["a", "b"]}, "sigmas"),
    ({}, {"sigmas": [1.0, [0.5, 0.2]]}, "sigmas"),
    ({}, {"sigmas": [1.5, 0.5]}, "sigmas"),
    ({}, {"sigmas": [1.0, -0.1]}, "sigmas"),
    ({}, {"sigmas": [1.0, float("nan")]}, "sigmas"),
    ({}, {"sigmas": [True, False]}, "sigmas"),
    ({}, {"timesteps": [1001, 500]}, "timesteps"),
    ({}, {"timesteps": [900, -1]}, "timesteps"),
    ({}, {"timesteps": [900, float("inf")]}, "timesteps"),
    ({}, {"num_inference_steps": 4, "shift": 0.0}, "shift"),
    ({"shift_terminal": 0.1}, {"num_inference_steps": 1}, "shift_terminal"),
    ({"shift_terminal": 0.1}, {"sigmas": [0.5, 1.0]}, "shift_terminal"),
    ({"shift_terminal": 0.5}, {"sigmas": [0.0, 1.0], "shift": 0.01}, "shift_terminal"),
    ({"shift_terminal": 0.1}, {"sigmas": [0.2, 0.9, 0.5]}, "shift_terminal"),
    (
        {"shift_terminal": 0.1, "use_karras_sigmas": True},
        {"sigmas": [0.2, 0.9, 0.5]},
        "shift_terminal",
    ),
    ({"use_exponential_sigmas": True}, {"sigmas": [1.0, 0.5, 0.0]}, "use_exponential_sigmas"),
]


@pytest.mark.parametrize(("fields", "kwargs", "name"), PLAN_ERRORS)
def test_plan_errors_name_the_argument(fields, kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        flow_plan(FlowConfig(**fields), **kwargs)


#: what the reference does with some of the inputs we reject
REFERENCE_NONSENSE = [
    # a single default step stretched to shift_terminal: 0/0
    ({"shift_terminal": 0.1}, {"num_inference_steps": 1}, "nan"),
    # a shift below float32's reach: σ_max = s / 0 = inf in the table, so the grid from it is NaN
    ({"shift": 1e-9}, {"num_inference_steps": 4}, "nan"),
    # small shifts: the float32 table's top σ misses 1, and the default grid's first σ with it
    ({"shift": 1e-5}, {"num_inference_steps": 4}, "first σ not 1"),
    ({"shift": 1e-3}, {"num_inference_steps": 4}, "first σ not 1"),
    # exp(mu) beyond float32, with custom σ (a float32 shift): inf / inf
    (DYNAMIC, {"sigmas": [1.0, 0.5], "mu": 100.0}, "nan"),
    # a linear time shift by mu = 0: 0 / 0 at σ = 1
    (LINEAR, {"num_inference_steps": 4, "mu": 0.0}, "nan"),
    # non-monotone custom σ stretched to shift_terminal: negative σ
    ({"shift_terminal": 0.1}, {"sigmas": [0.2, 0.9, 0.5]}, "negative"),
    # custom σ ending at 1, shifted to just above 1 in float32, then stretched: 1 − σ < 0
    ({"shift_terminal": 0.5}, {"sigmas": [0.0, 1.0], "shift": 0.01}, "σ above 1"),
    # no step at all
    ({}, {"num_inference_steps": 0}, "empty"),
    # the logarithm of σ = 0
    ({"use_exponential_sigmas": True}, {"sigmas": [1.0, 0.5, 0.0]}, "math domain error"),
]


@pytest.mark.parametrize(("fields", "kwargs", "what"), REFERENCE_NONSENSE)
def test_reference_accepts_nonsense_we_reject(fields, kwargs, what):
    ref, _, _ = reference_plan(fields, kwargs)
    if isinstance(ref, Exception):
        assert what in str(ref)
        return
    sigmas = ref.sigmas.numpy()
    seen = {
        "nan": np.isnan(sigmas).any(),
        "negative": (sigmas < 0).any(),
        "empty": sigmas.shape == (1,),
        "first σ not 1": abs(sigmas[0] - 1) > 0.01,
        "σ above 1": sigmas.max() > 2,
    }
    assert seen[what], sigmas


def test_reference_ignores_shift_terminal_zero():
    """The reference tests shift_terminal for truth: 0.0 gives the plan without it (we raise)."""
    with_zero, without = (FlowMatchEulerDiscreteScheduler(shift_terminal=v) for v in (0.0, None))
    for sched in (with_zero, without):
        sched.set_timesteps(8)
    assert np.array_equal(with_zero.sigmas.numpy(), without.sigmas.numpy())
