"""tcd_diffusers: a drop-in diffusers ``TCDScheduler`` built on :mod:`tcd_core`.

    >>> from tcd_diffusers import TCDScheduler
    >>> TCDScheduler().config.original_inference_steps
    50

Swap it into any diffusers pipeline with one line::

    pipe.scheduler = TCDScheduler.from_config(pipe.scheduler.config)
"""

try:
    import diffusers  # noqa: F401
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the wheel test in .ci/run
    raise ImportError(
        f"tcd_diffusers needs torch and diffusers ({exc.name} is missing): "
        'pip install "tcd-core[diffusers]"'
    ) from exc

from diffusers.schedulers.scheduling_tcd import TCDSchedulerOutput

# diffusers' pipeline loader finds a third-party component's loading method by looking its base
# classes up by name in the component's library (here: this package), so a pipeline saved with
# our scheduler (model_index.json: ["tcd_diffusers", "TCDScheduler"]) reloads only if the name
# SchedulerMixin resolves here. Not part of __all__.
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401

from .scheduler import TCDScheduler

# The public path: pipelines saved with this scheduler record it in model_index.json as
# ["tcd_diffusers", "TCDScheduler"], which stays valid whatever the internal module layout.
TCDScheduler.__module__ = __name__

__all__ = ["TCDScheduler", "TCDSchedulerOutput"]
