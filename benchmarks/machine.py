"""A description of the machine and software a run happened on (for the JSON and the docs)."""

from __future__ import annotations

import importlib
import os
import platform
from typing import Any

__all__ = ["describe_machine", "load_average"]


def _cpuinfo() -> dict[str, Any]:
    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "flags": []}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return info
    logical = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            logical += 1
        elif key == "model name" and "model" not in info.get("_seen", ()):
            info["model"] = value
            info["_seen"] = ("model",)
        elif key == "flags" and not info["flags"]:
            wanted = ("avx2", "avx512f", "fma", "amx_tile")
            info["flags"] = [f for f in wanted if f in value.split()]
        elif key == "cpu MHz" and "mhz" not in info:
            info["mhz"] = float(value)
    info.pop("_seen", None)
    info["logical_cpus_in_cpuinfo"] = logical
    return info


def _version(name: str) -> str | None:
    try:
        return getattr(importlib.import_module(name), "__version__", "unknown")
    except Exception:
        return None


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def describe_machine(threads: int | None = None) -> dict[str, Any]:
    cpu = _cpuinfo()
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {
        name: _version(name)
        for name in ("numpy", "torch", "jax", "jaxlib", "diffusers", "array_api_compat")
    }
    torch_threads = None
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except Exception:
        pass
    return {
        "cpu_model": cpu.get("model"),
        "cpu_flags": cpu.get("flags"),
        "cpu_mhz": cpu.get("mhz"),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "torch_threads": torch_threads if threads is None else threads,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average": load_average(),
    }
