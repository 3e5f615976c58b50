"""The web page at /ui: static HTML, CSS and JavaScript from this package, served with a strict CSP.

The page is plain files (no build step, no CDN, no external fonts); it calls the public API from the
browser with the user's inference token, so it needs no route of its own beyond serving its files.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
UI_PATH = "/ui"

# No inline script or style, nothing from another origin; images may be blob: URLs (plots fetched with the
# token) and data: URLs (drawn canvases); the page may not be framed (clickjacking).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A deploy should show the page it ships, not a cached one from before.
    "Cache-Control": "no-cache",
}


class UiFiles(StaticFiles):
    """StaticFiles that put the page's security headers on every file it serves."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file (or index.html for the folder) with HEADERS added."""
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def install_ui(app: FastAPI) -> None:
    """Serve the page at /ui/ and redirect / and /ui to it."""

    async def to_page() -> RedirectResponse:
        return RedirectResponse(f"{UI_PATH}/", status_code=307)

    app.add_api_route("/", to_page, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route(UI_PATH, to_page, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(UI_PATH, UiFiles(directory=STATIC_DIR, html=True), name="ui")
