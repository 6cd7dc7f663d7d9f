"""tcd_sample: the demo of tcd-core, ``tcd-sample`` and the exact toy problem behind it.

Not the core: a 2-D Gaussian mixture whose exact answer is known (:mod:`tcd_sample.toy`: the
mixture, its exact teacher and ideal distilled models, the metrics and the TCD and LCM sampling
loops, all over tcd_core's public API), and the ``tcd-sample`` CLI on top (:mod:`tcd_sample.cli`;
``python -m tcd_sample`` runs it too), which samples it and compares with the truth. See the
tcd-sample page of the docs.
"""

from .cli import main

__all__ = ["main"]
