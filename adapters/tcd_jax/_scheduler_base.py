"""diffusers' former Flax scheduler convention on top of :mod:`tcd_core`, written once (private).

:class:`FlaxConsistencyScheduler` is the whole scheduler for any :class:`tcd_core.Algorithm`: the
constructor and ``config`` (the rest of the configuration handling, equality, ``from_config`` /
``from_pretrained`` / ``save_pretrained`` and ``scale_model_input``, is
``_convention.SchedulerMixin``, which the flow-matching scheduler shares), the state fields every
consistency scheduler has (:meth:`~FlaxConsistencyScheduler._initial_fields`), ``set_timesteps``'
plan-to-state conversion (:func:`tcd_core.plan_timesteps`), ``set_begin_index``, the
step (:meth:`~FlaxConsistencyScheduler._step`: its index and key bookkeeping, then the one keyed
step of ``_step.keyed_step``), ``add_noise`` and ``get_velocity``. ``FlaxTCDScheduler`` and
``FlaxLCMScheduler`` are named configurations: their algorithm, the diffusers class their config
is saved as (``_class_name``), their state and output types, and the public signatures of
``create_state``, ``set_timesteps`` and ``step``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

import tcd_core
from tcd_core import NoiseSchedule, TCDConfig, add_noise, get_velocity, noise_schedule
from tcd_core._array import is_array, is_host
from tcd_core._step_common import check_array, check_index
from tcd_core.paths import as_path

from ._convention import ConsistencyState, SchedulerMixin, check_dtype, state_key, step_index
from ._step import eta_arrays, keyed_step, step_config
from .noise import as_typed_key

__all__ = ["FlaxConsistencyScheduler", "host_schedule", "jax_schedule"]


_S = TypeVar("_S", bound=ConsistencyState)


@functools.lru_cache(maxsize=32)
def host_schedule(config: TCDConfig) -> NoiseSchedule:
    """The float32 noise schedule of ``config`` as host NumPy arrays, built once per config
    (NumPy has float64, so the cumulative product is the reference's, bit for bit)."""
    return noise_schedule(config)


def jax_schedule(config: TCDConfig) -> NoiseSchedule:
    """The float32 noise schedule tables of ``config`` as JAX arrays (built once per config)."""
    return NoiseSchedule(*(jnp.asarray(a, dtype=jnp.float32) for a in host_schedule(config)))


def _index(timesteps: Any, size: int) -> Any:
    """``timesteps`` for the core's forward noising: host values checked against the table of
    length ``size`` (JAX would clamp an index out of range), host sequences as int32 arrays."""
    if is_host(timesteps):
        check_index("timesteps", timesteps, size)
    if is_host(timesteps) and not isinstance(timesteps, (int, np.integer)):
        return jnp.asarray(np.asarray(timesteps), dtype=jnp.int32)
    return timesteps


class FlaxConsistencyScheduler(SchedulerMixin[TCDConfig, _S]):
    """The shared machinery of the Flax-style schedulers (see the module docstring); ``_S`` is
    the state type."""

    #: The algorithm (:data:`tcd_core.TCD` / :data:`tcd_core.LCM`): its plan, step and rules.
    _algorithm: ClassVar[tcd_core.Algorithm]
    #: The ``step`` output: ``(prev_sample, state, <the step's estimate>, pred_original_sample)``.
    _output_type: ClassVar[Callable[..., Any]]

    def __init__(
        self,
        config: TCDConfig | Mapping[str, Any] | None = None,
        *,
        dtype: Any = jnp.float32,
        **kwargs: Any,
    ) -> None:
        if config is None:
            config = TCDConfig(**kwargs)
        elif isinstance(config, TCDConfig):
            config = config.replace(**kwargs) if kwargs else config
        else:
            config = TCDConfig.from_dict(config, **kwargs)
        self._config = config
        self.dtype = check_dtype(dtype)

    # ------------------------------------------------------------------ configuration
    @property
    def config(self) -> TCDConfig:
        """The immutable, hashable configuration (field for field diffusers' scheduler of the
        same name: ``TCDScheduler`` / ``LCMScheduler``)."""
        return self._config

    def _saved_fields(self) -> dict[str, Any]:
        """The :class:`TCDConfig`'s fields."""
        return self._config.to_dict()

    # ------------------------------------------------------------------ state
    def _initial_fields(self, key: Any) -> dict[str, Any]:
        """The fields of a fresh state: the noise schedule, every training timestep
        (descending), no ``num_inference_steps``, step index -1 and the PRNG ``key``."""
        n = self._config.num_train_timesteps
        timesteps = np.arange(n - 1, -1, -1, dtype=np.int64)
        return dict(
            common=jax_schedule(self._config),
            init_noise_sigma=jnp.asarray(1.0, dtype=self.dtype),
            timesteps=jnp.asarray(timesteps, dtype=jnp.int32),
            next_timesteps=jnp.asarray(
                tcd_core.next_timesteps(timesteps, self._algorithm), dtype=jnp.int32
            ),
            num_inference_steps=None,
            step_index=jnp.asarray(-1, dtype=jnp.int32),
            key=state_key(key),
        )

    def set_timesteps(
        self,
        state: _S,
        num_inference_steps: int | None = None,
        shape: tuple[int, ...] = (),
        original_inference_steps: int | None = None,
        timesteps: list[int] | None = None,
        strength: float = 1.0,
        *,
        key: Any = None,
        eta: Any = None,
    ) -> _S:
        """The state for a new sampling run (host-side: the plan is
        :func:`tcd_core.plan_timesteps` for the scheduler's algorithm).

        Exactly the reference's ``set_timesteps`` plan, errors and warnings. ``shape`` is accepted
        for the Flax convention and unused (no per-sample buffers). The step index is reset (-1:
        the first step finds its timestep, like the reference). The state's key (and TCD's η)
        are kept, or replaced by ``key`` / ``eta`` when given (``eta`` is TCD's: ValueError for
        LCM). Works on a traced state (the pipelines call it inside ``jit`` / ``pmap``): the plan
        depends only on the config and the arguments.

        Example:
            >>> from tcd_jax import FlaxLCMScheduler, FlaxTCDScheduler
            >>> for scheduler in (FlaxTCDScheduler(), FlaxLCMScheduler()):
            ...     state = scheduler.set_timesteps(scheduler.create_state(), 4)
            ...     print(state.timesteps.tolist(), state.next_timesteps.tolist())
            [999, 759, 499, 259] [759, 499, 259, 0]
            [999, 759, 499, 259] [759, 499, 259, 259]
        """
        del shape
        algorithm = self._algorithm
        if eta is not None and not algorithm.has_eta:
            raise ValueError(f"`eta` must be None: {algorithm!r} has no η")
        plan = tcd_core.plan_timesteps(
            algorithm,
            self._config,
            num_inference_steps,
            original_inference_steps=original_inference_steps,
            timesteps=timesteps,
            strength=strength,
        )
        given = {name: value for name, value in (("key", key), ("eta", eta)) if value is not None}
        return state.replace(
            timesteps=jnp.asarray(plan.timesteps, dtype=jnp.int32),
            next_timesteps=jnp.asarray(plan.next_timesteps, dtype=jnp.int32),
            num_inference_steps=jnp.asarray(plan.num_inference_steps, dtype=jnp.int32),
            step_index=jnp.asarray(-1, dtype=jnp.int32),
            **given,
        )

    def set_begin_index(self, state: _S, begin_index: int = 0) -> _S:
        """Start at ``timesteps[begin_index]`` (what img2img pipelines do after slicing).

        A host integer is checked against the plan's length (``TypeError`` / ``ValueError``); a
        traced one is used as given."""
        if not is_array(begin_index):
            n = state.timesteps.shape[0]
            if isinstance(begin_index, bool) or not isinstance(begin_index, (int, np.integer)):
                raise TypeError(
                    f"`begin_index` must be an integer in [0, {n}), got {begin_index!r}"
                )
            if not 0 <= begin_index < n:
                raise ValueError(f"`begin_index` must be in [0, {n}), got {begin_index}")
        return state.replace(step_index=jnp.asarray(begin_index, dtype=jnp.int32))

    # ------------------------------------------------------------------ the step's bookkeeping
    @staticmethod
    def _ready_steps(state: ConsistencyState, model_output: Any, sample: Any) -> jax.Array:
        """``state.num_inference_steps``; the reference's ValueError before ``set_timesteps``;
        TypeError for a ``model_output`` or ``sample`` that is not an array."""
        check_array("model_output", model_output)
        check_array("sample", sample)
        if state.num_inference_steps is None:
            raise ValueError(
                "Number of inference steps is 'None', you need to run 'set_timesteps' after "
                "creating the scheduler"
            )
        return state.num_inference_steps

    @staticmethod
    def _position(
        state: ConsistencyState, timestep: Any, key: jax.Array | None
    ) -> tuple[jax.Array, jax.Array, Any, jax.Array]:
        """(key, step index, timestep, next timestep) of a step: the state's key unless one
        is given; the index from the state (found in ``timesteps`` on a fresh state); a host
        ``timestep`` as given (the reference's double-precision path), else as an array."""
        key = state.key if key is None else as_typed_key(key)
        # host values in the table's range (JAX would clamp them), arrays of an integer dtype
        check_index("timestep", timestep, state.common.alphas_cumprod.shape[0])
        index, t = step_index(state.timesteps, state.step_index, timestep)
        return key, index, timestep if is_host(timestep) else t, state.next_timesteps[index]

    def _step(
        self,
        state: _S,
        model_output: jax.Array,
        timestep: Any,
        sample: jax.Array,
        key: jax.Array | None,
        eta: Any,
        return_dict: bool,
    ) -> Any:
        """One step of the scheduler's algorithm at ``timestep`` (``eta``: TCD's override of the
        state's η, None for the state's; always None for LCM)."""
        algorithm = self._algorithm
        num_steps = self._ready_steps(state, model_output, sample)
        one_minus = None
        if algorithm.has_eta:
            if eta is None:
                eta, one_minus = state.eta, state.one_minus_eta  # type: ignore[attr-defined]
            else:
                eta, one_minus = eta_arrays(eta)
        key, index, t, next_t = self._position(state, timestep, key)
        final = index == num_steps - 1
        draw = algorithm.draws(None if eta is None else jnp.asarray(eta), final)
        out = keyed_step(
            algorithm,
            model_output,
            t,
            sample,
            next_t,
            as_path(state.common.alphas_cumprod),
            one_minus,
            # TCD's last step is p = 0, where the transition is exactly the identity: only LCM
            # needs to know the final step
            None if algorithm.has_eta else final,
            draw,
            key,
            index,
            # a schedule-only change of config compiles nothing new
            step_config(self._config, algorithm),
        )
        return self._output(
            state, index, out.next_sample, out.estimate, out.pred_original_sample, return_dict
        )

    def _output(
        self,
        state: _S,
        index: jax.Array,
        prev_sample: jax.Array,
        estimate: jax.Array,
        pred_original_sample: jax.Array,
        return_dict: bool,
    ) -> Any:
        """The step's result with the state's step index advanced past ``index``."""
        state = state.replace(step_index=index + 1)
        if not return_dict:
            return prev_sample, state
        return self._output_type(prev_sample, state, estimate, pred_original_sample)

    # ------------------------------------------------------------------ forward process
    def add_noise(
        self,
        state: _S,
        original_samples: jax.Array,
        noise: jax.Array,
        timesteps: Any,
    ) -> jax.Array:
        """√ᾱₜ·x₀ + √(1−ᾱₜ)·ε per batch element (:func:`tcd_core.add_noise`)."""
        table = state.common.alphas_cumprod
        return add_noise(table, original_samples, noise, _index(timesteps, table.shape[0]))

    def get_velocity(
        self, state: _S, sample: jax.Array, noise: jax.Array, timesteps: Any
    ) -> jax.Array:
        """v = √ᾱₜ·ε − √(1−ᾱₜ)·x₀ (:func:`tcd_core.get_velocity`)."""
        table = state.common.alphas_cumprod
        return get_velocity(table, sample, noise, _index(timesteps, table.shape[0]))
