"""What every request handler needs, made once per server process: :class:`Service`.

``create_app`` builds one and keeps it on ``app.state.service``; handlers get it with the
``get_service`` dependency (``share_api.deps``). Tests build one for a copied home.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from catalog.loader import load_catalogue
from catalog.model import Catalogue
from catalog.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from masking.keys import KeyRing
    from share_api.audit import Auditor


@dataclass
class Service:
    settings: Settings
    engine: Engine
    extra: dict = field(default_factory=dict)  # per-module caches, keyed by module name

    @cached_property
    def catalogue(self) -> Catalogue:
        return load_catalogue(self.settings.catalog_dir)

    @cached_property
    def keyring(self) -> KeyRing:
        from masking.keys import KeyRing

        return KeyRing.from_settings(self.settings)

    @cached_property
    def audit(self) -> Auditor:
        from share_api.audit import Auditor

        return Auditor.for_service(self)

    @classmethod
    def open(cls, settings: Settings, db_url: str | None = None) -> Service:
        from share_api.db import create_schema, engine_for

        settings.ensure_dirs()
        engine = engine_for(settings, db_url)
        create_schema(engine)
        return cls(settings=settings, engine=engine)

    def close(self) -> None:
        if "audit" in self.__dict__:
            self.audit.close()
        self.engine.dispose()
