"""VAAL Studio's engine: projects, ingest, VAAL rounds, samplers, simulation.

Importable without Streamlit. Heavy modules (torch, umap) are imported by the
submodules that need them, so `import vaal_core` and the CLI start fast.
"""

__version__ = "0.1.0"
