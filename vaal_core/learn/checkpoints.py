"""Where a round's models live between rounds, so the next round can
warm-start from them: a project keeps them on disk (`checkpoints/<name>.pt`),
a simulation in memory, one store per (seed, sampler) run. The round
pipeline only sees this interface, so the app's rounds and the simulation
train through the same code.

A state is a dict of plain values and state dicts; each producer in
`pipeline` decides what goes in and checks, when loading, that it was made
by the same architecture (a mismatch means a fresh start).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Protocol

from vaal_core.files import atomic_write


class ModelStore(Protocol):
    def load(self, name: str) -> dict[str, Any] | None:
        """The saved state `name`, or None (none saved, or a fresh start)."""

    def save(self, name: str, state: dict[str, Any]) -> None:
        ...

    def has(self, name: str) -> bool:
        """Whether `load(name)` would give a state."""


class CheckpointDir:
    """A project's checkpoints folder. `fresh` ignores what is there (the
    user asked to train from scratch) but still saves, for the next round."""

    def __init__(self, folder: Path, fresh: bool = False):
        self.folder, self.fresh = Path(folder), fresh

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.pt"

    def has(self, name: str) -> bool:
        return not self.fresh and self.path(name).is_file()

    def load(self, name: str) -> dict[str, Any] | None:
        import torch

        if not self.has(name):
            return None
        # weights_only: a checkpoint file is data, never code to run
        return torch.load(self.path(name), map_location="cpu", weights_only=True)

    def save(self, name: str, state: dict[str, Any]) -> None:
        import torch

        with atomic_write(self.path(name)) as fh:  # never a half-written checkpoint
            torch.save(state, fh)


class InMemory:
    """A simulation run's models. States are copied in and out, so the
    models a round goes on training never change what was saved."""

    def __init__(self) -> None:
        self._states: dict[str, dict[str, Any]] = {}

    def load(self, name: str) -> dict[str, Any] | None:
        state = self._states.get(name)
        return None if state is None else copy.deepcopy(state)

    def save(self, name: str, state: dict[str, Any]) -> None:
        self._states[name] = copy.deepcopy(state)

    def has(self, name: str) -> bool:
        return name in self._states


def read_user_weights(path: Path, what: str) -> dict[str, Any]:
    """A state dict from a user's weights file (`--pretrained`): a bare one
    or one under "state_dict" (as training scripts often save them), loaded
    with weights_only (a file never runs code). Anything else raises
    BadInput naming the file and `what` it should hold."""
    import torch

    from vaal_core.errors import BadInput

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise BadInput(f"cannot read pretrained weights {path}: {err}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BadInput(f"{path} is not a state dict of {what}")
    return state
