"""``LCMScheduler``: diffusers' multistep consistency sampler (Algorithm 1) as a named
configuration of the adapter's one scheduler (``_base.ConsistencyScheduler`` with
:data:`tcd_core.LCM`): its config fields, ``step`` signature and boundary-condition method.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.schedulers.scheduling_lcm import LCMSchedulerOutput

import tcd_core

from ._base import ConsistencyScheduler, fast_output

__all__ = ["LCMScheduler", "LCMSchedulerOutput"]

#: ``LCMSchedulerOutput(prev_sample=..., denoised=...)`` without the dataclass machinery
_output = fast_output(LCMSchedulerOutput, "prev_sample", "denoised")


class LCMScheduler(ConsistencyScheduler):
    r"""Multistep consistency sampling (Song et al. 2023, Algorithm 1; Latent Consistency Models),
    a drop-in replacement for ``diffusers.LCMScheduler`` built on :mod:`tcd_core`.

    Same constructor, methods, arguments, defaults and attributes as diffusers' class; a config
    saved by either class loads in the other, and a seed gives the same image. One step at t, with
    ᾱ = ``alphas_cumprod``, τ = t·``timestep_scaling`` and σ_d = 0.5:

    denoised = c_out·x̂₀ + c_skip·x_t,  c_skip = σ_d²/(τ²+σ_d²),  c_out = τ/√(τ²+σ_d²),

    prev_sample = √ᾱ_prev·denoised + √(1−ᾱ_prev)·z, z ~ N(0, I) drawn with diffusers'
    ``randn_tensor``, except at the final step (``step_index == num_inference_steps − 1``), which
    returns ``denoised`` and draws nothing. x̂₀ comes from the model output per
    ``prediction_type`` and is thresholded or clipped when the config says so (as in diffusers).

    Differences from the reference, all intentional: bad input raises ``ValueError`` (a timestep
    not in the schedule, ``strength`` outside (0, 1], ``num_inference_steps`` or
    ``original_inference_steps`` < 1, negative custom timesteps, invalid config values); the plan's
    warnings are logged on the ``tcd_core`` logger; mixed ``model_output``/``sample`` dtypes give
    the sample's dtype.

    Example (built from a diffusers ``LCMScheduler``'s config, as ``pipe.scheduler`` would be):
        >>> import diffusers, torch
        >>> from tcd_diffusers import LCMScheduler
        >>> scheduler = LCMScheduler.from_config(diffusers.LCMScheduler(timestep_scaling=10.0).config)
        >>> scheduler.set_timesteps(2, original_inference_steps=50)
        >>> x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> steps = [scheduler.step(0.1 * x, t, x, return_dict=False) for t in scheduler.timesteps]
        >>> [torch.equal(nxt, denoised) for nxt, denoised in steps]  # only the final step returns it
        [False, True]
    """

    order = 1
    _algorithm = tcd_core.LCM
    _output = staticmethod(_output)

    def get_scalings_for_boundary_condition_discrete(self, timestep: Any) -> tuple[Any, Any]:
        """The consistency boundary conditions (c_skip, c_out) at ``timestep``
        (:func:`tcd_core.boundary_condition_scalings` with σ_d = 0.5 and the config's
        ``timestep_scaling``): Python floats for a number, float32 tensors for a tensor."""
        self.sigma_data = 0.5  # the reference sets this attribute here too
        return tcd_core.boundary_condition_scalings(
            timestep, self._core_config().timestep_scaling, self.sigma_data
        )

    # ------------------------------------------------------------------ the step
    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> LCMSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One multistep-consistency step at ``timestep``.

        Args:
            model_output: the model's prediction at ``timestep`` (ε, x₀ or v per the config).
            timestep: the current timestep (an element of ``timesteps``, a Python int or a
                tensor). As in diffusers, a tensor gives float32 c_skip/c_out and an ``int``
                gives them in double precision (rounded when applied).
            sample: the current sample x_t.
            generator: a ``torch.Generator`` (or a list, one per batch element) for the noise.
            return_dict: return an ``LCMSchedulerOutput`` (else the tuple
                ``(prev_sample, denoised)``).

        Raises:
            ValueError: before ``set_timesteps``; a first timestep that is not in the schedule.
        """
        return self._step(model_output, timestep, sample, None, generator, return_dict)
