"""``FlaxTCDScheduler``: TCD in the shape of diffusers' former Flax schedulers.

diffusers' Flax schedulers (removed in diffusers 0.40; there never was a Flax TCD one) were a
config object plus an immutable state pytree: ``create_state()``, ``set_timesteps(state, …) ->
state``, ``step(state, …) -> Output(prev_sample, state)``. This one follows that convention, with
the step index carried *in the state as an array*, so ``step`` runs inside ``jax.jit``,
``lax.fori_loop`` and ``lax.scan`` with a traced timestep. The maths is :func:`tcd_core.tcd_step`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import tcd_core
from tcd_core import (
    NoiseSchedule,
    TCDConfig,
    add_noise,
    get_velocity,
    noise_schedule,
    tcd_timesteps,
)

from ._step import eta_arrays, is_host, jax_tcd_step
from .noise import step_noise

__all__ = ["FlaxTCDScheduler", "FlaxTCDSchedulerOutput", "FlaxTCDSchedulerState"]

SCHEDULER_CONFIG_NAME = "scheduler_config.json"


@functools.lru_cache(maxsize=32)
def host_schedule(config: TCDConfig) -> NoiseSchedule:
    """The float32 noise schedule of ``config`` as host NumPy arrays, built once per config
    (NumPy has float64, so the cumulative product is the reference's, bit for bit)."""
    return noise_schedule(config)


def jax_schedule(config: TCDConfig) -> NoiseSchedule:
    """The float32 noise schedule tables of ``config`` as JAX arrays (built once per config)."""
    return NoiseSchedule(*(jnp.asarray(a, dtype=jnp.float32) for a in host_schedule(config)))


def _dataclass_pytree(cls: type) -> type:
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    return jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])


@_dataclass_pytree
class FlaxTCDSchedulerState:
    """The scheduler's state: a frozen dataclass registered as a JAX pytree.

    Attributes:
        common: the float32 noise schedule (``betas``, ``alphas``, ``alphas_cumprod``,
            ``final_alpha_cumprod``), a :class:`tcd_core.NoiseSchedule` of JAX arrays.
        init_noise_sigma: 1.0 (TCD's initial latents are unit Gaussians).
        timesteps: int32 (n,), the timesteps to visit (the reference's ``scheduler.timesteps``).
        prev_timesteps: int32 (n,), each step's next timestep p (0 after the last).
        num_inference_steps: int32 0-d, the reference's ``num_inference_steps`` (untrimmed for
            custom timesteps with strength); None until ``set_timesteps`` has run.
        step_index: int32 0-d; -1 until the first step (which then looks its timestep up in
            ``timesteps``, as the reference does), or the begin index set by ``set_begin_index``.

    Shapes and dtypes do not change after ``set_timesteps``, so the state can be a loop carry.
    """

    common: NoiseSchedule
    init_noise_sigma: jax.Array
    timesteps: jax.Array
    prev_timesteps: jax.Array
    num_inference_steps: jax.Array | None
    step_index: jax.Array

    @property
    def alphas_cumprod(self) -> jax.Array:
        return self.common.alphas_cumprod

    def replace(self, **changes: Any) -> FlaxTCDSchedulerState:
        """A copy with some fields changed (``flax.struct`` style)."""
        return dataclasses.replace(self, **changes)


@_dataclass_pytree
class FlaxTCDSchedulerOutput:
    """What :meth:`FlaxTCDScheduler.step` returns (a pytree).

    Attributes:
        prev_sample: x_p, the next model input.
        state: the scheduler state with the step index advanced.
        pred_noised_sample: x_s, the deterministic jump to the intermediate timestep.
        pred_original_sample: x̂₀.
    """

    prev_sample: jax.Array
    state: FlaxTCDSchedulerState
    pred_noised_sample: jax.Array
    pred_original_sample: jax.Array


