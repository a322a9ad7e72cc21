"""What the browser loads besides the pages: the page's stylesheet and the API docs.

``/docs`` is Swagger UI from carepath's own copy (the ``swagger-ui-bundle-v2`` package), with
its start-up script a file of ours (``static/docs.js``), so the docs load nothing from
another site and hold to the same Content-Security-Policy as the pages. ReDoc is not
served. Only the files named here are served, each with a one-hour ``Cache-Control``
(the security headers' ``no-store`` is for answers that carry patient data).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path

from api.security import ASSETS_PREFIX

router = APIRouter(include_in_schema=False)
OWN = Path(__file__).parent / "static"
SWAGGER_UI = Path(swagger_ui_path)
FILES = {
    "carepath.css": OWN / "carepath.css",
    "docs.js": OWN / "docs.js",
    "swagger-ui/swagger-ui.css": SWAGGER_UI / "swagger-ui.css",
    "swagger-ui/swagger-ui-bundle.js": SWAGGER_UI / "swagger-ui-bundle.js",
}
MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
CACHE = "public, max-age=3600"
DOCS_PAGE = (OWN / "docs.html").read_text(encoding="utf-8")


@router.get("/docs", response_class=HTMLResponse)
def docs() -> Response:
    return HTMLResponse(DOCS_PAGE)


@router.get(ASSETS_PREFIX + "{name:path}")
def asset(name: str) -> Response:
    path = FILES.get(name)
    if path is None:
        raise HTTPException(404, f"no asset {name!r}")
    media_type = MEDIA_TYPES[path.suffix]
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": CACHE})
