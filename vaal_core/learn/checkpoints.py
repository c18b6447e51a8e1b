"""Where a round's models live between rounds, so the next round can
warm-start from them: a project keeps them on disk (`checkpoints/<name>.pt`),
a simulation in memory, one store per (seed, sampler) run. The round
pipeline only sees this interface, so the app's rounds and the simulation
train through the same code.

A state is a dict of plain values and state dicts; each producer in
`pipeline` decides what goes in and checks, when loading, that it was made
by the same architecture (a mismatch means a fresh start).

Only a finished round's models warm-start the next one: a round saves into
its own staging folder (`checkpoints/.round-<id>/`), moved in once the round
is done; what a killed or failed round saved is never loaded (`settle`
clears it under the next round's lock). Every file is written whole or not
at all (a temporary sibling renamed over the target).
"""

from __future__ import annotations

import copy
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from vaal_core.errors import cannot_write
from vaal_core.files import write_atomic

STAGING = ".round-"  # checkpoints/.round-<id>/: what round <id> saved, until it is done


class ModelStore(Protocol):
    def load(self, name: str) -> dict[str, Any] | None:
        """The saved state `name`, or None (none saved, or a fresh start)."""

    def save(self, name: str, state: dict[str, Any]) -> None:
        ...

    def has(self, name: str) -> bool:
        """Whether `load(name)` would give a state."""


class CheckpointDir:
    """A project's checkpoints folder. With a `round_id`, saves go to that
    round's staging folder (loads see them first) until `commit()`. `fresh`
    ignores what is there (the user asked to train from scratch) but still
    saves, for the next round."""

    def __init__(self, folder: Path, fresh: bool = False, round_id: int | None = None):
        self.folder, self.fresh = Path(folder), fresh
        self.staging = None if round_id is None else self.folder / f"{STAGING}{int(round_id)}"

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.pt"

    def _source(self, name: str) -> Path | None:
        if self.staging is not None and (self.staging / f"{name}.pt").is_file():
            return self.staging / f"{name}.pt"  # saved earlier in this round
        return None if self.fresh or not self.path(name).is_file() else self.path(name)

    def has(self, name: str) -> bool:
        return self._source(name) is not None

    def load(self, name: str) -> dict[str, Any] | None:
        import torch

        source = self._source(name)
        # weights_only: a checkpoint file is data, never code to run
        return None if source is None else torch.load(source, map_location="cpu", weights_only=True)

    def save(self, name: str, state: dict[str, Any]) -> None:
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)  # in memory first: a full disk is then an OSError, not a torch error
        target = (self.staging or self.folder) / f"{name}.pt"
        try:
            write_atomic(target, buffer.getvalue())  # never a half-written checkpoint
        except OSError as err:
            words = cannot_write(err, self.folder)
            if words is None:
                raise
            raise words from err

    def commit(self) -> None:
        """Move this round's models in: call once the round is done."""
        if self.staging is None or not self.staging.is_dir():
            return
        for staged in sorted(self.staging.glob("*.pt")):
            os.replace(staged, self.folder / staged.name)
        shutil.rmtree(self.staging, ignore_errors=True)

    def discard(self) -> None:
        """Forget what this round saved (it failed or was cancelled)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def settle(folder: Path, finished: Callable[[int], bool]) -> None:
    """Tidy what killed rounds left in a checkpoints folder (call with the
    training lock held): the staged models of a round that finished (killed
    between its 'done' and the move) are moved in, oldest first; any other
    round's are removed, as are the temporaries of a write cut short."""
    folder = Path(folder)
    staged = [(int(d.name[len(STAGING):]), d) for d in folder.glob(f"{STAGING}*")
              if d.name[len(STAGING):].isdigit()]
    for round_id, path in sorted(staged):
        if finished(round_id):
            CheckpointDir(folder, round_id=round_id).commit()
        else:
            shutil.rmtree(path, ignore_errors=True)
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


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
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]  # torch's can run to 10 lines
        raise BadInput(f"cannot read pretrained weights {path}: not a PyTorch weights file ({why}); give "
                       f"{what} state dict (.pth)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BadInput(f"{path} is not a state dict of {what}")
    return state


class ReadOnly:
    """What the other ranks of a round on several processes see
    (learn/distributed.py): the same checkpoints rank 0 warm-starts from;
    only rank 0 saves."""

    def __init__(self, store: ModelStore):
        self._store = store

    def load(self, name: str) -> dict[str, Any] | None:
        return self._store.load(name)

    def save(self, name: str, state: dict[str, Any]) -> None:
        pass

    def has(self, name: str) -> bool:
        return self._store.has(name)

