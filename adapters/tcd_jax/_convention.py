"""diffusers' former Flax scheduler convention, shared by the tcd_jax schedulers (private).

The Flax pipelines of diffusers ≤ 0.39 (and the JAX codebases that copied their loops) drive a
scheduler with exactly these calls, inside ``lax.fori_loop`` and under ``pmap``::

    state = scheduler.set_timesteps(params["scheduler"], num_inference_steps=n, shape=shape)
    latents = latents * params["scheduler"].init_noise_sigma
    x_in = scheduler.scale_model_input(state, x_in, t)
    latents, state = scheduler.step(state, model_output, t, latents).to_tuple()

No PRNG key and no η are passed, so a stochastic scheduler must carry them in its state. This
module holds what any scheduler meeting that convention needs, independent of its maths:

* :func:`pytree_dataclass` / :class:`StateMixin`: frozen dataclasses registered as JAX pytrees,
  with ``replace`` (``flax.struct`` style, without depending on flax);
* :class:`OutputMixin`: ``to_tuple() -> (prev_sample, state)``, what the pipelines unpack;
* :class:`SchedulerMixin`: what a scheduler object shares around its configuration (``has_state``,
  ``len``, ``repr``, equality and hashing, ``from_config`` / ``from_pretrained`` /
  ``save_pretrained``, ``scale_model_input``), used by the consistency schedulers and the
  flow-matching one alike;
* :func:`state_key` / :func:`default_key`: the key kept in the state (typed; a fixed default so
  runs are reproducible);
* :func:`state_eta`: η kept in the state as float32 arrays, with ``f32(1 − η)`` rounded on the
  host from float64 (the reference's rounding) so that changing η never retraces;
* :func:`step_index`: the step index carried in the state (the first step finds it in
  ``timesteps`` as the reference does, unless ``set_begin_index`` set it);
* :func:`load_config` / :func:`write_config`: ``scheduler_config.json`` in diffusers' format;
* :func:`check_dtype`: the ``dtype=`` the Flax schedulers accepted.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar, cast

import jax
import jax.numpy as jnp

import tcd_core

from ._step import eta_arrays
from .noise import as_typed_key

__all__ = [
    "DEFAULT_SEED",
    "SCHEDULER_CONFIG_NAME",
    "ConsistencyState",
    "OutputMixin",
    "SchedulerMixin",
    "StateMixin",
    "check_dtype",
    "default_key",
    "load_config",
    "pytree_dataclass",
    "state_eta",
    "state_key",
    "step_index",
    "write_config",
]

SCHEDULER_CONFIG_NAME = "scheduler_config.json"
#: The seed of the key a state gets when none is given: a fixed key, so runs are reproducible.
DEFAULT_SEED = 0

_T = TypeVar("_T")
#: A scheduler's config type (the one its constructor takes beside a mapping) and state type.
_C = TypeVar("_C")
_S = TypeVar("_S")

if TYPE_CHECKING:  # PEP 681: type checkers then see the decorated classes as dataclasses
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_kwargs: Any) -> Any:
        return lambda decorator: decorator


@dataclass_transform(frozen_default=True)
def pytree_dataclass(cls: type[_T]) -> type[_T]:
    """A frozen dataclass whose fields are all pytree children (``None`` fields are empty
    subtrees, as in ``flax.struct.dataclass``)."""
    data_cls = dataclasses.dataclass(frozen=True)(cls)
    names = [f.name for f in dataclasses.fields(cast(Any, data_cls))]
    return jax.tree_util.register_dataclass(data_cls, data_fields=names, meta_fields=[])


class StateMixin:
    """What every scheduler state (a :func:`pytree_dataclass` with ``common`` and ``key``
    fields) shares: ``replace(**changes)`` and the ``alphas_cumprod`` shortcut."""

    common: Any

    @property
    def alphas_cumprod(self) -> jax.Array:
        """The float32 ᾱ table (``common.alphas_cumprod``)."""
        return cast(jax.Array, self.common.alphas_cumprod)

    def replace(self: _T, **changes: Any) -> _T:
        """A copy with some fields changed (``flax.struct`` style); ``key=`` accepts raw
        ``uint32`` threefry keys (:func:`state_key`)."""
        if "key" in changes:
            changes["key"] = state_key(changes["key"])
        return cast(_T, dataclasses.replace(cast(Any, self), **changes))


@dataclasses.dataclass(frozen=True)
class ConsistencyState(StateMixin):
    """The fields every scheduler state has (a frozen dataclass; each scheduler's state class
    adds its own fields after these and is registered as a pytree with :func:`pytree_dataclass`).

    Attributes:
        common: the float32 noise schedule (``betas``, ``alphas``, ``alphas_cumprod``,
            ``final_alpha_cumprod``), a :class:`tcd_core.NoiseSchedule` of JAX arrays.
        init_noise_sigma: 1.0 (consistency samplers start from unit Gaussians).
        timesteps: int32 (n,), the timesteps to visit (the reference's ``scheduler.timesteps``).
        next_timesteps: int32 (n,), each step's next timestep (:func:`tcd_core.next_timesteps`:
            0 after TCD's last step, the last timestep itself for LCM); also ``prev_timesteps``,
            its former name.
        num_inference_steps: int32 0-d, the reference's ``num_inference_steps`` (untrimmed for
            custom timesteps with strength); it decides which step is final. None until
            ``set_timesteps`` has run.
        step_index: int32 0-d; -1 until the first step (which then looks its timestep up in
            ``timesteps``, as the reference does), or the begin index set by ``set_begin_index``.
        key: the PRNG key of the re-noising draws (step i draws ``normal(fold_in(key, i))``); a
            typed key, one (shape ``()``) or one per batch element (``(B,)``).

    Shapes and dtypes do not change after ``set_timesteps``, so a state can be a loop carry.
    """

    common: Any
    init_noise_sigma: jax.Array
    timesteps: jax.Array
    next_timesteps: jax.Array
    num_inference_steps: jax.Array | None
    step_index: jax.Array
    key: jax.Array

    @property
    def prev_timesteps(self) -> jax.Array:
        """:attr:`next_timesteps` under its former name (it holds each step's *next* timestep)."""
        return self.next_timesteps


class OutputMixin:
    """``to_tuple()`` as diffusers' Flax scheduler outputs had it: ``(prev_sample, state)``."""

    prev_sample: jax.Array
    state: Any

    def to_tuple(self) -> tuple[jax.Array, Any]:
        """``(prev_sample, state)``: the two values the Flax pipelines unpack."""
        return self.prev_sample, self.state


class SchedulerMixin(Generic[_C, _S]):
    """What every tcd_jax scheduler shares around its configuration, whatever its maths: the
    consistency schedulers (``_C`` :class:`tcd_core.TCDConfig`) and the flow-matching one
    (``_C`` :class:`tcd_core.FlowConfig`); ``_S`` is the state type.

    A scheduler sets ``_config`` (its config: ``num_train_timesteps`` readable as an attribute)
    and ``dtype`` in its constructor, which takes ``(config, *, dtype=..., **fields)``, and
    defines :meth:`create_state` and :meth:`_saved_fields`.
    """

    #: The class written as ``_class_name`` by :meth:`save_pretrained` (the class that reads it).
    _class_name: ClassVar[str]
    _config: Any
    dtype: Any

    if TYPE_CHECKING:  # the constructor every scheduler has (each writes its own)

        def __init__(
            self, config: _C | Mapping[str, Any] | None = None, *, dtype: Any = ..., **kwargs: Any
        ) -> None: ...

    @property
    def has_state(self) -> bool:
        """Always true: diffusers' Flax loaders (and MaxDiffusion's) check it before calling
        ``create_state``."""
        return True

    def __len__(self) -> int:
        return self._config.num_train_timesteps

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._config!r}, dtype={self.dtype.name})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SchedulerMixin)
            and other._class_name == self._class_name
            and other._config == self._config
            and other.dtype == self.dtype
        )

    def __hash__(self) -> int:
        return hash((self._class_name, self._config, self.dtype))

    @classmethod
    def from_config(
        cls, config: _C | Mapping[str, Any], *, dtype: Any = jnp.float32, **kwargs: Any
    ) -> Self:
        """A scheduler from its config type (:class:`tcd_core.TCDConfig`, or
        :class:`tcd_core.FlowConfig` for the flow-matching scheduler) or a
        ``scheduler_config.json``-style mapping (e.g. another diffusers scheduler's ``.config``,
        ``pipe.scheduler.config``; unknown keys are ignored); ``kwargs`` override fields."""
        return cls(config, dtype=dtype, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike | Mapping[str, Any],
        subfolder: str | None = None,
        *,
        dtype: Any = jnp.float32,
        **kwargs: Any,
    ) -> tuple[Self, _S]:
        """``(scheduler, state)`` from a local folder holding ``scheduler_config.json`` (e.g. a
        pipeline or model folder with ``subfolder="scheduler"``, as diffusers' Flax pipelines and
        MaxDiffusion's loaders call it) or from a config dict.

        Only local folders are read (no network access): download a Hub repository first, e.g.
        with ``huggingface_hub.snapshot_download``. ``kwargs`` override config fields (e.g.
        ``eta=0.3`` for the flow-matching scheduler). The state is :meth:`create_state`'s (its
        defaults: the fixed default key; TCD's η = 0.3, the flow-matching scheduler's the
        config's ``eta``).
        """
        config = load_config(pretrained_model_name_or_path, subfolder)
        scheduler = cls.from_config(config, dtype=dtype, **kwargs)
        return scheduler, scheduler.create_state()

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        """Write ``scheduler_config.json`` in diffusers' format and return its path: the
        config's fields, with ``_class_name`` the class that reads them (diffusers'
        ``TCDScheduler`` / ``LCMScheduler`` for the scheduler of the same name,
        ``tcd_diffusers.FlowMatchTCDScheduler`` for the flow-matching one, whose fields are
        diffusers' flow fields with ``eta`` and ``stochastic_sampling``)."""
        data = {"_class_name": self._class_name, "_tcd_core_version": tcd_core.__version__}
        data.update(self._saved_fields())
        return write_config(save_directory, data)

    def _saved_fields(self) -> dict[str, Any]:
        """The config fields :meth:`save_pretrained` writes."""
        raise NotImplementedError

    def create_state(self, key: Any = None) -> _S:
        raise NotImplementedError

    def scale_model_input(self, state: _S, sample: jax.Array, timestep: Any = None) -> jax.Array:
        """The sample unchanged (consistency sampling needs no input scaling; flow models take
        x_σ as it is); kept for interchangeability."""
        return sample


