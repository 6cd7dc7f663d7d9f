"""``FlaxFlowMatchTCDScheduler``: TCD on flow-matching models, in the convention of MaxDiffusion's
``FlaxFlowMatchScheduler``.

MaxDiffusion (the JAX diffusion codebase for TPUs: FLUX, Wan, LTX-Video, LTX-2) drives its
flow-matching scheduler as a config object plus an immutable state pytree::

    scheduler, _ = FlaxFlowMatchScheduler.from_pretrained(folder, subfolder="scheduler")
    state = scheduler.set_timesteps(scheduler.create_state(), num_inference_steps, shape=shape)
    latents, state = scheduler.step(state, noise_pred, t, latents).to_tuple()
    latents, _ = scheduler.step(state, noise_pred, t, latents, return_dict=False)

Its step looks its index up from the timestep (the closest entry of ``state.timesteps``) on every
call, because loops such as LTX-2's ``lax.scan`` body throw the returned state away, and it returns
the state unchanged. This class answers those calls the same way, and steps with TCD on the
core's flow path (:data:`tcd_core.FLOW`, through the same keyed step as the compiled loop,
``_step.jax_step``): from σ through σ_s = f32(1−η)·σ_next, re-noised to σ_next with
z = ``normal(fold_in(state.key, index))``. η and the key live in the state (the loops pass
neither to ``step``). At η = 0 the step is the Euler step those loops run today.

The plan is diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps``, bit for bit
(:func:`tcd_core.flow_plan`), so it equals ``tcd_diffusers.FlowMatchTCDScheduler`` given
the same noise; MaxDiffusion's own keyword conventions map onto it (``shift=`` is ``mu`` under
dynamic shifting, ``denoising_strength`` a shorter grid, ``reverse_sigmas`` is
``invert_sigmas``). See ``docs/guides/jax.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tcd_core import FLOW, TCD, FlowConfig, check_eta, flow_plan, train_sigma_range
from tcd_core._array import is_array
from tcd_core._step_common import check_array

from ._convention import (
    OutputMixin,
    SchedulerMixin,
    check_dtype,
    pytree_dataclass,
    state_eta,
    state_key,
)
from ._step import FLOW_STEP_CONFIG, eta_arrays, keyed_step
from .noise import as_typed_key

__all__ = [
    "FlaxFlowMatchTCDScheduler",
    "FlaxFlowMatchTCDSchedulerOutput",
    "FlaxFlowMatchTCDSchedulerState",
    "FlowMatchTCDConfig",
]

#: η of a scheduler configured without one (``tcd_diffusers.FlowMatchTCDScheduler``'s default).
DEFAULT_ETA = 0.3

#: MaxDiffusion's ``FlaxFlowMatchScheduler`` fields that diffusers' flow config does not have.
_MAXDIFFUSION_FIELDS = ("sigma_max", "sigma_min", "inverse_timesteps", "extra_one_step")
_FLOW_FIELDS = tuple(FlowConfig().to_dict())
#: Every field the constructor takes.
_FIELDS = (*_FLOW_FIELDS, *_MAXDIFFUSION_FIELDS, "reverse_sigmas", "stochastic_sampling", "eta")
#: How far a given ``sigma_min``/``sigma_max`` may be from the training table's end (relative):
#: MaxDiffusion writes the shift-3 table's last σ as the double 0.003/1.002, 3e-9 from its float32.
_SIGMA_RANGE_RTOL = 1e-6


class FlowMatchTCDConfig(Mapping[str, Any]):
    """The scheduler's configuration: a read-only mapping that also reads as attributes
    (``config["shift"]``, ``config.shift``, ``config.get("base_shift", 0.5)``), as MaxDiffusion's
    and diffusers' frozen configs do; hashable, so a scheduler can be a static argument of
    ``jax.jit`` (MaxDiffusion's LTX-2 loop passes ``scheduler.step`` as one).

    Its fields: diffusers' ``FlowMatchEulerDiscreteScheduler`` fields
    (:class:`tcd_core.FlowConfig`), ``stochastic_sampling``, ``eta``, and MaxDiffusion's
    ``sigma_max``, ``sigma_min`` (the training table's ends), ``inverse_timesteps``,
    ``extra_one_step`` and ``reverse_sigmas`` (= ``invert_sigmas``).
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_data", dict(data))

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"the config has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the config is read-only: build a new scheduler to change it")

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._data.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"


@pytree_dataclass
class FlaxFlowMatchTCDSchedulerState:
    """The state of :class:`FlaxFlowMatchTCDScheduler`: a frozen dataclass registered as a JAX
    pytree (MaxDiffusion's ``FlowMatchSchedulerState`` fields that sampling reads, plus the key
    and η).

    Attributes:
        timesteps: float32 ``(n,)``, the model's time at each step (diffusers'
            ``scheduler.timesteps``); None before :meth:`~FlaxFlowMatchTCDScheduler.set_timesteps`.
        sigmas: float32 ``(n,)``, each step's σ (MaxDiffusion's ``state.sigmas``: no terminal
            entry).
        next_sigmas: float32 ``(n,)``, each step's σ_next: ``sigmas[1:]`` then the terminal σ (0,
            or 1 for ``invert_sigmas``).
        num_inference_steps: int32 0-d, ``n``.
        key: the PRNG key of the re-noising draws (step i draws ``normal(fold_in(key, i))``): one
            typed key, or one per batch element (shape ``(B,)``).
        eta: float32 η ∈ [0, 1], 0-d or one per batch element (an array: a new value reuses the
            compiled loop).
        one_minus_eta: float32 f32(1 − η), rounded on the host from double precision whenever
            η is set with a host value (the reference's rounding); set only ``eta``.

    Shapes and dtypes do not change after ``set_timesteps``, so a state can be a loop carry.
    """

    timesteps: jax.Array | None
    sigmas: jax.Array | None
    next_sigmas: jax.Array | None
    num_inference_steps: jax.Array | None
    key: jax.Array
    eta: jax.Array
    one_minus_eta: jax.Array

    def replace(self, **changes: Any) -> FlaxFlowMatchTCDSchedulerState:
        """A copy with some fields changed (``flax.struct`` style): ``eta=`` also sets
        ``one_minus_eta`` (unless given too); ``key=`` accepts raw ``uint32`` threefry keys."""
        if "eta" in changes and "one_minus_eta" not in changes:
            changes["eta"], changes["one_minus_eta"] = state_eta(changes["eta"])
        if "key" in changes:
            changes["key"] = state_key(changes["key"])
        return dataclasses.replace(self, **changes)


@pytree_dataclass
class FlaxFlowMatchTCDSchedulerOutput(OutputMixin):
    """What :meth:`FlaxFlowMatchTCDScheduler.step` returns (a pytree). ``to_tuple()`` gives
    ``(prev_sample, state)``, as MaxDiffusion's ``FlaxFlowMatchSchedulerOutput`` does.

    Attributes:
        prev_sample: the sample at σ_next, the next model input (in the sample's dtype).
        state: the state, unchanged (the step finds its index from the timestep).
        pred_noised_sample: x_s = x + (σ_s − σ)·v, the Euler jump to the intermediate σ_s.
        pred_original_sample: x̂₀ = x − σ·v.
    """

    prev_sample: jax.Array
    state: FlaxFlowMatchTCDSchedulerState
    pred_noised_sample: jax.Array
    pred_original_sample: jax.Array


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be a bool, got {value!r}")
    return bool(value)


class FlaxFlowMatchTCDScheduler(SchedulerMixin[FlowConfig, FlaxFlowMatchTCDSchedulerState]):
    r"""TCD's Strategic Stochastic Sampling on a flow-matching model, for JAX, in MaxDiffusion's
    ``FlaxFlowMatchScheduler`` convention (see the module docstring).

    One step from σ to σ_next with the velocity v = ε − x₀ the model predicts:
    σ_s = f32(1−η)·σ_next, x_s = x + (σ_s − σ)·v, and x_next = a·x_s + √(σ_next² − a²σ_s²)·z
    with a = (1−σ_next)/(1−σ_s), z = ``normal(fold_in(state.key, index))`` in the sample's dtype;
    computed in float32, returned in the sample's dtype. η = 0 is the Euler step, η = 1 the
    stochastic Euler (FlowMatchLCM) step. Numerically ``tcd_diffusers.FlowMatchTCDScheduler`` given
    the same noise.

    Args:
        config: a :class:`tcd_core.FlowConfig` or a ``scheduler_config.json``-style
            mapping (a model folder's ``FlowMatchEulerDiscreteScheduler`` config; unknown keys are
            ignored); keyword arguments set or override single fields.
        dtype: MaxDiffusion's ``dtype=``, kept as ``scheduler.dtype`` (its pipelines build their
            custom ``sigmas``/``timesteps`` arrays in it). The plan stays float32 (diffusers'
            plan is) and the step computes in float32.
        **fields: diffusers' ``FlowMatchEulerDiscreteScheduler`` fields (``shift``,
            ``use_dynamic_shifting``, ``base_shift``, ``max_shift``, ``shift_terminal``,
            ``time_shift_type``, ``invert_sigmas``, the Karras/exponential/beta flags, …),
            ``eta`` (default 0.3: η of a state created without one), ``stochastic_sampling``
            (η = 1; accepted only with ``eta=1``), and MaxDiffusion's: ``sigma_max`` and
            ``sigma_min`` (accepted when they are the training table's ends, which the plan's grid
            runs between: 1 and ``shift(1/N)``), ``reverse_sigmas`` (diffusers' ``invert_sigmas``),
            ``inverse_timesteps`` and ``extra_one_step`` (False only: no sampling plan of diffusers
            has them; pass custom ``sigmas`` to ``set_timesteps`` instead). Every value is
            checked (ValueError naming the field).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from tcd_jax import FlaxFlowMatchTCDScheduler
        >>> scheduler = FlaxFlowMatchTCDScheduler(shift=3.0, eta=0.3)
        >>> state = scheduler.set_timesteps(scheduler.create_state(key=jax.random.key(1)), 4)
        >>> x = jax.random.normal(jax.random.key(0), (1, 16, 8, 8))
        >>> def body(carry, t):
        ...     x, state = carry
        ...     v = 0.1 * x                                 # the transformer goes here
        ...     return scheduler.step(state, v, t, x).to_tuple(), None
        >>> (x, state), _ = jax.lax.scan(body, (x, state), state.timesteps)
        >>> x.shape, x.dtype
        ((1, 16, 8, 8), dtype('float32'))
    """

    #: The class a saved config names (``tcd_diffusers.FlowMatchTCDScheduler`` reads its fields).
    _class_name = "FlowMatchTCDScheduler"

    def __init__(
        self,
        config: FlowConfig | Mapping[str, Any] | None = None,
        *,
        dtype: Any = jnp.float32,
        **fields: Any,
    ) -> None:
        if isinstance(config, FlowConfig):
            given: dict[str, Any] = config.to_dict()
        elif isinstance(config, Mapping):
            given = {k: v for k, v in config.items() if k in _FIELDS}
        elif config is None:
            given = {}
        else:
            raise ValueError(
                "`config` must be a tcd_core.FlowConfig or a scheduler config mapping, "
                f"got {type(config).__name__}"
            )
        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown FlaxFlowMatchTCDScheduler field(s): {sorted(unknown)}")
        given.update(fields)
        self.dtype = check_dtype(dtype)
        self._flow, self._config = self._checked(given)

    @staticmethod
    def _checked(given: dict[str, Any]) -> tuple[FlowConfig, FlowMatchTCDConfig]:
        """(the plan's FlowConfig, the whole config) from the given fields, every one checked."""
        eta = given.pop("eta", DEFAULT_ETA)
        check_eta(eta)
        if is_array(eta) or np.ndim(eta) != 0:
            raise ValueError(f"`eta` must be a number in [0, 1], got {eta!r}")
        eta = float(eta)
        stochastic = _check_bool("stochastic_sampling", given.pop("stochastic_sampling", False))
        if stochastic and eta != 1.0:
            raise ValueError(
                "`stochastic_sampling=True` is TCD's eta=1 (the stochastic Euler step); pass "
                f"eta=1.0 with it, or stochastic_sampling=False with eta={eta!r}"
            )
        reverse = _check_bool("reverse_sigmas", given.pop("reverse_sigmas", False))
        for name in ("inverse_timesteps", "extra_one_step"):
            if _check_bool(name, given.pop(name, False)):
                raise ValueError(
                    f"`{name}=True` gives a grid that diffusers' flow plans do not have: pass "
                    "the σ you want as set_timesteps(state, sigmas=...) instead"
                )
        sigma_max, sigma_min = given.pop("sigma_max", None), given.pop("sigma_min", None)
        flow = FlowConfig(**({**given, "invert_sigmas": True} if reverse else given))
        table_min, table_max = train_sigma_range(flow)
        ends = (("sigma_min", sigma_min, table_min), ("sigma_max", sigma_max, table_max))
        for name, value, end in ends:
            if value is None:
                continue
            ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
            if not (ok and math.isclose(float(value), end, rel_tol=_SIGMA_RANGE_RTOL)):
                raise ValueError(
                    f"`{name}` must be the training σ table's end for this config ({end!r}: the "
                    f"plan's grid runs between the table's ends, as diffusers' does), got "
                    f"{value!r}; pass custom σ as set_timesteps(state, sigmas=...) instead"
                )
        if flow.invert_sigmas and eta > 0:
            raise ValueError(
                "`invert_sigmas=True` (MaxDiffusion's `reverse_sigmas`) runs σ from 0 up to 1, "
                f"where TCD's re-noising is not defined: use eta=0 (the Euler step), got eta={eta!r}"
            )
        data = flow.to_dict()
        data.update(
            stochastic_sampling=stochastic,
            eta=eta,
            sigma_max=table_max,
            sigma_min=table_min,
            inverse_timesteps=False,
            extra_one_step=False,
            reverse_sigmas=flow.invert_sigmas,
        )
        return flow, FlowMatchTCDConfig(data)

    # ------------------------------------------------------------------ configuration
    @property
    def config(self) -> FlowMatchTCDConfig:
        """The configuration: a read-only, hashable mapping with attribute access (see
        :class:`FlowMatchTCDConfig`)."""
        return self._config

    @property
    def flow_config(self) -> FlowConfig:
        """The plan's :class:`tcd_core.FlowConfig` (diffusers' fields)."""
        return self._flow

    def __repr__(self) -> str:
        # the fields as a plain dict, without the config's own class name around them
        return f"{type(self).__name__}({dict(self._config)!r}, dtype={self.dtype.name})"

    def _saved_fields(self) -> dict[str, Any]:
        """diffusers' flow fields, ``eta`` and ``stochastic_sampling``."""
        data = self._flow.to_dict()
        data.update(
            eta=self._config["eta"], stochastic_sampling=self._config["stochastic_sampling"]
        )
        return data

    # ------------------------------------------------------------------ state
    def _host_eta(self, eta: Any) -> Any:
        """η for a state: the config's when None; a host η > 0 refused on an inverted plan."""
        eta = self._config["eta"] if eta is None else eta
        check_eta(eta)
        if self._flow.invert_sigmas and not is_array(eta) and np.any(np.asarray(eta) > 0):
            raise ValueError(
                "`eta` must be 0 with `invert_sigmas=True` (σ from 0 up to 1, where TCD's "
                f"re-noising is not defined: only the Euler step is), got eta={eta!r}"
            )
        return eta

    def create_state(self, key: Any = None, eta: Any = None) -> FlaxFlowMatchTCDSchedulerState:
        """The initial state: no plan yet (``step`` refuses to run before :meth:`set_timesteps`,
        as MaxDiffusion's state holds None there), the PRNG ``key`` and ``eta``.

        Args:
            key: a PRNG key (any implementation; raw ``uint32`` threefry keys are wrapped), one or
                one per batch element. Default ``jax.random.key(0)``, a fixed key.
            eta: η ∈ [0, 1], a number or one per batch element; default the config's ``eta``.
        """
        eta_f32, one_minus = state_eta(self._host_eta(eta))
        return FlaxFlowMatchTCDSchedulerState(
            timesteps=None,
            sigmas=None,
            next_sigmas=None,
            num_inference_steps=None,
            key=state_key(key),
            eta=eta_f32,
            one_minus_eta=one_minus,
        )

    def set_timesteps(
        self,
        state: FlaxFlowMatchTCDSchedulerState,
        num_inference_steps: int | None = None,
        shape: tuple[int, ...] | None = None,
        denoising_strength: float = 1.0,
        training: bool = False,
        shift: float | None = None,
        timesteps: Any = None,
        sigmas: Any = None,
        *,
        mu: float | None = None,
        key: Any = None,
        eta: Any = None,
    ) -> FlaxFlowMatchTCDSchedulerState:
        """The state for a new sampling run: diffusers' ``FlowMatchEulerDiscreteScheduler`` plan,
        bit for bit (:func:`tcd_core.flow_plan`), computed on the host.

        MaxDiffusion's signatures and conventions: those of ``set_timesteps`` and of
        ``set_timesteps_ltx2`` (its LTX-2 entry point, which adds ``timesteps`` and ``sigmas``
        after ``shift``; here it is this method). ``shape`` is accepted and unused;
        ``shift`` overrides the config's shift, and under ``use_dynamic_shifting`` (where
        MaxDiffusion passes the time shift μ as ``shift``) it is ``mu``; ``denoising_strength``
        < 1 starts the grid lower, at σ_min + (σ_max − σ_min)·strength of the training table's
        ends (MaxDiffusion's img2img grid, shifted as the default grid is); ``training=True`` is
        refused (this scheduler samples). ``sigmas``, ``mu`` and ``timesteps`` are diffusers'
        (``sigmas``/``timesteps`` may be concrete JAX arrays). ``key``/``eta`` replace the
        state's when given. The state may be traced (a pipeline's ``jit``): the plan depends only
        on the config and these arguments.

        Example:
            >>> from tcd_jax import FlaxFlowMatchTCDScheduler
            >>> s = FlaxFlowMatchTCDScheduler(use_dynamic_shifting=True, time_shift_type="exponential")
            >>> state = s.set_timesteps(s.create_state(), 4, shift=1.15)     # MaxDiffusion: μ
            >>> [round(v, 1) for v in state.timesteps.tolist()]
            [1000.0, 863.5, 613.0, 3.2]
        """
        del shape
        if _check_bool("training", training):
            raise ValueError(
                "`training=True` (MaxDiffusion's training weights) is not supported: this "
                "scheduler samples"
            )
        flow = self._flow
        if flow.use_dynamic_shifting and shift is not None:
            if mu is not None:
                raise ValueError(
                    "pass the time shift once: `mu` or MaxDiffusion's `shift` (with "
                    "use_dynamic_shifting they are the same), not both"
                )
            mu, shift = shift, None
        strength = denoising_strength
        if isinstance(strength, bool) or not isinstance(strength, (int, float, np.floating)):
            raise ValueError(f"`denoising_strength` must be a number in (0, 1], got {strength!r}")
        if not 0.0 < float(strength) <= 1.0:
            raise ValueError(f"`denoising_strength` must be in (0, 1], got {strength!r}")
        if float(strength) != 1.0:
            if sigmas is not None or timesteps is not None:
                raise ValueError(
                    "`denoising_strength` < 1 builds its own grid: pass it without `sigmas` "
                    "and `timesteps`"
                )
            if num_inference_steps is None:
                raise ValueError("`num_inference_steps` must be given with `denoising_strength`")
            sigma_min, sigma_max = train_sigma_range(flow)
            start = sigma_min + (sigma_max - sigma_min) * float(strength)
            sigmas = np.linspace(start, sigma_min, int(num_inference_steps))
        plan = flow_plan(
            flow,
            num_inference_steps,
            sigmas=_host(sigmas),
            mu=mu,
            timesteps=_host(timesteps),
            shift=shift,
        )
        given: dict[str, Any] = {}
        if key is not None:
            given["key"] = key
        if eta is not None:
            given["eta"] = self._host_eta(eta)
        return state.replace(
            timesteps=jnp.asarray(plan.timesteps, dtype=jnp.float32),
            sigmas=jnp.asarray(plan.sigmas[:-1], dtype=jnp.float32),
            next_sigmas=jnp.asarray(plan.sigmas[1:], dtype=jnp.float32),
            num_inference_steps=jnp.asarray(plan.num_inference_steps, dtype=jnp.int32),
            **given,
        )

    #: MaxDiffusion's LTX-2 entry point (custom ``sigmas``/``timesteps``, the time shift as
    #: ``shift``): the same method, whose positional order already extends to it.
    set_timesteps_ltx2 = set_timesteps

    # ------------------------------------------------------------------ the step
    @staticmethod
    def _plan(state: FlaxFlowMatchTCDSchedulerState) -> tuple[jax.Array, jax.Array, jax.Array]:
        if state.timesteps is None or state.sigmas is None or state.next_sigmas is None:
            raise ValueError(
                "the state has no plan: call `set_timesteps` before `step` or `add_noise`"
            )
        return state.timesteps, state.sigmas, state.next_sigmas

    def index_for_timestep(self, state: FlaxFlowMatchTCDSchedulerState, timestep: Any) -> jax.Array:
        """The index of the entry of ``state.timesteps`` closest to ``timestep`` (int32; one per
        batch element for a 1-D ``timestep``), as MaxDiffusion finds it: jit-safe (no host read),
        and exact for a timestep cast to another dtype on the way (Wan's loops pass int32
        timesteps, bfloat16 models round them)."""
        timesteps = self._plan(state)[0]
        t = jnp.asarray(timestep)
        if t.ndim > 1:
            raise ValueError(f"`timestep` must be a scalar or a 1-D array, got shape {t.shape}")
        t = t.astype(jnp.float32)
        if t.ndim == 0:
            return jnp.argmin(jnp.abs(timesteps - t)).astype(jnp.int32)
        return jnp.argmin(jnp.abs(timesteps[None, :] - t[:, None]), axis=1).astype(jnp.int32)

    def step(
        self,
        state: FlaxFlowMatchTCDSchedulerState,
        model_output: jax.Array,
        timestep: Any,
        sample: jax.Array,
        to_final: bool = False,
        return_dict: bool = True,
        step_index: Any = None,
        *,
        key: Any = None,
        eta: Any = None,
    ) -> FlaxFlowMatchTCDSchedulerOutput | tuple[jax.Array, FlaxFlowMatchTCDSchedulerState]:
        r"""One TCD step on the flow path from the σ of ``timestep`` to the plan's next σ.

        Args:
            state: the state after :meth:`set_timesteps`; returned unchanged.
            model_output: the velocity v = ε − x₀ the model predicts (any float dtype).
            timestep: the model time of this step (0-d, or one per batch element), looked up as
                the closest entry of ``state.timesteps`` (MaxDiffusion's rule; jit-safe).
            sample: x at this σ; the result has its dtype (computed in float32).
            to_final: MaxDiffusion's: step to the terminal σ from wherever this step is.
            return_dict: an output with ``.to_tuple()`` when True, else ``(prev_sample, state)``.
            step_index: MaxDiffusion's: the index itself instead of the lookup.
            key: overrides the state's key for this call.
            eta: overrides the state's η for this call (a host number is checked and rounded as
                the reference rounds it; a JAX array is used as given).

        The noise of step i is ``normal(fold_in(key, i))`` in the sample's dtype (i the first
        batch element's index), entering where η > 0; at the last step (σ_next = 0) its
        coefficient is exactly 0 and it is not drawn, nor at η = 0 (a traced predicate: one
        compiled step for every η).
        """
        check_array("model_output", model_output)
        check_array("sample", sample)
        _, sigmas, next_sigmas = self._plan(state)
        if not isinstance(to_final, (bool, np.bool_)):
            raise ValueError(f"`to_final` must be a bool, got {to_final!r}")
        n = sigmas.shape[0]
        if step_index is None:
            index = self.index_for_timestep(state, timestep)
        else:
            if not is_array(step_index):
                if isinstance(step_index, bool) or not isinstance(step_index, (int, np.integer)):
                    raise ValueError(f"`step_index` must be an integer in [0, {n}), got {step_index!r}")  # fmt: skip
                if not 0 <= step_index < n:
                    raise ValueError(f"`step_index` must be in [0, {n}), got {step_index}")
            index = jnp.asarray(step_index, dtype=jnp.int32)
        if eta is None:
            eta_arr, one_minus = state.eta, state.one_minus_eta
        else:
            eta_arr, one_minus = eta_arrays(eta)
        key = state.key if key is None else as_typed_key(key)
        sigma = sigmas[index]
        if to_final:
            sigma_next = jnp.broadcast_to(next_sigmas[-1], sigma.shape)
            final: Any = True
        else:
            sigma_next = next_sigmas[index]
            final = index == n - 1
        draw = TCD.draws(jnp.asarray(eta_arr), final)
        noise_index = index if index.ndim == 0 else index[0]
        out = keyed_step(
            TCD, model_output, sigma, sample, sigma_next, FLOW, one_minus, None, draw, key,
            noise_index, FLOW_STEP_CONFIG,
        )  # fmt: skip
        if not return_dict:
            return out.next_sample, state
        return FlaxFlowMatchTCDSchedulerOutput(
            out.next_sample, state, out.estimate, out.pred_original_sample
        )

    # ------------------------------------------------------------------ forward process
    def add_noise(
        self,
        state: FlaxFlowMatchTCDSchedulerState,
        original_samples: jax.Array,
        noise: jax.Array,
        timesteps: Any,
    ) -> jax.Array:
        """The flow path's forward process σ·noise + (1−σ)·x₀ at the σ of ``timesteps`` (each the
        closest entry of ``state.timesteps``; one per batch element or one for all), in the
        sample's dtype (diffusers' ``scale_noise``)."""
        check_array("original_samples", original_samples)
        check_array("noise", noise)
        sigmas = self._plan(state)[1]
        sigma = sigmas[self.index_for_timestep(state, timesteps)].astype(original_samples.dtype)
        if sigma.ndim == 1:
            sigma = sigma.reshape(sigma.shape + (1,) * (original_samples.ndim - 1))
        return sigma * noise + (1.0 - sigma) * original_samples


def _host(values: Any) -> Any:
    """Custom ``sigmas``/``timesteps`` as host values (MaxDiffusion passes concrete JAX arrays)."""
    if values is None or not is_array(values):
        return values
    return np.asarray(values)
