"""Outputs of a run: the markdown tables, the JSON file, the PNG plot and docs/performance.md.

Modules, one way: ``format`` (numbers, tables, finding a cell), then ``tables`` (every cell,
scaling, compile times, the flow run's cells), ``verdicts`` (the headline targets, the JAX
loop's target, the flow-matching target), ``figure`` (the plot) and ``page``
(docs/performance.md, from all of them). The results file's schema, ``validate``,
``write_json`` and ``read_json`` are ``benchmarks.schema``'s.
"""

from __future__ import annotations

from ..schema import read_json, validate, write_json
from .figure import plot
from .format import HEADLINE_ETA, HEADLINE_STEPS
from .page import render_docs
from .tables import compile_table, flow_results_table, results_table, scaling_table
from .verdicts import (
    flow_section,
    flow_verdicts,
    flow_verdicts_table,
    headline,
    headline_table,
    jax_loop_section,
)

__all__ = [
    "HEADLINE_ETA",
    "HEADLINE_STEPS",
    "compile_table",
    "flow_results_table",
    "flow_section",
    "flow_verdicts",
    "flow_verdicts_table",
    "headline",
    "headline_table",
    "jax_loop_section",
    "plot",
    "read_json",
    "render_docs",
    "results_table",
    "scaling_table",
    "validate",
    "write_json",
]
