"""netprobe: check that every workload on a live Kubernetes cluster reaches exactly what it should."""

from __future__ import annotations

__version__ = "0.1.0"

from .api import run
from .errors import NetprobeError
from .model import Cell, Expectation, RunResult, Verdict
from .spec import Spec, load_spec, parse_spec

__all__ = [
    "Cell",
    "Expectation",
    "NetprobeError",
    "RunResult",
    "Spec",
    "Verdict",
    "__version__",
    "load_spec",
    "parse_spec",
    "run",
]
