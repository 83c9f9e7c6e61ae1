"""The kiosk web app: public HTML pages and their static files, from the bundled ``enrollment/``.

``/kiosk/enroll``, ``/kiosk/checkout`` and ``/kiosk/unenroll`` are plain HTML pages (no build
step, ES modules) that call the JSON API with the API key they read from the URL *fragment*
(``#key=...``). The fragment never reaches the server, so the pages themselves need no auth and
the key appears in no request line or access log. ``/kiosk/static/<file>`` serves their CSS,
JavaScript and images.

Every kiosk response carries a strict Content-Security-Policy (scripts, styles and API calls
from this origin only; ``form-action 'none'`` so a form can never be submitted as a URL even if
scripts fail), ``Referrer-Policy: no-referrer`` and ``Permissions-Policy`` allowing the camera
for this origin only. Pages are ``no-store``; static files are revalidated (``no-cache``).

Use :data:`router` (``app.include_router(router)``), :func:`make_router` for another folder, or
:func:`mount_kiosk` to do it on an app.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

from palmpay import assets

__all__ = ["KIOSK_DIR", "KIOSK_PAGES", "SECURITY_HEADERS", "make_router", "mount_kiosk", "router"]

log = logging.getLogger(__name__)

#: The web app's folder, ``enrollment`` bundled with palmpay (pages at its top, assets under
#: ``static/``); see :mod:`palmpay.assets`.
KIOSK_DIR = assets.path("enrollment")

#: URL name → HTML file of each page.
KIOSK_PAGES = {
    "enroll": "enroll.html",
    "checkout": "checkout.html",
    "unenroll": "unenroll.html",
}

_STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}

_CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob: mediastream:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

#: Headers on every kiosk response.
SECURITY_HEADERS = {
    "Content-Security-Policy": _CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def make_router(directory: str | Path | None = None) -> APIRouter:
    """Routes serving the kiosk app from ``directory`` (default :data:`KIOSK_DIR`)."""
    root = Path(directory).resolve() if directory is not None else KIOSK_DIR
    static_root = root / "static"
    if not root.is_dir():
        log.warning("kiosk app folder %s is missing: /kiosk pages will answer 404", root)
    api = APIRouter(prefix="/kiosk", tags=["kiosk"], include_in_schema=False)

    def page(name: str) -> FileResponse:
        path = root / KIOSK_PAGES[name]
        if not path.is_file():
            raise HTTPException(status_code=404, detail=f"kiosk page {name} is not installed")
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
        return FileResponse(path, media_type="text/html; charset=utf-8", headers=headers)

    @api.get("", response_class=RedirectResponse)
    @api.get("/", response_class=RedirectResponse)
    def kiosk_home() -> RedirectResponse:
        # A redirect keeps the URL fragment (#key=...) in every browser.
        return RedirectResponse("/kiosk/enroll", status_code=307)

    @api.get("/enroll", response_class=FileResponse)
    def enroll_page() -> FileResponse:
        return page("enroll")

    @api.get("/checkout", response_class=FileResponse)
    def checkout_page() -> FileResponse:
        return page("checkout")

    @api.get("/unenroll", response_class=FileResponse)
    def unenroll_page() -> FileResponse:
        return page("unenroll")

    @api.get("/static/{name:path}", response_class=FileResponse)
    def static_file(name: str) -> FileResponse:
        path = (static_root / name).resolve()
        media_type = _STATIC_TYPES.get(path.suffix.lower())
        if (
            media_type is None
            or not path.is_relative_to(static_root)
            or not path.is_file()
        ):
            raise HTTPException(status_code=404, detail="no such kiosk file")
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return FileResponse(path, media_type=media_type, headers=headers)

    return api


#: The kiosk routes for the app's default folder.
router = make_router()


def mount_kiosk(app: FastAPI, directory: str | Path | None = None) -> None:
    """Add the kiosk pages and static files to ``app``."""
    app.include_router(router if directory is None else make_router(directory))
