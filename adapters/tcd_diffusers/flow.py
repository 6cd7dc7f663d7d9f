"""TCD on flow-matching models, as a drop-in for diffusers' ``FlowMatchEulerDiscreteScheduler``.

FLUX, SD3 and Wan pipelines drive their scheduler with ``set_timesteps(…, sigmas=, mu=)``,
``scale_noise`` (img2img), ``set_begin_index`` and ``step(noise_pred, t, latents)``.
:class:`FlowMatchTCDScheduler` answers all of these as the Euler scheduler does (the plan is
:func:`tcd_core.flow_plan`, bit for bit the reference's) and steps with TCD on the core's flow
path (:data:`tcd_core.FLOW`): from σ through σ_s = f32(1−η)·σ_next, re-noised to σ_next.

* η = 0: ``FlowMatchEulerDiscreteScheduler``'s step, bit for bit (no noise drawn).
* η = 1: its ``stochastic_sampling=True`` step (FlowMatchLCM's), bit for bit, with one
  ``randn`` of the sample's shape per step drawn exactly where it draws it, the last step
  included, so a generator ends in the same state.
* between: the γ that neither offers.

η is a config value (``eta``, default 0.3) because flow pipelines pass none to ``step``; a
``step(…, eta=)`` argument overrides it for one step.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, FrozenDict, register_to_config
from diffusers.schedulers.scheduling_utils import SCHEDULER_CONFIG_NAME, SchedulerMixin
from diffusers.utils import BaseOutput

import tcd_core
from tcd_core.flow import FlowConfig, flow_plan, train_sigma_range, train_sigmas

from ._base import StepIndices, _checked_eta, check_tensors, step_noise
from ._inplace import IN_PLACE

__all__ = ["FlowMatchTCDScheduler", "FlowMatchTCDSchedulerOutput"]

_COEFFICIENT_PLANS = _PLANS = 16


def _call_key(*arguments: Any) -> tuple[Any, ...] | None:
    """A hashable key for ``set_timesteps``' arguments (None: not cached, e.g. tensors, or
    custom timesteps without σ, whose warning the reference logs at every call)."""
    n, sigmas, mu, timesteps, shift = arguments
    if timesteps is not None and sigmas is None:
        return None
    try:
        return (n, _values_key(sigmas), mu, _values_key(timesteps), shift)
    except (TypeError, ValueError):
        return None  # let the plan raise its own error


def _values_key(values: Any) -> Any:
    if values is None:
        return None
    if isinstance(values, np.ndarray):
        return (values.dtype.str, values.shape, values.tobytes())
    if isinstance(values, torch.Tensor):
        raise TypeError("not cached")
    return tuple(float(v) for v in values)


#: The core config of every step: the model predicts the flow velocity v = ε − x₀.
_VELOCITY = tcd_core.TCDConfig(prediction_type=tcd_core.FLOW_PREDICTION)


@dataclass
class FlowMatchTCDSchedulerOutput(BaseOutput):
    """The output of :meth:`FlowMatchTCDScheduler.step`: ``prev_sample``, the next model input
    (the Euler scheduler's one field; x̂₀ = x − σ·v is one line for a caller who wants it)."""

    prev_sample: torch.Tensor


class FlowMatchTCDScheduler(StepIndices, SchedulerMixin, ConfigMixin):
    """TCD's Strategic Stochastic Sampling on a flow-matching model (see the module docstring).

    Construct it from a pipeline's scheduler, ``FlowMatchTCDScheduler.from_config(
    pipe.scheduler.config)`` or with ``eta=…`` added. The config fields are the Euler scheduler's
    (validated with ValueError where the reference accepts nonsense:
    :class:`tcd_core.FlowConfig`) plus ``eta``. ``stochastic_sampling=True`` is η = 1,
    so it is accepted only with ``eta=1.0``; ``invert_sigmas`` runs σ upwards, where only η = 0
    (Euler) is defined.

    Reproducible images: flow pipelines pass no generator to ``step``, so step noise comes from
    torch's global RNG, as for the Euler scheduler. ``scheduler.generator = torch.Generator(
    device).manual_seed(seed)`` makes the scheduler draw from that generator whenever ``step`` is
    given none; a ``generator`` argument to ``step`` still wins.

    Example:
        >>> s = FlowMatchTCDScheduler(shift=3.0, eta=0.0)
        >>> s.set_timesteps(4)
        >>> [round(v, 1) for v in s.timesteps.tolist()]
        [1000.0, 857.7, 602.2, 8.9]
    """

    config_name = SCHEDULER_CONFIG_NAME  # type: ignore[assignment]
    order = 1
    _internal_dict: FrozenDict

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        base_shift: float | None = 0.5,
        max_shift: float | None = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        invert_sigmas: bool = False,
        shift_terminal: float | None = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        time_shift_type: str = "exponential",
        stochastic_sampling: bool = False,
        eta: float = 0.3,
    ) -> None:
        flow = self._flow_config()
        tcd_core.check_eta(eta)
        if not isinstance(stochastic_sampling, (bool, np.bool_)):
            raise ValueError(f"`stochastic_sampling` must be a bool, got {stochastic_sampling!r}")
        if stochastic_sampling and eta != 1.0:
            raise ValueError(
                "`stochastic_sampling=True` is TCD's eta=1 (the stochastic Euler step); pass "
                f"eta=1.0 with it, or stochastic_sampling=False with eta={eta!r}"
            )
        self._check_direction(eta)
        sigmas = torch.from_numpy(train_sigmas(flow))
        self.timesteps = sigmas * num_train_timesteps
        self.sigmas = sigmas
        self.sigma_min, self.sigma_max = train_sigma_range(flow)
        self._shift = float(shift)
        self._step_index: int | None = None
        self._begin_index: int | None = None
        self._host_sigmas: list[float] = sigmas.tolist()
        self._host_timesteps: list[float] = self.timesteps.tolist()
        # every step's coefficients per (plan σ, device, η): pipelines call set_timesteps with
        # the same plan for every image, so a plan's coefficients are computed once
        self._coefficients: OrderedDict[Any, list[tcd_core.Coefficients]] = OrderedDict()
        self._plan_key: Any = (None, sigmas.device)
        self._plans: OrderedDict[Any, tuple[Any, ...]] = OrderedDict()
        self.num_inference_steps: int | None = None
        #: A generator for the step noise when ``step`` is given none (None: torch's global RNG).
        self.generator: torch.Generator | None = None

    # ------------------------------------------------------------------ config
    def _flow_config(self) -> FlowConfig:
        """The core's flow config of ``self.config`` (validated; cached per config object)."""
        source = self._internal_dict
        cached = self.__dict__.get("_flow_cache")
        if cached is None or cached[0] is not source:
            cached = (source, FlowConfig.from_config(source))
            self.__dict__["_flow_cache"] = cached
        return cached[1]

    def _check_direction(self, eta: float) -> None:
        if self.config["invert_sigmas"] and eta > 0:
            raise ValueError(
                "`invert_sigmas=True` runs σ from 0 up to 1, where TCD's re-noising is not "
                f"defined: use eta=0 (the Euler step), got eta={eta!r}"
            )

    @property
    def shift(self) -> float:
        """The shift of the next :meth:`set_timesteps` (:meth:`set_shift` changes it)."""
        return self._shift

    def set_shift(self, shift: float) -> None:
        """Sets the shift used by the next :meth:`set_timesteps` (checked as the config's
        ``shift`` is: ValueError outside the range where the reference's plan is right)."""
        self._shift = self._flow_config().replace(shift=shift).shift

    # ------------------------------------------------------------------ the plan
    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: list[float] | None = None,
        mu: float | None = None,
        timesteps: list[float] | None = None,
    ) -> None:
        """The Euler scheduler's plan, bit for bit (:func:`tcd_core.flow_plan`): ``timesteps``
        (the model's time) and ``sigmas`` (with the terminal σ appended) on ``device``.

        Pipelines plan the same steps for every image, so the host plan is cached per call
        (arguments, shift and config); each call still gets tensors of its own."""
        key = _call_key(num_inference_steps, sigmas, mu, timesteps, self._shift)
        cached = None if key is None else self._plans.get(key)
        if cached is None or cached[0] is not self._internal_dict:
            plan = flow_plan(
                self._flow_config(),
                num_inference_steps,
                sigmas=sigmas,
                mu=mu,
                timesteps=timesteps,
                shift=self._shift,
            )
            host = (plan.sigmas.tolist(), plan.timesteps.tolist(), plan.sigmas.tobytes())
            cached = (self._internal_dict, plan, *host)
            if key is not None:
                self._plans[key] = cached
                if len(self._plans) > _PLANS:
                    self._plans.popitem(last=False)
        _, plan, self._host_sigmas, self._host_timesteps, sigma_bytes = cached
        self.num_inference_steps = plan.num_inference_steps
        # copies: the cached plan's arrays are never handed out
        self.timesteps = torch.from_numpy(plan.timesteps).to(device, copy=True)
        self.sigmas = torch.from_numpy(plan.sigmas).to(device, copy=True)
        self._plan_key = (sigma_bytes, self.sigmas.device)
        self._step_index = None
        self._begin_index = None

    # ------------------------------------------------------------------ index bookkeeping
    def index_for_timestep(
        self, timestep: float | torch.Tensor, schedule_timesteps: torch.Tensor | None = None
    ) -> int:
        """The index of ``timestep`` in the schedule (the second match if it occurs twice, as in
        the reference); ValueError naming it when it is absent (the reference: an IndexError)."""
        if schedule_timesteps is None:
            host = np.asarray(self._host_timesteps, dtype=np.float32)
        else:
            host = np.asarray(torch.as_tensor(schedule_timesteps).detach().cpu())
        value = timestep.item() if isinstance(timestep, torch.Tensor) else timestep
        (matches,) = np.nonzero(host == value)
        if len(matches) == 0:
            raise ValueError(
                f"timestep {value} is not in the timestep schedule {host.tolist()}; pass one of "
                "`scheduler.timesteps` (or call `set_begin_index` for a partial schedule)"
            )
        return int(matches[1] if len(matches) > 1 else matches[0])

    def _init_step_index(self, timestep: float | torch.Tensor) -> None:
        self._step_index = (
            self.index_for_timestep(timestep) if self._begin_index is None else self._begin_index
        )

    # ------------------------------------------------------------------ forward process
    def scale_noise(
        self, sample: torch.Tensor, timestep: float | torch.Tensor, noise: torch.Tensor | None
    ) -> torch.Tensor:
        """The flow path's forward process x_σ = σ·noise + (1−σ)·sample at the σ of
        ``timestep`` (one per batch element), the reference's arithmetic."""
        check_tensors(sample, sample)
        if not isinstance(noise, torch.Tensor):
            raise TypeError(f"`noise` must be a torch.Tensor, got {type(noise).__name__}")
        sigmas = self.sigmas.to(device=sample.device, dtype=sample.dtype)
        times = torch.as_tensor(timestep).reshape(-1)
        if self._begin_index is None:
            schedule = self.timesteps.to(times.device)
            indices = [self.index_for_timestep(t, schedule) for t in times]
        else:
            start = self._step_index if self._step_index is not None else self._begin_index
            indices = [start] * times.shape[0]
        sigma = sigmas[indices].flatten()
        sigma = sigma.reshape(sigma.shape + (1,) * (sample.ndim - 1))
        return sigma * noise + (1.0 - sigma) * sample

    # ------------------------------------------------------------------ the step
    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        eta: float | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> FlowMatchTCDSchedulerOutput | tuple[torch.Tensor]:
        """One TCD step on the flow path from ``timestep`` (one of ``scheduler.timesteps``) to
        the next σ of the plan.

        Args:
            model_output: the velocity the model predicts, v = ε − x₀.
            timestep: the model time of this step (a float or a tensor; integer indices are a
                ValueError, as in the reference).
            sample: x at this σ; computed in float32 and returned in the model output's dtype,
                as the Euler scheduler does.
            eta: η ∈ [0, 1] for this step; ``config.eta`` when None.
            generator: the step noise's generator (η > 0); ``self.generator`` when None, then
                torch's global RNG.
            return_dict: a :class:`FlowMatchTCDSchedulerOutput` when True, else a tuple.
        """
        if isinstance(timestep, (int, np.integer)) or (
            isinstance(timestep, torch.Tensor) and not timestep.is_floating_point()
        ):
            raise ValueError(
                "Passing integer indices (e.g. from `enumerate(timesteps)`) as timesteps to "
                "`FlowMatchTCDScheduler.step()` is not supported. Make sure to pass one of the "
                "`scheduler.timesteps` as a timestep."
            )
        check_tensors(model_output, sample)
        if self.num_inference_steps is None:
            raise ValueError("call `set_timesteps` before `step`")
        if eta is None:
            eta = self.config["eta"]  # checked with the config
        else:
            eta = _checked_eta(eta)
            self._check_direction(eta)
        if self._step_index is None:
            self._init_step_index(timestep)
        index = self._step_index
        assert index is not None
        if index + 1 >= len(self._host_sigmas):
            raise ValueError(
                f"step {index} is past the plan's last step ({self.num_inference_steps} steps): "
                "call `set_timesteps` again before sampling anew"
            )
        noise = None
        if eta > 0:  # every step, the last included, as the stochastic Euler step draws
            source = self.generator if generator is None else generator
            noise = step_noise(model_output, source, torch.float32)
        c = self._step_coefficients(eta)[index]
        in_place = not (torch.is_grad_enabled() and model_output.requires_grad)
        out = tcd_core.update(
            tcd_core.TCD,
            c,
            model_output,
            sample.to(torch.float32),
            noise,
            _VELOCITY,
            arithmetic=IN_PLACE if in_place else None,
        )
        prev_sample = out.next_sample.to(model_output.dtype)
        self._step_index = index + 1
        if not return_dict:
            return (prev_sample,)
        return FlowMatchTCDSchedulerOutput(prev_sample=prev_sample)

    def _step_coefficients(self, eta: float) -> list[tcd_core.Coefficients]:
        """Every step's coefficients for ``eta``, computed at once from the plan's σ (one
        vector operation per coefficient, on the σ's device) and cached per (plan, device, η)
        for the next images (a few plans at most: least recently used first out)."""
        key = (self._plan_key, eta)
        steps = self._coefficients.get(key)
        if steps is None:
            sigmas = self.sigmas
            vectors = tcd_core.coefficients(
                tcd_core.TCD, tcd_core.FLOW, sigmas[:-1], sigmas[1:], eta=eta, ndim=1
            )
            columns = [torch.unbind(v) for v in vectors]
            steps = [tcd_core.Coefficients(*row) for row in zip(*columns, strict=True)]
            self._coefficients[key] = steps
            if len(self._coefficients) > _COEFFICIENT_PLANS:
                self._coefficients.popitem(last=False)
        return steps

    def __len__(self) -> int:
        return int(self.config["num_train_timesteps"])
