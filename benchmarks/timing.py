"""Timing and memory measurement: interleaved repeats, warm-up, median/min/max.

Contenders of one workload are timed round-robin (the order rotates every round), so drift on a
shared machine hits all of them alike and ratios stay meaningful even when absolute times wobble.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
import tracemalloc
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["Stats", "measure", "numpy_peak_bytes", "torch_graph_count", "torch_peak_bytes"]


class Stats(dict):
    """{"median", "min", "max"} of per-loop seconds, plus the sample count and the inner count."""


def _summarise(samples: list[float], inner: int) -> Stats:
    return Stats(
        median=statistics.median(samples),
        min=min(samples),
        max=max(samples),
        repeats=len(samples),
        inner=inner,
    )


def measure(
    loops: dict[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int,
    min_sample_s: float,
    max_inner: int = 1000,
) -> dict[str, Stats]:
    """Seconds per call of every loop, measured side by side.

    Each loop is warmed up ``warmup`` times, then the number of calls per sample (``inner``) is
    chosen so that one sample lasts at least ``min_sample_s``; ``repeats`` samples are then taken
    round-robin. The garbage collector is off while timing (as in ``timeit``).
    """
    inner: dict[str, int] = {}
    for name, fn in loops.items():
        t0 = time.perf_counter()
        for _ in range(max(1, warmup)):
            fn()
        once = (time.perf_counter() - t0) / max(1, warmup)
        inner[name] = max(1, min(max_inner, math.ceil(min_sample_s / max(once, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in loops}
    names = list(loops)
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                fn, n = loops[name], inner[name]
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                samples[name].append((time.perf_counter() - t0) / n)
    finally:
        if was_enabled:
            gc.enable()
    return {name: _summarise(samples[name], inner[name]) for name in names}


def numpy_peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated above the starting point while ``fn`` runs (tracemalloc; NumPy
    reports its array buffers to it)."""
    gc.collect()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
        del result
    finally:
        if started:
            tracemalloc.stop()
    return max(0, int(peak))


def torch_peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes of tensor storage allocated while ``fn`` runs (torch eager, any device).

    torch keeps no allocator statistics on the CPU, so this counts what the operators allocate:
    a ``TorchDispatchMode`` sees every operator's outputs; an output whose storage is not one of
    the operator's inputs' storages is a fresh allocation, released when the tensor is collected.
    Views and in-place results add nothing. (A view outliving its base is released early, so this
    can only under-count; the loops measured here keep no such views.)
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class _Tracker(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.current = 0
            self.peak = 0

        def _release(self, nbytes: int) -> None:
            self.current -= nbytes

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {
                t.untyped_storage().data_ptr()
                for t in tree_leaves((args, kwargs))
                if isinstance(t, torch.Tensor)
            }
            for t in tree_leaves(out):
                if not isinstance(t, torch.Tensor):
                    continue
                storage = t.untyped_storage()
                nbytes = storage.nbytes()
                if nbytes == 0 or storage.data_ptr() in inputs:
                    continue
                self.current += nbytes
                self.peak = max(self.peak, self.current)
                weakref.finalize(t, self._release, nbytes)
            return out

    gc.collect()
    tracker = _Tracker()
    with tracker:
        result = fn()
    del result
    return int(tracker.peak)


def torch_graph_count() -> int:
    """Graphs torch.compile has compiled so far in this process (one more: a recompile)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
