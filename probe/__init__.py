"""netprobe: check that every workload on a live Kubernetes cluster reaches exactly what it should."""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# The public names are imported on first use (PEP 562), not with the package: every `import probe.x`
# (the CLI, the agent's tests, the pytest plugin) would otherwise load the runner, the renderers and
# their dependencies first, whether it needs them or not.
_LAZY = {
    "run": "api",
    "NetprobeError": "errors",
    **dict.fromkeys(("Cell", "Expectation", "Proof", "RunResult", "SubResult", "Verdict"), "model"),
    "render": "report",
    **dict.fromkeys(("from_dict", "load_result", "to_dict", "to_json"), "result"),
    **dict.fromkeys(("Spec", "load_spec", "parse_spec"), "spec"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):
        # `probe.runner.finish_cleanups()` after a bare `import probe` (README) worked while the
        # package imported its submodules eagerly; it still does.
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