def default_key() -> jax.Array:
    """The key of a state created without one: ``jax.random.key(DEFAULT_SEED)``."""
    return jax.random.key(DEFAULT_SEED)


def state_key(key: Any) -> jax.Array:
    """A key to keep in a state: ``None`` gives :func:`default_key`; a typed key (any PRNG
    implementation) is kept; a raw ``uint32`` threefry key (``jax.random.PRNGKey``) is wrapped.
    One key (shape ``()``) or one per batch element (``(B,)``)."""
    if key is None:
        return default_key()
    key = as_typed_key(key)
    if key.ndim > 1:
        raise ValueError(
            f"`key` must be a single PRNG key or one per batch element, got shape {key.shape}"
        )
    return key


def state_eta(eta: Any) -> tuple[jax.Array, jax.Array]:
    """(η, f32(1 − η)) as float32 JAX arrays (0-d or one per batch element) to keep in a state.

    :func:`~tcd_jax._step.eta_arrays`, as JAX arrays.
    """
    eta_f32, one_minus = eta_arrays(eta)
    return jnp.asarray(eta_f32, dtype=jnp.float32), jnp.asarray(one_minus, dtype=jnp.float32)


def step_index(timesteps: jax.Array, index: jax.Array, timestep: Any) -> tuple[jax.Array, Any]:
    """(the index of this step, the timestep as an array).

    ``index`` is the state's step index: ≥ 0 once a step ran or ``set_begin_index`` set it; -1 on
    a fresh state, where the index is looked up as the first position with ``timesteps ==
    timestep`` (0 if absent; the reference raises there, but a traced lookup cannot). ``timestep``
    may be a scalar or one per batch element (the first is looked up).
    """
    t = jnp.asarray(timestep)
    if t.ndim > 1:
        raise ValueError(f"`timestep` must be a scalar or a 1-D array, got shape {t.shape}")
    found = jnp.argmax(timesteps == jnp.ravel(t)[0]).astype(jnp.int32)
    return jnp.where(index < 0, found, index), t


