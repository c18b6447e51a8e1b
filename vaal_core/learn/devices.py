"""Which device trains: `auto` picks cuda, then mps, then cpu; an explicit
device that is not there is an error rather than a silent fallback.

Only `resolve_device` and `probe` import PyTorch. The app server never
does: it asks a short-lived `python -m vaal_core devices --json` process
once (`probe_in_subprocess`) and describes devices from that answer, so
serving a page never loads PyTorch's hundreds of megabytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaal_core.errors import BadInput

if TYPE_CHECKING:
    import torch

DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


def check_device_name(name: str | None) -> str:
    name = (name or "auto").lower()
    if name not in DEVICE_NAMES:
        raise BadInput(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    return name


def check_precision(precision: str | None, device: str | None) -> str:
    """A precision name the round can use on `device` (torch-free, for the
    app's early check): auto, fp32, bf16 or fp16 (fp16 only on a GPU)."""
    from vaal_core.config import PRECISIONS

    name = (precision or "auto").lower()
    if name not in PRECISIONS:
        raise BadInput(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)} (auto: bf16 or fp16 on a "
                       "CUDA GPU, fp32 on a CPU)")
    if name == "fp16" and (device or "auto").lower() == "cpu":
        raise BadInput("precision fp16 needs a GPU; on a CPU use --precision bf16 or fp32 (or auto)")
    return name


def probe() -> dict[str, Any]:
    """What this machine offers PyTorch: {"cuda": [GPU names], "mps": bool,
    "cpu_cores": n, "torch": version}."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    return {"cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available() else [],
            "mps": bool(mps and mps.is_available()), "cpu_cores": os.cpu_count() or 1,
            "torch": torch.__version__}


def probe_in_subprocess(timeout_s: float = 120.0) -> dict[str, Any]:
    """`probe()` run in a separate Python process, so the caller never
    imports PyTorch. A probe that fails says so in "error" and offers the
    CPU only."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    try:
        out = subprocess.run([sys.executable, "-m", "vaal_core", "devices", "--json"], capture_output=True,
                             text=True, timeout=timeout_s, cwd=root, env=env, check=True)
        found = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        return {"cuda": [], "mps": False, "cpu_cores": os.cpu_count() or 1, "torch": None,
                "error": f"could not ask PyTorch which devices there are: {err}"}
    return found


def pick(name: str | None, found: dict[str, Any]) -> str:
    """The device `name` resolves to on a machine described by `found`."""
    name = check_device_name(name)
    if name == "auto":
        return "cuda" if found["cuda"] else "mps" if found["mps"] else "cpu"
    if name == "cuda" and not found["cuda"]:
        raise BadInput("--device cuda was asked for but no CUDA GPU is available; use --device auto or cpu")
    if name == "mps" and not found["mps"]:
        raise BadInput("--device mps was asked for but Apple's MPS is not available; use --device auto or cpu")
    return name


def describe(name: str | None, found: dict[str, Any]) -> str:
    """What `name` resolves to, in words for the Train page, e.g.
    'cuda (NVIDIA H100 80GB HBM3)' or 'cpu (2 cores, no GPU found)'."""
    device = pick(name, found)
    if device == "cuda":
        gpus = found["cuda"]
        return f"cuda ({gpus[0]}{f', 1 of {len(gpus)} GPUs' if len(gpus) > 1 else ''})"
    if device == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({found['cpu_cores']} cores{', no GPU found' if (name or 'auto') == 'auto' else ''})"


def resolve_device(name: str | None = "auto") -> "torch.device":
    import torch

    return torch.device(pick(name, probe()))
