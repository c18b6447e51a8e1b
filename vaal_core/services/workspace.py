"""Where the app keeps things: the home folder, its recent projects, and
short project ids for URLs.

The home is $VAAL_HOME, or the folder holding vaal_core (so `make run` in a
checkout keeps projects/ and data/ beside the code, both git-ignored).

The browser never sends a path: the URL carries a project *id*, a short hash
of a path this server already knows (from the command line, the recent list
or the home's projects/ folder), so a crafted URL cannot make the app open
or serve anything else.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from vaal_core.files import write_json_atomic
from vaal_core.store import DATABASE_FILE, DB_NAME, is_project, now

RECENT_FILE = "recent.json"
MAX_RECENT = 12
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding vaal_core/


# A checkout keeps projects/ beside the code; an installed copy (`pip install .`) has
# no app.py above vaal_core (that folder is site-packages), so it keeps them here.
INSTALLED_HOME = Path("~/vaal-studio")


def home() -> Path:
    default = PACKAGE_ROOT if (PACKAGE_ROOT / "app.py").is_file() else INSTALLED_HOME
    return Path(os.environ.get("VAAL_HOME") or default).expanduser().resolve()


def projects_dir() -> Path:
    return home() / "projects"


def data_dir() -> Path:
    return home() / "data"


def demo_runs_dir() -> Path:
    return home() / "demo-runs"


def project_id(path: str | os.PathLike) -> str:
    return hashlib.sha1(str(Path(path).expanduser().resolve()).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class KnownProject:
    id: str
    path: Path
    name: str
    opened_at: str | None

    @property
    def exists(self) -> bool:
        return is_project(self.path)


def _read_recent() -> list[dict]:
    try:
        data = json.loads((home() / RECENT_FILE).read_text())
        return [d for d in data if isinstance(d, dict) and "path" in d]
    except (OSError, ValueError):
        return []  # a missing or damaged list is just an empty one


def remember(path: str | os.PathLike) -> KnownProject:
    """Put a project at the top of the recent list (atomically written)."""
    resolved = Path(path).expanduser().resolve()
    entries = [d for d in _read_recent() if Path(d["path"]) != resolved]
    entries.insert(0, {"path": str(resolved), "opened_at": now()})
    write_json_atomic(home() / RECENT_FILE, entries[:MAX_RECENT], indent=1)
    return KnownProject(project_id(resolved), resolved, resolved.name, entries[0]["opened_at"])


def known_projects() -> list[KnownProject]:
    """Recent projects first, then any other project in the home's
    projects/ folder; only folders that hold a project."""
    seen: set[Path] = set()
    out: list[KnownProject] = []
    for d in _read_recent():
        p = Path(d["path"])
        if p not in seen:
            seen.add(p)
            out.append(KnownProject(project_id(p), p, p.name, d.get("opened_at")))
    if projects_dir().is_dir():
        for db in sorted([*projects_dir().glob(f"*/{DB_NAME}"), *projects_dir().glob(f"*/{DATABASE_FILE}")]):
            p = db.parent.resolve()
            if p not in seen:
                seen.add(p)
                out.append(KnownProject(project_id(p), p, p.name, None))
    return [k for k in out if k.exists]


def find(project_id_: str) -> KnownProject | None:
    return next((k for k in known_projects() if k.id == project_id_), None)


def new_project_path(name: str) -> Path:
    """A project folder under the home for a user-typed name; the name must
    be one plain folder name (no separators, not hidden)."""
    from vaal_core.errors import BadInput

    clean = name.strip()
    if not clean or clean.startswith(".") or any(c in clean for c in "/\\\n\r\t\0"):
        raise BadInput(f"project name {name!r} is not usable: give one plain folder name, like 'birds-2026'")
    return projects_dir() / clean
