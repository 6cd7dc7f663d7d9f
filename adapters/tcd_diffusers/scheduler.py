"""``TCDScheduler``: diffusers' stateful scheduler interface on top of :mod:`tcd_core`.

The class keeps diffusers' conventions (a config registered with ``@register_to_config``, a step
counter, ``set_timesteps`` then ``step`` in a loop) and delegates the maths to the core: the
noise schedule (:func:`tcd_core.noise_schedule`), the timestep plan
(:func:`tcd_core.tcd_timesteps`), the step (:func:`tcd_core.tcd_step`, or
:func:`tcd_core.step_coefficients` cached per (t, p, η) plus ``_coefficients``' in-place execution
of :func:`tcd_core.tcd_update`), forward noising and velocity (:func:`tcd_core.add_noise`,
:func:`tcd_core.get_velocity`) and the rule for when noise is drawn
(:func:`tcd_core.draws_noise`).

Host/device split: the plan (timesteps, next timesteps, the step counter) lives on the host as
Python ints; ``step`` indexes host lists with the host counter and never reads a device value,
so on a GPU it makes no host-device synchronisation once ``set_timesteps(device=...)`` ran.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import array_api_compat
import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_tcd import TCDSchedulerOutput
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

import tcd_core

from ._coefficients import noised_sample, renoise

__all__ = ["TCDScheduler", "TCDSchedulerOutput"]

_XP = array_api_compat.array_namespace(torch.empty(0))
_FLOATS = frozenset((torch.float32, torch.float16, torch.bfloat16, torch.float64))
_PLAN_CACHE_SIZE = 16
_COEFFICIENT_CACHE_SIZE = 256
_OUTPUT_NEW = TCDSchedulerOutput.__new__
_ODICT_SET = OrderedDict.__setitem__


def _output(prev_sample: torch.Tensor, pred_noised_sample: torch.Tensor) -> TCDSchedulerOutput:
    """``TCDSchedulerOutput(prev_sample=..., pred_noised_sample=...)`` without the generic
    dataclass/``BaseOutput.__post_init__`` machinery (a few microseconds per step): the same
    keys, in the same order, and the same attributes (tested against the constructor)."""
    out = _OUTPUT_NEW(TCDSchedulerOutput)
    _ODICT_SET(out, "prev_sample", prev_sample)
    _ODICT_SET(out, "pred_noised_sample", pred_noised_sample)
    attributes = out.__dict__
    attributes["prev_sample"] = prev_sample
    attributes["pred_noised_sample"] = pred_noised_sample
    return out


def _checked_eta(eta: Any) -> Any:
    """η as a host number; ValueError outside [0, 1] (the reference: a bare assert)."""
    if isinstance(eta, torch.Tensor):
        eta = eta.item()  # the reference compares it in Python too (a read)
    tcd_core.check_eta(eta)
    return eta


class _Plan:
    """A timestep plan as the step needs it: host lists of the timesteps and of each step's next
    timestep p (0 after the last)."""

    __slots__ = ("custom", "host", "num_inference_steps", "prev", "timesteps")

    def __init__(self, timesteps: np.ndarray, num_inference_steps: int, custom: bool) -> None:
        self.host = timesteps
        self.timesteps = timesteps.tolist()
        self.prev = tcd_core.previous_timesteps(timesteps).tolist()
        self.num_inference_steps = num_inference_steps
        self.custom = custom

    @classmethod
    def of(cls, plan: tcd_core.TCDPlan) -> _Plan:
        return cls(plan.timesteps, plan.num_inference_steps, plan.custom_timesteps)


class TCDScheduler(SchedulerMixin, ConfigMixin):
    r"""Trajectory Consistency Distillation sampling (Strategic Stochastic Sampling), as a drop-in
    replacement for ``diffusers.TCDScheduler`` built on :mod:`tcd_core`.

    Same constructor, methods, arguments, defaults and attributes as diffusers' class; a config
    saved by either class loads in the other, and a seed gives the same image. One step from t to
    the next timestep p, with η = ``eta`` and ᾱ = ``alphas_cumprod``:

    s = ⌊(1−η)·p⌋,  x_s = √ᾱₛ·x̂₀ + √(1−ᾱₛ)·ε̂,  x_p = √(ᾱₚ/ᾱₛ)·x_s + √(1−ᾱₚ/ᾱₛ)·z,

    with (x̂₀, ε̂) from the model output per ``prediction_type`` and z ~ N(0, I) drawn (with
    diffusers' ``randn_tensor``) only when η > 0 and the step is not the last.

    Differences from the reference, all intentional: ``clip_sample`` and ``thresholding`` act on
    x̂₀ as documented (the reference ignores them); bad input raises ``ValueError`` (η outside
    [0, 1], a timestep not in the schedule, ``strength`` outside (0, 1], negative custom
    timesteps, invalid config values); the plan's warnings are logged on the ``tcd_core`` logger.

    Example:
        >>> import torch
        >>> from tcd_diffusers import TCDScheduler
        >>> scheduler = TCDScheduler()
        >>> scheduler.set_timesteps(4)
        >>> scheduler.timesteps.tolist()
        [999, 759, 499, 259]
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(1, 4, 8, 8, generator=g)
        >>> for t in scheduler.timesteps:
        ...     eps = 0.1 * x                         # a denoising model would go here
        ...     x = scheduler.step(eps, t, x, eta=0.3, generator=g).prev_sample
        >>> x.shape
        torch.Size([1, 4, 8, 8])
    """

    order = 1

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
        core = self._core_config()
        tables = tcd_core.noise_schedule(core, xp=_XP)
        self.betas = tables.betas
        self.alphas = tables.alphas
        self.alphas_cumprod = tables.alphas_cumprod
        self.final_alpha_cumprod = tables.final_alpha_cumprod
        self.init_noise_sigma = 1.0

        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(np.arange(num_train_timesteps)[::-1].copy())
        self.custom_timesteps = False

        self._step_index = None
        self._begin_index = None
        self._plan: _Plan | None = None
        self._plan_tensor: torch.Tensor | None = None
        self._plans: OrderedDict[tuple, _Plan] = OrderedDict()
        self._plans_owner: tcd_core.TCDConfig | None = None
        self._coefficients: dict[tuple, Any] = {}
        self._coefficients_table: torch.Tensor | None = None
        self._tables_by_device: dict[torch.device, torch.Tensor] = {}

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
        self.__dict__["_coefficients"] = {}  # a new config may come with a new table
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
    @property
    def step_index(self) -> int | None:
        """The index counter for the current timestep; it increases by one after each step."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The index of the first timestep, set by pipelines through :meth:`set_begin_index`."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Sets the begin index for the scheduler (pipelines call it before the loop)."""
        self._begin_index = begin_index

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
            return self._plan.host
        return self.timesteps.detach().cpu().numpy()

    def _view_position(self, timestep: Any) -> int | None:
        """Position of a 0-d tensor that is a view into ``self.timesteps`` (what iterating or
        slicing ``scheduler.timesteps`` yields), found from its storage offset: no device read.
        ``step`` inlines the same test."""
        if getattr(timestep, "_base", None) is self.timesteps and timestep.ndim == 0:
            return timestep.storage_offset() - self.timesteps.storage_offset()
        return None

    def _init_step_index(self, timestep: float | torch.Tensor) -> None:
        self._step_index = self._first_step_index(timestep)

    def _first_step_index(self, timestep: float | torch.Tensor) -> int:
        """The begin index when a pipeline set one, else the timestep's position."""
        if self._begin_index is not None:
            return self._begin_index
        position = self._view_position(timestep)
        return position if position is not None else self.index_for_timestep(timestep)

    def scale_model_input(
        self, sample: torch.Tensor, timestep: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Returns ``sample`` unchanged (TCD needs no input scaling)."""
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
        """Sets the timesteps of the sampling loop (:func:`tcd_core.tcd_timesteps`).

        ``num_inference_steps`` picks that many timesteps from the distillation grid of
        ``original_inference_steps`` (the config's when not given); ``timesteps`` is a custom
        descending list instead; ``strength`` < 1 keeps the last part of the schedule. The plan
        is the reference's, including its quirks; the reference's ValueErrors are raised under
        the same conditions, plus a ValueError for ``strength`` outside (0, 1] and negative or
        non-integer custom timesteps.
        """
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
                plan = _Plan.of(
                    tcd_core.tcd_timesteps(
                        core,
                        num_inference_steps,
                        original_inference_steps=original_inference_steps,
                        strength=strength,
                    )
                )
                self._plans[key] = plan
                if len(self._plans) > _PLAN_CACHE_SIZE:
                    self._plans.popitem(last=False)
        else:  # custom plans are not cached: the core logs the reference's warnings each time
            plan = _Plan.of(
                tcd_core.tcd_timesteps(
                    core,
                    num_inference_steps,
                    original_inference_steps=original_inference_steps,
                    timesteps=timesteps,
                    strength=strength,
                )
            )
        self._plan = plan
        self.num_inference_steps = plan.num_inference_steps
        self.custom_timesteps = plan.custom
        self.timesteps = torch.from_numpy(plan.host.copy()).to(device=device, dtype=torch.long)
        self._plan_tensor = self.timesteps
        self._step_index = None
        self._begin_index = None

    def __len__(self) -> int:
        """The number of training timesteps."""
        return self.config.num_train_timesteps

    def previous_timestep(self, timestep: int) -> int | torch.Tensor:
        """The timestep after ``timestep`` in the schedule (the reference's -1 after the last
        entry); ``timestep - 1`` before ``set_timesteps``."""
        if self.custom_timesteps or self.num_inference_steps:
            index = int(self._matches(timestep, self._host_timesteps())[0])  # the first match
            if index == self.timesteps.shape[0] - 1:
                return torch.tensor(-1)
            return self.timesteps[index + 1]
        return timestep - 1

    # ------------------------------------------------------------------ the step
    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        eta: float = 0.3,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> TCDSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One TCD step from ``timestep`` to the next timestep of the schedule.

        Args:
            model_output: the model's prediction at ``timestep`` (ε, x₀ or v per the config).
            timestep: the current timestep (an element of ``timesteps``, a Python int or a
                tensor).
            sample: the current sample x_t.
            eta: η ∈ [0, 1] (the paper's γ): 0 is deterministic, 1 fully stochastic.
            generator: a ``torch.Generator`` (or a list, one per batch element) for the noise.
            return_dict: return a ``TCDSchedulerOutput`` (else the tuple
                ``(prev_sample, pred_noised_sample)``).

        Raises:
            ValueError: before ``set_timesteps``; η outside [0, 1]; a first timestep that is not
                in the schedule.
        """
        if self.num_inference_steps is None:
            raise ValueError(
                "Number of inference steps is 'None', you need to run 'set_timesteps' after "
                "creating the scheduler"
            )
        plan = self._plan
        if plan is None or self.timesteps is not self._plan_tensor:
            plan = self._adopt_timesteps()
        if eta.__class__ is not float or not 0.0 <= eta <= 1.0:
            eta = _checked_eta(eta)
        index = self._step_index
        if index is None:
            index = self._first_step_index(timestep)  # stored once the step succeeded
        prev_timestep = plan.prev[index] if index < len(plan.prev) else 0
        draw = tcd_core.draws_noise(index, eta, self.num_inference_steps)

        # Which t does the caller mean? Views of self.timesteps (what pipelines pass) and host
        # numbers are known on the host; any other device tensor goes to the core's gather, on
        # the device, so nothing is read back.
        if getattr(timestep, "_base", None) is self.timesteps and timestep.ndim == 0:
            t: Any = plan.timesteps[timestep.storage_offset() - self.timesteps.storage_offset()]
        elif isinstance(timestep, torch.Tensor):
            t = timestep if timestep.device.type != "cpu" or timestep.ndim else timestep.item()
        elif isinstance(timestep, np.integer):
            t = int(timestep)
        else:
            t = timestep

        state = self.__dict__["_core_cache"]
        if state[0] is not self._internal_dict:
            state = self._core_state()
        core, fast = state[1], state[2]
        if (
            fast
            and t.__class__ is int
            and model_output.dtype is sample.dtype
            and sample.dtype in _FLOATS
            and model_output.shape == sample.shape
            and not (model_output.requires_grad or sample.requires_grad)  # out= breaks autograd
        ):
            coefficients = self._step_coefficients(t, prev_timestep, eta)
            pred_noised_sample, scratch = noised_sample(
                coefficients, model_output, sample, core.prediction_type
            )
            if draw:
                noise = randn_tensor(
                    model_output.shape,
                    generator=generator,
                    device=model_output.device,
                    dtype=pred_noised_sample.dtype,
                )
                prev_sample = renoise(coefficients, pred_noised_sample, noise, out=scratch)
            else:
                prev_sample = pred_noised_sample
        else:
            prev_sample, pred_noised_sample = self._core_step(
                model_output, t, sample, prev_timestep, eta, draw, generator, core
            )

        self._step_index = index + 1
        if not return_dict:
            return (prev_sample, pred_noised_sample)
        return _output(prev_sample, pred_noised_sample)

    def _adopt_timesteps(self) -> _Plan:
        """A plan for a ``timesteps`` tensor assigned by hand (diffusers' step reads whatever
        ``self.timesteps`` holds): one host copy of it, then the step proceeds as usual."""
        host = self.timesteps.detach().cpu().numpy().astype(np.int64)
        self._plan = _Plan(host, self.num_inference_steps, self.custom_timesteps)
        self._plan_tensor = self.timesteps
        return self._plan

    def _core_step(
        self,
        model_output: torch.Tensor,
        t: Any,
        sample: torch.Tensor,
        prev_timestep: int,
        eta: float,
        draw: bool,
        generator: Any,
        core: tcd_core.TCDConfig,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The general path: :func:`tcd_core.tcd_step` itself (clipping/thresholding, device
        timesteps that are not views of ``timesteps``, mixed dtypes)."""
        if model_output.shape != sample.shape:  # checked before any noise is drawn
            raise ValueError(
                f"`model_output` must have the sample's shape {tuple(sample.shape)}, "
                f"got {tuple(model_output.shape)}"
            )
        noise = None
        if draw:
            # The reference draws with its pred_noised_sample's dtype: the promoted one.
            dtype = torch.promote_types(model_output.dtype, sample.dtype)
            noise = randn_tensor(
                model_output.shape, generator=generator, device=model_output.device, dtype=dtype
            )
        table = self.alphas_cumprod
        if isinstance(t, torch.Tensor):
            table = self._table_on(t.device)
        out = tcd_core.tcd_step(
            model_output, t, sample, prev_timestep, table, eta=eta, noise=noise, config=core
        )
        return out.prev_sample, out.pred_noised_sample

    def _step_coefficients(self, t: int, p: int, eta: float) -> tcd_core.StepCoefficients:
        """0-d coefficients of the step t → p at η, computed once, on the table's device (where
        the reference computes them too)."""
        table = self.alphas_cumprod
        if self._coefficients_table is not table:  # add_noise moved it, or a user replaced it
            self._coefficients = {}
            self._coefficients_table = table
        key = (t, p, eta)
        found = self._coefficients.get(key)
        if found is None:
            if len(self._coefficients) >= _COEFFICIENT_CACHE_SIZE:
                self._coefficients.clear()
            found = tcd_core.step_coefficients(table, t, p, eta)
            self._coefficients[key] = found
        return found

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
        self.alphas_cumprod = self.alphas_cumprod.to(device=original_samples.device)
        if isinstance(timesteps, torch.Tensor):
            timesteps = timesteps.to(original_samples.device)
        return tcd_core.add_noise(self.alphas_cumprod, original_samples, noise, timesteps)

    def get_velocity(
        self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.IntTensor
    ) -> torch.Tensor:
        """v = √ᾱₜ·ε − √(1−ᾱₜ)·x₀ (:func:`tcd_core.get_velocity`)."""
        self.alphas_cumprod = self.alphas_cumprod.to(device=sample.device)
        if isinstance(timesteps, torch.Tensor):
            timesteps = timesteps.to(sample.device)
        return tcd_core.get_velocity(self.alphas_cumprod, sample, noise, timesteps)
