"""tcd-core benchmarks: one command, ratios measured side by side in one process.

Run ``python -m benchmarks`` (full CPU grid; rewrites docs/performance.md and
benchmarks/results/cpu.json), ``python -m benchmarks --quick --out DIR`` (smoke run, < 2 minutes
on 2 cores), ``python -m benchmarks --only flow`` (the flow-matching grid alone, into flow.json),
or ``python -m benchmarks --device cuda`` on a GPU machine. See ``--help``.

Modules, each importing only those listed before it (``tests/packaging/test_import_graph.py``
checks that the project has no import circle):

1. ``workloads`` (the grid, shared inputs, the floor's coefficients), ``timing`` (interleaved
   timing, memory), ``machine``, ``schema`` (the results JSON: schema, validate, read, write);
2. ``contenders`` (one whole-loop callable per contender): ``contenders.base``, then one module
   per ecosystem (``torch_loops``, ``numpy_loops``, ``jax_loops``, ``kdiffusion_loops``) and
   ``flow_loops`` (the flow-matching schedulers, issue 18);
3. the studies ``eta_zero`` and ``jax_gpu``, and ``gpu`` (the CUDA mode);
4. ``runner`` (the CPU run, and ``run_flow``: the flow-matching grid, whose verdicts are
   FlowMatchTCDScheduler ≤ 1.00× FlowMatchEulerDiscreteScheduler at equal work);
5. ``report`` (tables, verdicts, plot, docs page: ``report.format``, then ``tables``,
   ``verdicts``, ``figure``, ``page``);
6. ``__main__`` (the command line).

Studies: ``jax_gpu`` (the compiled JAX loop on any JAX device, standalone) and ``eta_zero`` (ways to
skip the η = 0 draw when η is traced, with a constant and a conv stand-in model; standalone as
``python -m benchmarks.eta_zero``, and run by ``python -m benchmarks``, where its conv rows give the
JAX loop's verdicts: ≤ 1.3× its floor at every η).
Importing this package imports neither torch nor jax: the CLI sets thread options first.
"""

__all__ = ["main"]


def main(argv=None) -> int:
    """The command line (``python -m benchmarks``); returns the exit status."""
    from .__main__ import main as _main

    return _main(argv)
