"""The HTTP routes the app serves beside Streamlit's (app.py passes
`ROUTES` to `st.App`): what the Explore page's map fetches outside the
websocket, so a 50,000-point map and its thumbnails never go through a
script run.

    GET /vaal/map/<project id>/<round id>      every point of a round's map
                                               (maps.geometry, gzipped binary)
    GET /vaal/thumb/<project id>/<item id>     one image's thumbnail (JPEG, from
                                               the decoded cache)
    GET /vaal/js/latent_map.js                 the map's JavaScript (built by `make`
                                               from frontend/latent_map)
    GET /explore                               Streamlit's own page, with the scripts
                                               the map needs asked for in its head
                                               (`explore_page`)

A project is named by its id (the one in ?project=), an image by its item id:
nothing the browser sends is used as a path. They sit behind the same Host
check as the rest of the app (`HostCheck`, app.py). A map is made once per
state of the store (labels, queue, pushed images) and kept; its URL carries
that state (?v=), so the browser caches each version and asks again only
when it changed.
"""

from __future__ import annotations

import functools
import html
import json
import re
import threading
from collections import OrderedDict
from pathlib import Path

import streamlit
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from vaal_core.data.thumbs import Thumbnails
from vaal_core.errors import VaalError
from vaal_core.maps import cache as maps
from vaal_core.maps import geometry
from vaal_core.services import workspace
from vaal_core.store import Project, store_file

BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "build" / "latent_map.js"
FOREVER = "private, max-age=31536000, immutable"  # a URL that names its version never changes
STREAMLIT_PAGE = Path(streamlit.__file__).parent / "static" / "index.html"  # what Streamlit serves for every page
# Streamlit fetches a widget's code the first time a page draws one, after the
# first script run: on Explore its Round box, its Colour-by buttons and the
# map's component frame (file names as this pinned Streamlit builds them).
EXPLORE_WIDGETS = ("Selectbox", "ButtonGroup", "BidiComponent")
_IMPORT = re.compile(r'(?:from|import)\s*"\./([\w.\-]+\.js)"')

_lock = threading.Lock()  # one store connection per project, shared by the server's threads
_projects: dict[str, tuple[Project, Thumbnails]] = {}
_maps: OrderedDict[tuple, bytes] = OrderedDict()


def _project(project_id: str) -> tuple[Project, Thumbnails] | None:
    known = workspace.find(project_id)
    if known is None:
        return None
    try:  # a project made again at the same path is another database: another handle
        key = f"{known.path}|{store_file(known.path).stat().st_ino}"
    except OSError:
        return None
    if key not in _projects:
        project = Project.open(known.path)
        _projects[key] = (project, Thumbnails(project))
    return _projects[key]


def state_version(project: Project) -> str:
    """Changes whenever what the map draws changes: labels (and undo), the
    current round, the images pushed to the front. The page puts it in the
    map's URL."""
    top, undone = project.label_version()
    return f"{top}.{undone}.{project.current_round_id() or 0}.{len(project.priority_ids())}"


def bundle_url() -> str:
    """The map's script, named by its build (the browser keeps each build)."""
    try:
        version = str(int(BUNDLE.stat().st_mtime))
    except OSError:
        version = "missing"
    return f"/vaal/js/latent_map.js?v={version}"


def map_url(project_id: str, round_id: int, project: Project) -> str:
    """A round's points as they are now: the URL changes with the store's state."""
    return f"/vaal/map/{project_id}/{round_id}?v={state_version(project)}"


def _missing(what: str) -> PlainTextResponse:
    return PlainTextResponse(what, status_code=404, headers={"Cache-Control": "no-store"})


def _payload(project: Project, round_id: int) -> tuple[bytes, str]:
    """(gzipped payload, state version) of a round's map, made once per state
    of the store. Call under `_lock`."""
    version = state_version(project)
    key = (str(project.root), round_id, version)
    body = _maps.get(key)
    if body is None:
        body = geometry.compressed(geometry.geometry(project, maps.round_projection(project, round_id)))
        _maps[key] = body
        while len(_maps) > 8:
            _maps.popitem(last=False)
    return body, version


def warm(project_id: str, round_id: int) -> None:
    """Make a round's payload in the background (the Explore page calls this
    first thing), so that it is ready when the browser, having loaded the
    page and the map's script, asks for it: at 50,000 images making it takes
    a good part of a second."""
    def run() -> None:
        with _lock:
            found = _project(project_id)
            if found is not None and maps.has_projection(found[0], round_id):
                try:
                    _payload(found[0], round_id)
                except VaalError:
                    pass  # the request that follows says what is wrong
    threading.Thread(target=run, name="vaal-map-warm", daemon=True).start()