def check_dtype(dtype: Any) -> Any:
    """The ``dtype=`` argument of the Flax schedulers: a floating dtype (default float32)."""
    try:
        resolved = jnp.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"`dtype` must be a floating-point dtype, got {dtype!r}") from exc
    if not jnp.issubdtype(resolved, jnp.floating):
        raise ValueError(f"`dtype` must be a floating-point dtype, got {dtype!r}")
    return resolved


def load_config(
    pretrained_model_name_or_path: str | os.PathLike | Mapping[str, Any],
    subfolder: str | None = None,
) -> dict[str, Any]:
    """A ``scheduler_config.json`` as a dict, from a local folder (``subfolder`` inside it), a
    path to the file itself, or a mapping (copied). Only local files are read."""
    if isinstance(pretrained_model_name_or_path, Mapping):
        return dict(pretrained_model_name_or_path)
    folder = os.fspath(pretrained_model_name_or_path)
    if subfolder:
        folder = os.path.join(folder, subfolder)
    path = folder if folder.endswith(".json") else os.path.join(folder, SCHEDULER_CONFIG_NAME)
    if not os.path.isfile(path):
        raise ValueError(
            f"no {SCHEDULER_CONFIG_NAME} at {path!r}: pass a local folder (download Hub "
            "repositories first, e.g. huggingface_hub.snapshot_download) or a config dict"
        )
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path!r} must hold a JSON object, got {type(data).__name__}")
    return data


def write_config(save_directory: str | os.PathLike, data: Mapping[str, Any]) -> str:
    """Write ``data`` as ``save_directory/scheduler_config.json`` (sorted keys) and return the
    path."""
    os.makedirs(save_directory, exist_ok=True)
    path = os.path.join(os.fspath(save_directory), SCHEDULER_CONFIG_NAME)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(dict(data), f, indent=2, sort_keys=True)
        f.write("\n")
    return path
