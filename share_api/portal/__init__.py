"""The web portal (门户) for departments' staff, communities and street leaders, served by
the share service at ``/portal`` (same process, same people, same audit).

- :mod:`share_api.portal.accounts`: personal passwords (scrypt) for the portal's sign-in;
- :mod:`share_api.portal.web`: the session (a short-lived token of the person, in an
  HttpOnly cookie), the CSRF check of every form, the page layout and its navigation;
- ``pages_*.py``: one module a concern, each with a ``router`` — found by :func:`mount`,
  so a new page module needs no registration elsewhere;
- ``templates/``: Jinja2 pages, Chinese text, large type and high contrast (适老化),
  usable by keyboard alone; ``static/``: our stylesheet and the vendored libraries
  (``static/vendor/VENDORED.md``: from the npm registry, versions and SHA-256) — nothing
  is loaded from outside the service.

Pages call the same functions as the API's routes (``share_api.requests``, ``.grants`` …)
with the signed-in :class:`~share_api.deps.Principal`: one rule, two front doors.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("static")


def page_modules() -> list[str]:
    """The names of the portal's page modules (``pages_*``), sorted."""
    return sorted(
        f"{__name__}.{m.name}"
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("pages_")
    )


def mount(app: FastAPI) -> None:
    """The portal's pages, its sign-in and its static files on ``app``."""
    from share_api.portal import web

    web.install(app)
    app.include_router(web.router)
    for name in page_modules():
        app.include_router(importlib.import_module(name).router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
