"""Deprecated alias of :mod:`tcd_sample.toy`, where the toy problem of ``tcd-sample`` now lives.

The demo moved out of the core into its own package, ``tcd_sample``. This alias keeps old imports
working, with no warning: ``tcd_core.toy`` re-exports every name of ``tcd_sample.toy`` (its
``__all__``, the same list), and ``tcd_core.toy.mixture``, ``.models``, ``.metrics`` and
``.sampling`` are the very modules of ``tcd_sample.toy`` (registered under these names in
``sys.modules``). New code imports ``tcd_sample.toy``.
"""

import sys

from tcd_sample.toy import *  # noqa: F403
from tcd_sample.toy import __all__ as __all__
from tcd_sample.toy import metrics, mixture, models, sampling

for _module in (metrics, mixture, models, sampling):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
