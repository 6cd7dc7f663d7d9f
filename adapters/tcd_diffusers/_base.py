"""diffusers' stateful scheduler convention on top of :mod:`tcd_core`, written once (private).

:class:`ConsistencyScheduler` is the whole scheduler for any :class:`tcd_core.Algorithm`: the
float32 tables (:func:`tcd_core.noise_schedule`), the core config cached per diffusers config
object, the plan cache and ``set_timesteps`` (:func:`tcd_core.plan_timesteps`), the index
bookkeeping (``step_index``, ``begin_index``, ``index_for_timestep``, views of ``timesteps``
recognised without a device read), ``previous_timestep``, ``add_noise``, ``get_velocity``, and
the step (:meth:`ConsistencyScheduler._step`): the core's coefficients, cached per step, applied
by the core's one update, in place on the fast path (:class:`~tcd_diffusers._inplace.InPlace`).
``TCDScheduler`` and ``LCMScheduler`` are named configurations: their algorithm, output class,
``@register_to_config`` constructor (diffusers reads the config fields from it) and ``step``
signature.

Host/device split: the plan (timesteps, next timesteps, the step counter) lives on the host as
Python ints; steps index host lists with the host counter and never read a device value, so on a
GPU they make no host-device synchronisation once ``set_timesteps(device=...)`` ran.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar, NoReturn, TypeVar

import array_api_compat
import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, FrozenDict, register_to_config
from diffusers.schedulers.scheduling_utils import SCHEDULER_CONFIG_NAME, SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

import tcd_core
from tcd_core._step_common import check_index

from ._inplace import IN_PLACE

XP = array_api_compat.array_namespace(torch.empty(0))
FLOATS = frozenset((torch.float32, torch.float16, torch.bfloat16, torch.float64))
_PLAN_CACHE_SIZE = 16
_COEFFICIENT_CACHE_SIZE = 256

_O = TypeVar("_O", bound=BaseOutput)
_ODICT_SET = OrderedDict.__setitem__


def fast_output(cls: type[_O], first: str, second: str) -> Callable[[Any, Any], _O]:
    """A constructor for the two-field output dataclass ``cls`` that skips the generic
    dataclass/``BaseOutput.__post_init__`` machinery (a few microseconds per step): the same keys,
    in the same order, and the same attributes (tested against the dataclass constructor)."""
    new = cls.__new__

    def make(a: Any, b: Any) -> _O:
        out = new(cls)
        _ODICT_SET(out, first, a)
        _ODICT_SET(out, second, b)
        attributes = out.__dict__
        attributes[first] = a
        attributes[second] = b
        return out

    return make


def step_noise(model_output: torch.Tensor, generator: Any, dtype: torch.dtype) -> torch.Tensor:
    """z ~ N(0, I) for one step, drawn as the reference draws it: diffusers' ``randn_tensor`` with
    the model output's shape and device (so a seeded generator advances exactly as there)."""
    device = model_output.device
    if generator is None or (
        generator.__class__ is torch.Generator and generator.device.type == device.type
    ):
        if device.type != "neuron":
            # randn_tensor's own call for a generator on the tensor's device (or none): the same
            # draw, without its device and list bookkeeping (a few microseconds per step)
            return torch.randn(model_output.shape, generator=generator, device=device, dtype=dtype)
    elif generator.__class__ is not torch.Generator:
        _check_generator(generator)
    return randn_tensor(model_output.shape, generator=generator, device=device, dtype=dtype)


def _check_generator(generator: Any) -> None:
    """TypeError unless ``generator`` is a ``torch.Generator`` or a list of them (or None)."""
    items = generator if isinstance(generator, list) else [generator]
    if not items or not all(isinstance(g, torch.Generator) for g in items):
        raise TypeError(
            "`generator` must be a torch.Generator, a list of them (one per batch element) or "
            f"None, got {generator!r}"
        )


