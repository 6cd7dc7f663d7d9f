"""tcd_diffusers: drop-in diffusers ``TCDScheduler`` and ``LCMScheduler``, and
``FlowMatchTCDScheduler`` for flow-matching pipelines, built on :mod:`tcd_core`.

    >>> from tcd_diffusers import LCMScheduler, TCDScheduler
    >>> TCDScheduler().config.original_inference_steps, LCMScheduler().config.timestep_scaling
    (50, 10.0)

Swap one into any diffusers pipeline with one line::

    pipe.scheduler = TCDScheduler.from_config(pipe.scheduler.config)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    pipe.scheduler = FlowMatchTCDScheduler.from_config(pipe.scheduler.config, eta=0.3)  # FLUX, SD3
"""

try:
    import diffusers  # noqa: F401
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the wheel test in .ci/run
    raise ImportError(
        f"tcd_diffusers needs torch and diffusers ({exc.name} is missing): "
        'pip install "tcd-core[diffusers]"'
    ) from exc

from diffusers.schedulers.scheduling_lcm import LCMSchedulerOutput
from diffusers.schedulers.scheduling_tcd import TCDSchedulerOutput

# diffusers' pipeline loader finds a third-party component's loading method by looking its base
# classes up by name in the component's library (here: this package), so a pipeline saved with
# our scheduler (model_index.json: ["tcd_diffusers", "TCDScheduler"]) reloads only if the name
# SchedulerMixin resolves here. Not part of __all__.
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401

from .flow import FlowMatchTCDScheduler, FlowMatchTCDSchedulerOutput
from .lcm import LCMScheduler
from .scheduler import TCDScheduler

# The public path: pipelines saved with these schedulers record them in model_index.json as
# ["tcd_diffusers", "TCDScheduler"] / ["tcd_diffusers", "LCMScheduler"], which stays valid
# whatever the internal module layout.
TCDScheduler.__module__ = __name__
FlowMatchTCDScheduler.__module__ = __name__
LCMScheduler.__module__ = __name__

__all__ = [
    "FlowMatchTCDScheduler",
    "FlowMatchTCDSchedulerOutput",
    "LCMScheduler",
    "LCMSchedulerOutput",
    "TCDScheduler",
    "TCDSchedulerOutput",
]
