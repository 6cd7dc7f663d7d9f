"""Outputs of a run: the markdown tables, the JSON file, the PNG plot and docs/performance.md.

Modules, one way: ``format`` (numbers, tables, finding a cell), then ``tables`` (every cell,
scaling, compile times, the flow run's cells), ``verdicts`` (the headline targets, the JAX
loop's target, the flow-matching target), ``figure`` (the plot) and ``page``
(docs/performance.md, from all of them). The results file's schema, ``validate``,
``write_json`` and ``read_json`` are ``benchmarks.schema``'s.
"""

from __future__ import annotations

from ..schema import read_json, validate, write_json
from . import tables, verdicts
from .figure import plot
from .format import HEADLINE_ETA, HEADLINE_STEPS
from .page import render_docs
from .tables import *  # noqa: F403
from .verdicts import *  # noqa: F403

# The tables and verdicts are named once, in their modules' __all__; the rest here.
__all__ = [
    "HEADLINE_ETA",
    "HEADLINE_STEPS",
    "plot",
    "read_json",
    "render_docs",
    "validate",
    "write_json",
    *tables.__all__,
    *verdicts.__all__,
]
