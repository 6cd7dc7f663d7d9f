"""tcd_diffusers: a drop-in diffusers ``TCDScheduler`` built on :mod:`tcd_core`.

    >>> from tcd_diffusers import TCDScheduler
    >>> TCDScheduler().config.original_inference_steps
    50

Swap it into any diffusers pipeline with one line::

    pipe.scheduler = TCDScheduler.from_config(pipe.scheduler.config)
"""

from diffusers.schedulers.scheduling_tcd import TCDSchedulerOutput

from .scheduler import TCDScheduler

__all__ = ["TCDScheduler", "TCDSchedulerOutput"]
