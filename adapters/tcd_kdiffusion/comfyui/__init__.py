"""The ComfyUI node pack of tcd-core: TCD as a SAMPLER, and its SIGMAS.

ComfyUI loads a custom node pack with ``nodes.load_custom_node(path)``, which runs the pack's
``__init__.py`` as a top-level module and reads ``NODE_CLASS_MAPPINGS`` and
``NODE_DISPLAY_NAME_MAPPINGS`` from it. This package is such a pack, loadable from where pip
installed it; ``tcd-comfyui-install`` writes the two-line folder into ComfyUI's ``custom_nodes``
that imports it. Every import here is absolute (a relative one fails when ComfyUI loads the file
as a top-level module), and ComfyUI itself is imported only when a node runs.

Nodes (category ``sampling/custom_sampling``, for SamplerCustom and SamplerCustomAdvanced):

* **Sampler TCD** (``SamplerTCD``, a SAMPLER): ``eta`` (TCD's γ, 0.3 by default), and where the
  step noise comes from: ``comfyui`` (ComfyUI's own noise sampler seeded with the workflow's
  seed) or ``diffusers`` (the stream a diffusers pipeline draws from ``generator=
  torch.Generator().manual_seed(seed)``). SD-style and flow-matching models alike.
* **TCD Sigmas** (``TCDSigmas``, a SIGMAS): TCD's plan for ``steps`` (and ``denoise`` for
  image-to-image) on the model's own schedule.
"""

from tcd_kdiffusion.comfyui.nodes import (
    NODE_CLASS_MAPPINGS,
    NODE_DISPLAY_NAME_MAPPINGS,
    SamplerTCD,
    TCDSigmas,
    sample_tcd_comfyui,
)

__all__ = [
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "SamplerTCD",
    "TCDSigmas",
    "sample_tcd_comfyui",
]