class FlaxTCDScheduler:
    r"""Trajectory Consistency Distillation sampling (Strategic Stochastic Sampling) for JAX.

    One step from t to the next timestep p, through s = ⌊(1−η)·p⌋:
    x̂₀, ε̂ from the model output; x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s)·ε̂;
    x_p = √(ᾱ_p/ᾱ_s)·x_s + √(1−ᾱ_p/ᾱ_s)·z, z ~ N(0, I) drawn from ``fold_in(key, step_index)``
    where the reference draws (η > 0 and not the last step). Numerically diffusers'
    ``TCDScheduler`` given the same noise.

    The scheduler holds only its configuration (``scheduler.config``, a :class:`tcd_core.TCDConfig`,
    hashable); everything that changes lives in the :class:`FlaxTCDSchedulerState`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from tcd_jax import FlaxTCDScheduler
        >>> scheduler = FlaxTCDScheduler(beta_schedule="scaled_linear")
        >>> state = scheduler.set_timesteps(scheduler.create_state(), 4)
        >>> x = jax.random.normal(jax.random.key(0), (1, 4, 8, 8))
        >>> def body(i, carry):
        ...     x, state = carry
        ...     t = state.timesteps[i]
        ...     eps = 0.1 * x                               # the model goes here
        ...     out = scheduler.step(state, eps, t, x, key=jax.random.key(1), eta=0.3)
        ...     return out.prev_sample, out.state
        >>> x, state = jax.lax.fori_loop(0, 4, body, (x, state))
        >>> x.shape, int(state.step_index)
        ((1, 4, 8, 8), 4)
    """

    def __init__(self, config: TCDConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if config is None:
            config = TCDConfig(**kwargs)
        elif isinstance(config, TCDConfig):
            config = config.replace(**kwargs) if kwargs else config
        else:
            config = TCDConfig.from_dict(config, **kwargs)
        self._config = config

    # ------------------------------------------------------------------ configuration
    @property
    def config(self) -> TCDConfig:
        """The immutable, hashable configuration (field for field diffusers' ``TCDScheduler``)."""
        return self._config

    @property
    def has_state(self) -> bool:
        return True

    def __len__(self) -> int:
        return self._config.num_train_timesteps

    def __repr__(self) -> str:
        return f"FlaxTCDScheduler({self._config!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlaxTCDScheduler) and other._config == self._config

    def __hash__(self) -> int:
        return hash(self._config)

    @classmethod
    def from_config(cls, config: TCDConfig | Mapping[str, Any], **kwargs: Any) -> FlaxTCDScheduler:
        """A scheduler from a :class:`TCDConfig` or a ``scheduler_config.json``-style mapping
        (e.g. another diffusers scheduler's ``.config``; unknown keys are ignored)."""
        return cls(config, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike | Mapping[str, Any],
        subfolder: str | None = None,
        **kwargs: Any,
    ) -> tuple[FlaxTCDScheduler, FlaxTCDSchedulerState]:
        """``(scheduler, state)`` from a local folder holding ``scheduler_config.json`` (e.g. a
        pipeline folder with ``subfolder="scheduler"``) or from a config dict.

        Only local folders are read (no network access): download a Hub repository first, e.g.
        with ``huggingface_hub.snapshot_download``. ``kwargs`` override config fields.
        """
        if isinstance(pretrained_model_name_or_path, Mapping):
            config = dict(pretrained_model_name_or_path)
        else:
            folder = os.fspath(pretrained_model_name_or_path)
            if subfolder:
                folder = os.path.join(folder, subfolder)
            path = (
                folder if folder.endswith(".json") else os.path.join(folder, SCHEDULER_CONFIG_NAME)
            )
            if not os.path.isfile(path):
                raise ValueError(
                    f"no {SCHEDULER_CONFIG_NAME} at {path!r}: pass a local folder (download Hub "
                    "repositories first, e.g. huggingface_hub.snapshot_download) or a config dict"
                )
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        scheduler = cls.from_config(config, **kwargs)
        return scheduler, scheduler.create_state()

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        """Write ``scheduler_config.json`` (diffusers' format, ``_class_name: "TCDScheduler"``, so
        diffusers' ``TCDScheduler.from_pretrained`` reads it) and return its path."""
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(os.fspath(save_directory), SCHEDULER_CONFIG_NAME)
        data = {"_class_name": "TCDScheduler", "_tcd_core_version": tcd_core.__version__}
        data.update(self._config.to_dict())
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        return path

    # ------------------------------------------------------------------ state
    def create_state(self) -> FlaxTCDSchedulerState:
        """The initial state: the noise schedule, every training timestep (descending) as
        ``timesteps``, no ``num_inference_steps`` (``step`` refuses to run before
        :meth:`set_timesteps`)."""
        n = self._config.num_train_timesteps
        timesteps = np.arange(n - 1, -1, -1, dtype=np.int64)
        return FlaxTCDSchedulerState(
            common=jax_schedule(self._config),
            init_noise_sigma=jnp.asarray(1.0, dtype=jnp.float32),
            timesteps=jnp.asarray(timesteps, dtype=jnp.int32),
            prev_timesteps=jnp.asarray(tcd_core.previous_timesteps(timesteps), dtype=jnp.int32),
            num_inference_steps=None,
            step_index=jnp.asarray(-1, dtype=jnp.int32),
        )

    def set_timesteps(
        self,
        state: FlaxTCDSchedulerState,
        num_inference_steps: int | None = None,
        shape: tuple[int, ...] = (),
        original_inference_steps: int | None = None,
        timesteps: list[int] | None = None,
        strength: float = 1.0,
    ) -> FlaxTCDSchedulerState:
        """The state for a new sampling run (host-side: the plan is :func:`tcd_core.tcd_timesteps`).

        Exactly the reference's ``set_timesteps`` plan, errors and warnings. ``shape`` is accepted
        for the Flax convention and unused (TCD keeps no per-sample buffers). The step index is
        reset (-1: the first step finds its timestep, like the reference).
        """
        del shape
        plan = tcd_timesteps(
            self._config,
            num_inference_steps,
            original_inference_steps=original_inference_steps,
            timesteps=timesteps,
            strength=strength,
        )
        return state.replace(
            timesteps=jnp.asarray(plan.timesteps, dtype=jnp.int32),
            prev_timesteps=jnp.asarray(plan.prev_timesteps, dtype=jnp.int32),
            num_inference_steps=jnp.asarray(plan.num_inference_steps, dtype=jnp.int32),
            step_index=jnp.asarray(-1, dtype=jnp.int32),
        )

    def set_begin_index(
        self, state: FlaxTCDSchedulerState, begin_index: int = 0
    ) -> FlaxTCDSchedulerState:
        """Start at ``timesteps[begin_index]`` (what img2img pipelines do after slicing)."""
        return state.replace(step_index=jnp.asarray(begin_index, dtype=jnp.int32))

    def scale_model_input(
        self, state: FlaxTCDSchedulerState, sample: jax.Array, timestep: Any = None
    ) -> jax.Array:
        """The sample unchanged (TCD needs no input scaling); kept for interchangeability."""
        return sample

    # ------------------------------------------------------------------ the step
    def step(
        self,
        state: FlaxTCDSchedulerState,
        model_output: jax.Array,
        timestep: Any,
        sample: jax.Array,
        key: jax.Array | None = None,
        eta: Any = 0.3,
        return_dict: bool = True,
    ) -> FlaxTCDSchedulerOutput | tuple[jax.Array, FlaxTCDSchedulerState]:
        r"""One TCD step from ``timestep`` t to the plan's next timestep p.

        ᾱ_t is looked up with ``timestep`` (a Python int or an int array, traced or not), p with
        the state's step index (as in the reference). A fresh state's first step finds its index
        where ``timesteps == timestep`` (index 0 if the timestep is not in the plan, where the
        reference raises). η: a Python float (checked against [0, 1],
        ValueError, and rounded exactly as the reference does) or a JAX array (0-d or one per batch
        element; used as given: ``1 − η`` is then evaluated in float32). The noise of step i is
        ``normal(fold_in(key, i))`` in the sample's dtype, entering where the reference draws
        (η > 0 and i ≠ num_inference_steps − 1). ``key`` may be omitted only when η is the
        number 0.

        Returns ``FlaxTCDSchedulerOutput(prev_sample, state, …)`` or, with ``return_dict=False``,
        ``(prev_sample, state)``.
        """
        if state.num_inference_steps is None:
            raise ValueError(
                "Number of inference steps is 'None', you need to run 'set_timesteps' after "
                "creating the scheduler"
            )
        eta_f32, one_minus = eta_arrays(eta)
        if key is None and not (is_host(eta) and not np.any(np.asarray(eta))):
            raise ValueError("`key` is required unless `eta` is 0: TCD re-noises with z ~ N(0, I)")
        t = jnp.asarray(timestep)
        if t.ndim > 1:
            raise ValueError(f"`timestep` must be a scalar or a 1-D array, got shape {t.shape}")
        found = jnp.argmax(state.timesteps == jnp.ravel(t)[0]).astype(jnp.int32)
        index = jnp.where(state.step_index < 0, found, state.step_index)
        prev = state.prev_timesteps[index]
        draw = (eta_f32 > 0) & (index != state.num_inference_steps - 1)
        noise = None if key is None else step_noise(key, index, sample.shape, sample.dtype)
        out = jax_tcd_step(
            model_output,
            timestep if is_host(timestep) else t,
            sample,
            prev,
            state.common.alphas_cumprod,
            one_minus,
            draw,
            noise,
            self._config,
        )
        state = state.replace(step_index=index + 1)
        if not return_dict:
            return out.prev_sample, state
        return FlaxTCDSchedulerOutput(
            out.prev_sample, state, out.pred_noised_sample, out.pred_original_sample
        )

    # ------------------------------------------------------------------ forward process
    def add_noise(
        self,
        state: FlaxTCDSchedulerState,
        original_samples: jax.Array,
        noise: jax.Array,
        timesteps: Any,
    ) -> jax.Array:
        """√ᾱₜ·x₀ + √(1−ᾱₜ)·ε per batch element (:func:`tcd_core.add_noise`)."""
        return add_noise(state.common.alphas_cumprod, original_samples, noise, _index(timesteps))

    def get_velocity(
        self, state: FlaxTCDSchedulerState, sample: jax.Array, noise: jax.Array, timesteps: Any
    ) -> jax.Array:
        """v = √ᾱₜ·ε − √(1−ᾱₜ)·x₀ (:func:`tcd_core.get_velocity`)."""
        return get_velocity(state.common.alphas_cumprod, sample, noise, _index(timesteps))


def _index(timesteps: Any) -> Any:
    if is_host(timesteps) and not isinstance(timesteps, (int, np.integer)):
        return jnp.asarray(np.asarray(timesteps), dtype=jnp.int32)
    return timesteps
