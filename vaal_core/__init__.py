"""VAAL Studio's engine: projects, ingest, VAAL rounds, samplers, simulation.

Importable without Streamlit. Heavy modules (torch, umap, pandas) are
imported by the submodules that need them, so `import vaal_core` and the CLI
start fast.

The Python API (`vaal_core.api`) is here at the top level:

    >>> import vaal_core as vc
    >>> p = vc.create_project("pets", images="~/pets", classes=["cat", "dog"])
    >>> p.round(sampler="vaal", budget=50, fast=True)
    >>> p.queue(limit=20)
    >>> vc.Labeler(p)         # in a notebook: label the queue with the keys
    >>> vc.LatentMap(p)       # the latent map; .selection is what you lassoed
"""

from vaal_core.errors import (
    BadImageFolder,
    BadInput,
    BudgetTooLarge,
    LabelConflict,
    ProjectExists,
    ProjectNotFound,
    UnknownClass,
    UnknownItem,
    UnknownSampler,
    VaalError,
    WorkerBusy,
)

__version__ = "0.1.0"

_API = ("ProjectHandle", "Simulation", "create_project", "open_project", "simulate")
_WIDGETS = {"Labeler": "vaal_core.notebook.labeler", "LatentMap": "vaal_core.notebook.latent_map"}

__all__ = ["ProjectHandle", "Simulation", "create_project", "open_project", "simulate", "Labeler", "LatentMap",
           "BadImageFolder", "BadInput", "BudgetTooLarge", "LabelConflict", "ProjectExists", "ProjectNotFound",
           "UnknownClass", "UnknownItem", "UnknownSampler", "VaalError", "WorkerBusy"]


def __getattr__(name: str):
    # PEP 562: the API module is loaded on first use, not by `import vaal_core`
    # (which the CLI and every worker process pay for).
    if name in _API:
        from vaal_core import api

        return getattr(api, name)
    if name in _WIDGETS:
        import importlib

        try:
            return getattr(importlib.import_module(_WIDGETS[name]), name)
        except ModuleNotFoundError as err:
            if err.name not in ("anywidget", "jscatter", "ipywidgets", "traitlets"):
                raise
            raise ImportError(f"vc.{name} needs the notebook extra ({err.name} is not installed): "
                              'pip install "vaal-studio[notebook]", or pip install -r requirements-notebook.txt '
                              "in a checkout") from None
    raise AttributeError(f"module 'vaal_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API, *_WIDGETS})