def _checked_eta(eta: Any) -> Any:
    """η as a host number; ValueError outside [0, 1] (the reference: a bare assert), TypeError
    for anything but a real number or a one-element tensor."""
    if isinstance(eta, torch.Tensor):
        if eta.numel() != 1:
            raise TypeError(
                f"`eta` must be a real number in [0, 1], got a tensor of shape "
                f"{tuple(eta.shape)} (`step` takes one η for the batch)"
            )
        eta = eta.item()  # the reference compares it in Python too (a read)
    tcd_core.check_eta(eta)
    if isinstance(eta, (list, tuple, np.ndarray)):
        raise TypeError(
            f"`eta` must be a real number in [0, 1], got {eta!r} (`step` takes one η for the batch)"
        )
    return eta


def check_tensors(model_output: Any, sample: Any) -> None:
    """TypeError unless ``model_output`` and ``sample`` are floating-point torch tensors
    (the reference's own failure for anything else is an ``AttributeError`` or a kernel error
    deep inside torch)."""
    for name, value in (("model_output", model_output), ("sample", sample)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {value.dtype}")


class Steps:
    """A core :class:`tcd_core.Plan` as a step reads it: its timesteps and next timesteps also as
    host lists of Python ints (indexed with the host step counter, no device read)."""

    __slots__ = ("next", "plan", "timesteps")

    def __init__(self, plan: tcd_core.Plan) -> None:
        self.plan = plan
        self.timesteps: list[int] = plan.timesteps.tolist()
        self.next: list[int] = plan.next_timesteps.tolist()


class StepIndices:
    """The step counter diffusers' pipelines read and set, shared by every scheduler here:
    ``step_index``, ``begin_index`` and ``set_begin_index``."""

    _step_index: int | None
    _begin_index: int | None

    @property
    def step_index(self) -> int | None:
        """The index counter for the current timestep; it increases by one after each step."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The index of the first timestep, set by pipelines through :meth:`set_begin_index`."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Sets the begin index for the scheduler (pipelines call it before the loop): an
        integer ≥ 0 (``TypeError`` / ``ValueError`` otherwise); the first step checks it against
        the length of ``timesteps``."""
        if isinstance(begin_index, bool) or not isinstance(begin_index, (int, np.integer)):
            raise TypeError(f"`begin_index` must be an integer >= 0, got {begin_index!r}")
        if begin_index < 0:
            raise ValueError(f"`begin_index` must be an integer >= 0, got {begin_index}")
        self._begin_index = int(begin_index)


class ConsistencyScheduler(StepIndices, SchedulerMixin, ConfigMixin):
    """The shared machinery of the adapter's schedulers (see the module docstring)."""

    # SchedulerMixin's value (the file name), restated: diffusers' ConfigMixin declares the
    # attribute as None, so the type checker sees two incompatible base definitions otherwise.
    config_name = SCHEDULER_CONFIG_NAME  # type: ignore[assignment]
    order = 1
    # Set by diffusers' ``register_to_config`` (declared here for the type checker).
    _internal_dict: FrozenDict

    #: The algorithm (:data:`tcd_core.TCD` / :data:`tcd_core.LCM`): its plan, step and rules.
    _algorithm: ClassVar[tcd_core.Algorithm]
    #: ``Output(prev_sample, <the step's estimate>)``: the reference's output dataclass, built
    #: by :func:`fast_output`.
    _output: ClassVar[staticmethod[[Any, Any], Any]]

    num_inference_steps: int | None
    timesteps: torch.Tensor
    custom_timesteps: bool
    alphas_cumprod: torch.Tensor

    # diffusers reads a scheduler's config fields from its constructor's signature; TCDScheduler
    # and LCMScheduler have the same fields (those of diffusers' two classes), so they share it.
    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "scaled_linear",
        trained_betas: np.ndarray | list[float] | None = None,
        original_inference_steps: int = 50,
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        timestep_scaling: float = 10.0,
        rescale_betas_zero_snr: bool = False,
    ) -> None:
        self._setup(num_train_timesteps)

    def _setup(self, num_train_timesteps: int) -> None:
        """The state diffusers' constructor sets up, from the core's tables."""
        tables = tcd_core.noise_schedule(self._core_config(), xp=XP)
        self.betas = tables.betas
        self.alphas = tables.alphas
        self.alphas_cumprod = tables.alphas_cumprod
        self.final_alpha_cumprod = tables.final_alpha_cumprod
        self.init_noise_sigma = 1.0

        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(np.arange(num_train_timesteps)[::-1].copy())
        self.custom_timesteps = False

        self._step_index: int | None = None
        self._begin_index: int | None = None
        self._plan: Steps | None = None
        self._plan_tensor: torch.Tensor | None = None
        self._plans: OrderedDict[tuple[Any, ...], Steps] = OrderedDict()
        self._plans_owner: tcd_core.TCDConfig | None = None
        self._tables_by_device: dict[torch.device, torch.Tensor] = {}
        self._coefficients: dict[Any, Any] = {}
        self._coefficients_table: torch.Tensor | None = None

    # ------------------------------------------------------------------ plan functions
    def _build_plan(
        self,
        core: tcd_core.TCDConfig,
        num_inference_steps: int | None,
        original_inference_steps: int | None,
        timesteps: list[int] | None,
        strength: float,
    ) -> Steps:
        """The scheduler's plan (:func:`tcd_core.plan_timesteps` for its algorithm)."""
        return Steps(
            tcd_core.plan_timesteps(
                self._algorithm,
                core,
                num_inference_steps,
                original_inference_steps=original_inference_steps,
                timesteps=timesteps,
                strength=strength,
            )
        )

    def _on_new_config(self) -> None:
        """Drop the step coefficients (called when diffusers replaced the config: a new config
        may come with a new table or scaling)."""
        self.__dict__["_coefficients"] = {}

    # ------------------------------------------------------------------ config and caches
    def _core_config(self) -> tcd_core.TCDConfig:
        """The core config of the current ``self.config``."""
        return self._core_state()[1]

    def _core_state(self) -> tuple[Any, tcd_core.TCDConfig, bool]:
        """(config source, core config, whether the precomputed step applies), cached while the
        config is unchanged: diffusers replaces the FrozenDict object whenever a value changes
        (``register_to_config``, the pipelines' config fix-ups)."""
        source = self._internal_dict
        cached = self.__dict__.get("_core_cache")
        if cached is not None and cached[0] is source:
            return cached
        core = tcd_core.TCDConfig.from_dict(source)
        cached = (source, core, not (core.clip_sample or core.thresholding))
        self.__dict__["_core_cache"] = cached
        self._on_new_config()
        return cached

    def _table_on(self, device: torch.device) -> torch.Tensor:
        """ᾱ on ``device``, copied once (so a device timestep never indexes a CPU table)."""
        if self.alphas_cumprod.device == device:
            return self.alphas_cumprod
        table = self._tables_by_device.get(device)
        if table is None:
            table = self._tables_by_device[device] = self.alphas_cumprod.to(device)
        return table

    # ------------------------------------------------------------------ index bookkeeping
    def index_for_timestep(
        self, timestep: float | torch.Tensor, schedule_timesteps: torch.Tensor | None = None
    ) -> int:
        """The index of ``timestep`` in the schedule (the second match if it occurs twice).

        The search runs on a host copy of the schedule: no device read for the scheduler's own
        timesteps. Raises ``ValueError`` naming the timestep and the schedule when it is absent.
        """
        if schedule_timesteps is None:
            host = self._host_timesteps()
        elif isinstance(schedule_timesteps, torch.Tensor):
            host = schedule_timesteps.detach().cpu().numpy()
        else:
            host = np.asarray(schedule_timesteps)
        matches = self._matches(timestep, host)
        return int(matches[1] if len(matches) > 1 else matches[0])

    def _matches(self, timestep: Any, host: np.ndarray) -> np.ndarray:
        """Positions of ``timestep`` in the host schedule ``host``; ValueError when absent."""
        value = self._host_timestep(timestep)
        (matches,) = np.nonzero(host == value)
        if len(matches) == 0:
            raise ValueError(
                f"timestep {value} is not in the timestep schedule {host.tolist()}; pass one of "
                "`scheduler.timesteps` (or call `set_begin_index` for a partial schedule)"
            )
        return matches

    @staticmethod
    def _host_timestep(timestep: Any) -> Any:
        if isinstance(timestep, torch.Tensor):
            if timestep.numel() != 1:
                raise ValueError(
                    f"`timestep` must be a single timestep, got shape {tuple(timestep.shape)}"
                )
            return timestep.item()  # a host read; one sync for a device tensor, as the reference
        return timestep

    def _host_timesteps(self) -> np.ndarray:
        """``self.timesteps`` on the host: the plan's copy, unless the tensor was replaced."""
        if self._plan is not None and self.timesteps is self._plan_tensor:
            return self._plan.plan.timesteps
        return self.timesteps.detach().cpu().numpy()

    def _view_position(self, timestep: Any) -> int | None:
        """Position of a 0-d tensor that is a view into ``self.timesteps`` (what iterating or
        slicing ``scheduler.timesteps`` yields), found from its storage offset: no device read.
        The steps inline the same test."""
        if getattr(timestep, "_base", None) is self.timesteps and timestep.ndim == 0:
            return int(timestep.storage_offset() - self.timesteps.storage_offset())
        return None

    def _init_step_index(self, timestep: float | torch.Tensor) -> None:
        self._step_index = self._first_step_index(timestep)

    def _first_step_index(self, timestep: float | torch.Tensor) -> int:
        """The begin index when a pipeline set one (ValueError past the end of ``timesteps``),
        else the timestep's position."""
        if self._begin_index is not None:
            if self._begin_index >= len(self.timesteps):
                raise ValueError(
                    f"`begin_index` ({self._begin_index}) must be below the number of timesteps "
                    f"({len(self.timesteps)}); call `set_begin_index` after `set_timesteps`"
                )
            return self._begin_index
        position = self._view_position(timestep)
        return position if position is not None else self.index_for_timestep(timestep)

    def _current_plan(self) -> Steps:
        """The plan of ``self.timesteps`` (one host copy if the tensor was assigned by hand)."""
        plan = self._plan
        if plan is None or self.timesteps is not self._plan_tensor:
            plan = self._adopt_timesteps()
        return plan

    def _adopt_timesteps(self) -> Steps:
        """A plan for a ``timesteps`` tensor assigned by hand (diffusers' step reads whatever
        ``self.timesteps`` holds): one host copy of it, then the step proceeds as usual."""
        host = self.timesteps.detach().cpu().numpy().astype(np.int64)
        assert self.num_inference_steps is not None  # checked by the callers
        algorithm = self._algorithm
        self._plan = Steps(
            tcd_core.Plan(
                host,
                tcd_core.next_timesteps(host, algorithm),
                self.num_inference_steps,
                self.custom_timesteps,
                algorithm,
            )
        )
        self._plan_tensor = self.timesteps
        return self._plan

    def scale_model_input(
        self, sample: torch.Tensor, timestep: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Returns ``sample`` unchanged (consistency sampling needs no input scaling)."""
        return sample

    # ------------------------------------------------------------------ the plan
    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        original_inference_steps: int | None = None,
        timesteps: list[int] | None = None,
        strength: float = 1.0,
    ) -> None:
        """Sets the timesteps of the sampling loop (the core's plan for this scheduler).

        ``num_inference_steps`` picks that many timesteps from the distillation grid of
        ``original_inference_steps`` (the config's when not given); ``timesteps`` is a custom
        descending list instead; ``strength`` < 1 keeps the last part of the schedule. The plan
        is the reference's, including its quirks; the reference's ValueErrors are raised under
        the same conditions, plus a ValueError for ``strength`` outside (0, 1] and negative or
        non-integer custom timesteps.
        """
        if device is not None:
            try:
                torch.device(device)
            except (RuntimeError, TypeError) as err:
                raise ValueError(f"`device` must name a torch device, got {device!r}") from err
        core = self._core_config()
        if timesteps is None:
            if self._plans_owner is not core:
                self._plans = OrderedDict()
                self._plans_owner = core
            key = (
                type(num_inference_steps),
                num_inference_steps,
                type(original_inference_steps),
                original_inference_steps,
                strength,
            )
            plan = self._plans.get(key)
            if plan is None:
                plan = self._build_plan(
                    core, num_inference_steps, original_inference_steps, None, strength
                )
                self._plans[key] = plan
                if len(self._plans) > _PLAN_CACHE_SIZE:
                    self._plans.popitem(last=False)
        else:  # custom plans are not cached: the core logs the reference's warnings each time
            plan = self._build_plan(
                core, num_inference_steps, original_inference_steps, timesteps, strength
            )
        tensor = torch.from_numpy(plan.plan.timesteps.copy()).to(device=device, dtype=torch.long)
        self._plan = plan
        self.num_inference_steps = plan.plan.num_inference_steps
        self.custom_timesteps = plan.plan.custom_timesteps
        self.timesteps = tensor
        self._plan_tensor = tensor
        self._step_index = None
        self._begin_index = None

    def __len__(self) -> int:
        """The number of training timesteps."""
        return self._core_config().num_train_timesteps

    def previous_timestep(self, timestep: int) -> int | torch.Tensor:
        """The timestep after ``timestep`` in the schedule (the reference's -1 after the last
        entry); ``timestep - 1`` before ``set_timesteps``."""
        if self.custom_timesteps or self.num_inference_steps:
            index = int(self._matches(timestep, self._host_timesteps())[0])  # the first match
            if index == self.timesteps.shape[0] - 1:
                return torch.tensor(-1)
            return self.timesteps[index + 1]
        return timestep - 1

    def _not_ready(self) -> NoReturn:
        """The reference's error for a step before ``set_timesteps``."""
        raise ValueError(
            "Number of inference steps is 'None', you need to run 'set_timesteps' after "
            "creating the scheduler"
        )

    # ------------------------------------------------------------------ the step
    def _step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        eta: Any,
        generator: Any,
        return_dict: bool,
    ) -> Any:
        """One step of the scheduler's algorithm from ``timestep`` (``eta`` None for LCM).

        The fast path (no clipping/thresholding, a host timestep, one floating dtype, no
        autograd) applies cached coefficients with :func:`tcd_core.update` in place; anything
        else runs :func:`tcd_core.step` itself. Noise is drawn where the reference draws it, with
        its ``randn_tensor``, so a generator advances as there.
        """
        algorithm = self._algorithm
        num_steps, plan = self._ready_plan(model_output, sample)
        if algorithm.has_eta and (eta.__class__ is not float or not 0.0 <= eta <= 1.0):
            eta = _checked_eta(eta)
        index = self._step_index
        if index is None:
            index = self._first_step_index(timestep)  # stored once the step succeeded
        final = index == num_steps - 1
        draw = algorithm.draws(eta, final)

        # Views of self.timesteps and CPU tensors become host ints (`source`: the 0-d tensor they
        # were read from); device tensors stay on device.
        t, source = self._resolve_timestep(timestep, plan)
        if index + 1 < len(plan.timesteps):
            next_t: Any = plan.next[index]
        else:  # after the last entry: 0 (TCD), the timestep argument itself (LCM)
            next_t = t if algorithm.next_after_last == "own" else 0
        # LCM's c_skip/c_out take the timestep's operand type: float32 from a tensor
        bound_by = source if algorithm.skip_connection else None

        _, core, fast = self._core_state()
        if fast and t.__class__ is int and self._in_place_ok(model_output, sample):
            key = (t, next_t, eta, final, None if bound_by is None else bound_by.device)
            c = self._coefficients.get(key)
            if c is None or self._coefficients_table is not self.alphas_cumprod:
                c = self._step_coefficients(key, bound_by, core)
            noise = step_noise(model_output, generator, sample.dtype) if draw else None
            out = tcd_core.update(
                algorithm, c, model_output, sample, noise, core, arithmetic=IN_PLACE
            )
        else:
            noise, table = self._general_inputs(model_output, sample, t, draw, generator)
            out = tcd_core.step(
                algorithm,
                model_output,
                t if bound_by is None else bound_by,
                sample,
                next_t,
                table,
                eta=eta,
                noise=noise,
                final=final,
                config=core,
            )
        self._step_index = index + 1
        if not return_dict:
            return (out.next_sample, out.estimate)
        return self._output(out.next_sample, out.estimate)

    def _step_coefficients(
        self, key: tuple[Any, ...], bound_by: torch.Tensor | None, core: tcd_core.TCDConfig
    ) -> tcd_core.Coefficients:
        """The coefficients of the step ``key`` = (t, next, η, final, timestep device), computed
        once per key (:meth:`_cached_coefficients`): ᾱ roots on the table's device; LCM's
        c_skip/c_out from the timestep tensor ``bound_by`` on its device when there is one (where
        the reference computes each)."""
        t, next_t, eta, final, _ = key
        algorithm = self._algorithm

        def compute(table: torch.Tensor) -> tcd_core.Coefficients:
            found = tcd_core.coefficients(
                algorithm,
                table,
                t,
                next_t,
                eta=eta,
                final=final,
                timestep_scaling=core.timestep_scaling,
            )
            if bound_by is None:
                return found
            c_skip, c_out = tcd_core.boundary_condition_scalings(
                bound_by.detach(), core.timestep_scaling
            )
            return found._replace(other=c_skip, original=c_out)

        coefficients: tcd_core.Coefficients = self._cached_coefficients(key, compute)
        return coefficients

    # ------------------------------------------------------------------ what the steps share
    def _ready_plan(self, model_output: Any, sample: Any) -> tuple[int, Steps]:
        """(``num_inference_steps``, the plan of ``self.timesteps``) at the start of a step; the
        reference's error before ``set_timesteps``, a TypeError for inputs that are not tensors
        (:func:`check_tensors`; their dtypes are checked on the general path)."""
        if model_output.__class__ is not torch.Tensor or sample.__class__ is not torch.Tensor:
            check_tensors(model_output, sample)
        num_steps = self.num_inference_steps
        if num_steps is None:
            self._not_ready()
        plan = self._plan
        if plan is None or self.timesteps is not self._plan_tensor:
            plan = self._adopt_timesteps()
        return num_steps, plan

    def _resolve_timestep(self, timestep: Any, plan: Steps) -> tuple[Any, torch.Tensor | None]:
        """(t, source): which t the caller means, and the 0-d tensor it was read from.

        Views of ``self.timesteps`` (what pipelines pass) are looked up in the host plan, CPU 0-d
        tensors read (no device read either way); ``source`` is then that tensor (LCM computes
        float32 c_skip/c_out from it, on its device). NumPy integers become ints, other host
        numbers stay as given (``source`` None). Any other tensor is t itself, for the core's
        gather on its device, so nothing is read back (``source`` None).
        """
        view: Any = timestep
        if getattr(view, "_base", None) is self.timesteps and view.ndim == 0:
            return plan.timesteps[view.storage_offset() - self.timesteps.storage_offset()], view
        if isinstance(timestep, torch.Tensor):
            if timestep.device.type == "cpu" and not timestep.ndim:
                return timestep.item(), timestep
            return timestep, None
        if isinstance(timestep, np.integer):
            return int(timestep), None
        return timestep, None

    @staticmethod
    def _in_place_ok(model_output: torch.Tensor, sample: torch.Tensor) -> bool:
        """Whether the precomputed-coefficient step may run on these tensors: one floating
        dtype, one shape, no autograd (its ``out=`` writes break autograd)."""
        return (
            model_output.dtype is sample.dtype
            and sample.dtype in FLOATS
            and model_output.shape == sample.shape
            and not (model_output.requires_grad or sample.requires_grad)
        )

    def _cached_coefficients(self, key: Any, compute: Callable[[torch.Tensor], Any]) -> Any:
        """The step coefficients for ``key``, ``compute(alphas_cumprod)`` once per key while
        the table is the same object (``add_noise`` moves it; a user may replace it)."""
        table = self.alphas_cumprod
        if self._coefficients_table is not table:
            self._coefficients = {}
            self._coefficients_table = table
        found = self._coefficients.get(key)
        if found is None:
            if len(self._coefficients) >= _COEFFICIENT_CACHE_SIZE:
                self._coefficients.clear()
            found = self._coefficients[key] = compute(table)
        return found

    def _general_inputs(
        self,
        model_output: torch.Tensor,
        sample: torch.Tensor,
        t: Any,
        draw: bool,
        generator: Any,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(noise, ᾱ table) for the core's general step: the shapes checked before any noise is
        drawn; the noise (when ``draw``) in the promoted dtype of the two tensors, as the
        reference draws it; the table on the device of a tensor ``t``."""
        check_tensors(model_output, sample)
        if model_output.shape != sample.shape:
            raise ValueError(
                f"`model_output` must have the sample's shape {tuple(sample.shape)}, "
                f"got {tuple(model_output.shape)}"
            )
        noise = None
        if draw:
            noise = step_noise(
                model_output, generator, torch.promote_types(model_output.dtype, sample.dtype)
            )
        table = self._table_on(t.device) if isinstance(t, torch.Tensor) else self.alphas_cumprod
        return noise, table

    # ------------------------------------------------------------------ forward process
    def add_noise(
        self,
        original_samples: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.IntTensor,
    ) -> torch.Tensor:
        """√ᾱₜ·x₀ + √(1−ᾱₜ)·ε, one timestep per batch element (:func:`tcd_core.add_noise`).

        Like the reference, ``alphas_cumprod`` moves to the samples' device for good.
        """
        index = self._noise_index(original_samples, timesteps)
        return tcd_core.add_noise(self.alphas_cumprod, original_samples, noise, index)

    def get_velocity(
        self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.IntTensor
    ) -> torch.Tensor:
        """v = √ᾱₜ·ε − √(1−ᾱₜ)·x₀ (:func:`tcd_core.get_velocity`)."""
        index = self._noise_index(sample, timesteps)
        return tcd_core.get_velocity(self.alphas_cumprod, sample, noise, index)

    def _noise_index(self, sample: Any, timesteps: Any) -> Any:
        """``timesteps`` ready for the core's forward noising (which checks the rest): a CPU
        tensor's values checked against the table with the core's check of host values (a
        device tensor is not read); the table moved to the sample's device, as the reference
        does, and a tensor index with it."""
        if (
            isinstance(timesteps, torch.Tensor)
            and timesteps.device.type == "cpu"
            and not (timesteps.dtype.is_floating_point or timesteps.dtype == torch.bool)
        ):
            check_index("timesteps", timesteps.numpy(), len(self.alphas_cumprod))
        if isinstance(sample, torch.Tensor):
            self.alphas_cumprod = self.alphas_cumprod.to(device=sample.device)
            if isinstance(timesteps, torch.Tensor):
                return timesteps.to(sample.device)
        return timesteps
