"""netprobe: check that every workload on a live Kubernetes cluster reaches exactly what it should."""

from __future__ import annotations

__version__ = "0.1.0"

from .api import run
from .errors import NetprobeError
from .model import Cell, Expectation, Proof, RunResult, SubResult, Verdict
from .report import render
from .result import from_dict, load_result, to_dict, to_json
from .spec import Spec, load_spec, parse_spec

__all__ = [
    "Cell",
    "Expectation",
    "NetprobeError",
    "Proof",
    "RunResult",
    "Spec",
    "SubResult",
    "Verdict",
    "__version__",
    "from_dict",
    "load_result",
    "load_spec",
    "parse_spec",
    "render",
    "run",
    "to_dict",
    "to_json",
]
