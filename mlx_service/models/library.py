"""mlx-embeddings' layer modules, without what its package imports for other jobs.

`import mlx_embeddings.models.bert` first runs mlx_embeddings/__init__.py, which imports the
library's converter and loader, and through them transformers, huggingface_hub and mlx-vlm:
1.4-1.5 s of a cold start (2 shared Zen 3 cores) for code the service never calls. The layer
modules themselves import only MLX. `layers(name)` imports one of them under a package module
whose __init__ has not run yet; the package's own names (convert, load, ...) stay reachable:
the first one asked for runs the real __init__ (PEP 562's module __getattr__).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

PACKAGE = "mlx_embeddings"


def _package_before_init() -> ModuleType:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None:
        raise ImportError(f"{PACKAGE} is not installed (inv mlx install)")
    package = importlib.util.module_from_spec(spec)  # __path__ set, __init__ not run

    def finish_init(name: str):
        if name.startswith("__"):  # the import system's own probes (__all__, ...)
            raise AttributeError(name)
        del package.__getattr__
        spec.loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = finish_init
    return package


def layers(name: str) -> ModuleType:
    """mlx_embeddings.models.<name>: the architecture's MLX layers and ModelArgs."""
    if PACKAGE not in sys.modules:
        sys.modules[PACKAGE] = _package_before_init()
    return importlib.import_module(f"{PACKAGE}.models.{name}")
