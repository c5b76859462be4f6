"""What every request handler needs, made once per server process: :class:`Service`.

``create_app`` builds one and keeps it on ``app.state.service``; handlers get it with the
``get_service`` dependency (``share_api.deps``). Tests build one for a copied home.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from catalog.loader import load_catalogue
from catalog.model import Catalogue
from catalog.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from masking.keys import KeyRing
    from share_api.audit import Auditor

T = TypeVar("T")


@dataclass
class Service:
    settings: Settings
    engine: Engine
    extra: dict[str, Any] = field(default_factory=dict)  # what modules keep: see kept()
    _keeping: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _making: dict[str, threading.Lock] = field(default_factory=dict, repr=False)

    def kept(self, key: str, make: Callable[[], T]) -> T:
        """What a module keeps for the life of this service (a cache, an index, a reader),
        made by ``make`` the first time it is asked for, once even when threads ask at once;
        ``key`` is ``<module>.<name>``. :meth:`close` closes what has a ``close()``.

        Each key is made under a lock of its own: a maker may ask for another kept thing
        (the catalogue's lookup table is made from its entries), and a slow one (the search
        index) does not hold up the others."""
        found = self.extra.get(key)
        if found is None:
            with self._keeping:
                making = self._making.setdefault(key, threading.Lock())
            with making:
                found = self.extra.get(key)
                if found is None:
                    found = self.extra[key] = make()
        return found

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
        # newest first: a kept thing made while another was being made (the lake clock,
        # whose first tick makes the lake reader) may use it until it is closed itself
        for held in reversed(list(self.extra.values())):
            closer = getattr(held, "close", None)
            if callable(closer):
                closer()
        self.extra.clear()
        if "audit" in self.__dict__:
            self.audit.close()
        self.engine.dispose()
