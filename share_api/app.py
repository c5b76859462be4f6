"""The share-request service (FastAPI): ``create_app(settings)``; ``streethub serve`` runs it
with uvicorn on 127.0.0.1."""

from __future__ import annotations

import importlib
from contextlib import asynccontextmanager

from fastapi import FastAPI

from catalog.settings import Settings, get_settings
from share_api.routes import ROUTERS
from share_api.service import Service

API_VERSION = "1.0.0"


def create_app(settings: Settings | None = None, *, service: Service | None = None) -> FastAPI:
    owned = service is None  # a service handed in is closed by whoever made it
    service = service or Service.open(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if owned:
            service.close()

    app = FastAPI(
        title="streethub share service (街道数据共享服务)",
        version=API_VERSION,
        description=(
            "Departments ask for data (request → review → grant → use → feedback) and read "
            "it through their grants; front ends read published marts with standing grants. "
            "Every call is authenticated and audited."
        ),
        lifespan=lifespan,
    )
    app.state.service = service
    for name in ROUTERS:
        module = importlib.import_module(f"share_api.routes.{name}")
        app.include_router(module.router)
    return app
