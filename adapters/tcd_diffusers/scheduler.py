"""``TCDScheduler``: diffusers' ``TCDScheduler`` as a named configuration of the adapter's one
scheduler (``_base.ConsistencyScheduler`` with :data:`tcd_core.TCD`): its config fields and
``step`` signature. The maths is :mod:`tcd_core`'s (plan, coefficients, update).

Host/device split (see ``_base``): ``step`` indexes host lists with the host counter and never
reads a device value, so on a GPU it makes no host-device synchronisation once
``set_timesteps(device=...)`` ran.
"""

from __future__ import annotations

import torch
from diffusers.schedulers.scheduling_tcd import TCDSchedulerOutput

import tcd_core

from ._base import ConsistencyScheduler, fast_output

__all__ = ["TCDScheduler", "TCDSchedulerOutput"]

#: ``TCDSchedulerOutput(prev_sample=..., pred_noised_sample=...)`` without the dataclass machinery
_output = fast_output(TCDSchedulerOutput, "prev_sample", "pred_noised_sample")


class TCDScheduler(ConsistencyScheduler):
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
    _algorithm = tcd_core.TCD
    _output = staticmethod(_output)

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
                in the schedule, a begin index past its end; host timesteps outside the table.
            TypeError: η that is not a real number; inputs that are not floating-point
                tensors; a ``generator`` that is not a ``torch.Generator`` (or a list of them).
        """
        return self._step(model_output, timestep, sample, eta, generator, return_dict)