def signed_out(request: Request) -> Response | None:
    """On a server configured for sign-in (views/team.py), a request without
    Streamlit's signed identity cookie is refused: the images and the map are
    no more public than the pages."""
    from streamlit.auth_util import get_secrets_auth_section
    # Streamlit's own reading of its signed cookie (the Streamlit version is pinned: requirements.txt)
    from streamlit.web.server.starlette.starlette_auth_routes import _get_signed_cookie_from_request
    from streamlit.web.server.starlette.starlette_server_config import USER_COOKIE_NAME

    if not get_secrets_auth_section():
        return None
    if _get_signed_cookie_from_request(request, USER_COOKIE_NAME) is None:
        return PlainTextResponse("sign in first", status_code=401, headers={"Cache-Control": "no-store"})
    return None


def map_points(request: Request) -> Response:
    refused = signed_out(request)
    if refused is not None:
        return refused
    try:
        round_id = int(request.path_params["round_id"])
    except ValueError:
        return _missing("no such round")
    with _lock:
        found = _project(request.path_params["project_id"])
        if found is None:
            return _missing("no such project on this server")
        project = found[0]
        try:
            if not maps.has_projection(project, round_id):
                return _missing(f"round {round_id} has no map yet: open it on the Explore page")
            body, version = _payload(project, round_id)
        except VaalError as err:
            return _missing(str(err))
    cache = FOREVER if request.query_params.get("v") == version else "no-store"
    return Response(body, media_type="application/octet-stream",
                    headers={"Content-Encoding": "gzip", "Cache-Control": cache})


def thumbnail(request: Request) -> Response:
    refused = signed_out(request)
    if refused is not None:
        return refused
    try:
        item_id = int(request.path_params["item_id"])
    except ValueError:
        return _missing("no such image")
    with _lock:
        found = _project(request.path_params["project_id"])
    if found is None:
        return _missing("no such project on this server")
    try:
        data = found[1].jpeg(item_id)
    except VaalError as err:
        return _missing(str(err))
    if data is None:
        return _missing("no such image in this project")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


def bundle(request: Request) -> Response:
    if not BUNDLE.is_file():
        return _missing("the map's JavaScript is not built: run `make` (it builds frontend/latent_map)")
    return FileResponse(BUNDLE, media_type="text/javascript",
                        headers={"Cache-Control": FOREVER if request.query_params.get("v") else "no-cache"})


@functools.cache
def _streamlit_page() -> tuple[str, tuple[str, ...]]:
    """Streamlit's page, and the script files of EXPLORE_WIDGETS with all
    they import that the page does not already ask for (none if this
    Streamlit names its files otherwise)."""
    page = STREAMLIT_PAGE.read_text(encoding="utf-8")
    scripts = STREAMLIT_PAGE.parent / "static" / "js"
    known = set(re.findall(r"\./static/js/([\w.\-]+\.js)", page))
    todo = [f.name for widget in EXPLORE_WIDGETS for f in scripts.glob(f"{widget}.*.js")]
    found: set[str] = set()
    while todo:
        name = todo.pop()
        if name in found or name in known:
            continue
        try:
            text = (scripts / name).read_text(encoding="utf-8")
        except OSError:
            continue
        found.add(name)
        todo += _IMPORT.findall(text)
    return page, tuple(sorted(found))


def explore_page(request: Request) -> Response:
    """Streamlit's page for /explore, with the scripts the map needs asked
    for in its head (Streamlit's widgets' and the map's own): the browser
    fetches and compiles them while Streamlit's own scripts boot, instead of
    one after another after the page's first script run, and sets the map's
    WebGL up in the first idle moment. Not the points: making them then
    (`warm`, at 50,000 images) held up that first script run more than
    fetching them later costs (bench/first_visit.py). Only a load of the
    address itself comes here; moving between pages inside the app loads
    no page."""
    page, widgets = _streamlit_page()
    hints = [f'<link rel="modulepreload" crossorigin href="./static/js/{name}">' for name in widgets]
    if BUNDLE.is_file():
        bundle = bundle_url()
        hints.append(f'<link rel="modulepreload" crossorigin href="{html.escape(bundle)}">')
        # the map's WebGL set up ahead (map.js, prepare) when the tab is first idle: while Streamlit waits
        # for its server, not while it draws (called at once, it held the page's title back)
        hints.append(f'<script type="module">const prepare = () => import({json.dumps(bundle)})'
                     '.then((m) => m.prepare()); (window.requestIdleCallback || setTimeout)(prepare, {timeout: 1500});'
                     '</script>')
    page = page.replace("</head>", "\n".join(hints) + "\n</head>", 1)
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


ROUTES = [
    Route("/vaal/map/{project_id}/{round_id}", map_points),
    Route("/vaal/thumb/{project_id}/{item_id}", thumbnail),
    Route("/vaal/js/latent_map.js", bundle),
    # Streamlit serves its page for any other address; only where it is there to be amended
    *([Route("/explore", explore_page)] if STREAMLIT_PAGE.is_file() else []),
]
