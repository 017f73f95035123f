"""What machine a benchmark ran on, recorded beside its results."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch


def machine(threads: int) -> dict[str, Any]:
    """CPU model, core and thread counts, versions and the load average at the start."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
