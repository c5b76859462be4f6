"""Modules loaded on their first attribute use rather than when a library imports them.

Great Expectations imports, with every expectation it ships, modules that only its other
expectations call, inside their functions (``quality/expectations.py`` lists them). A
deferred module is a stand-in under the module's name in ``sys.modules``: an ``import`` of
it binds the stand-in and runs nothing; the first attribute read (``alt.Chart``,
``jsonschema.validate``, a submodule import, which reads ``__path__``) imports the real
module, which takes the stand-in's place, and every read through the stand-in is answered
by the real module from then on.

``importlib.util.LazyLoader`` does not do for a top-level module: an ``import`` statement
reads the module's ``__spec__``, which executes it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

_STAND_INS: dict[str, types.ModuleType] = {}  # name → its stand-in


def defer(name: str) -> None:
    """Put a stand-in for module ``name`` in ``sys.modules`` (its parent, if any, imported
    and given it as an attribute, as an import binds a submodule), unless ``name`` is
    imported already or not installed."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)  # imports the parent package, if any
    if spec is None:
        return
    stand_in = types.ModuleType(name, f"{name}, imported on first use")
    # what code that walks sys.modules reads (a file watcher, a traceback) is answered here
    stand_in.__spec__, stand_in.__loader__, stand_in.__file__ = spec, spec.loader, spec.origin

    def __getattr__(attr: str) -> Any:  # PEP 562: every attribute the stand-in lacks
        return getattr(_load(name, stand_in), attr)

    stand_in.__getattr__ = __getattr__  # type: ignore[method-assign]
    _STAND_INS[name] = stand_in
    sys.modules[name] = stand_in
    _bind_in_parent(name, stand_in)


def is_deferred(name: str) -> bool:
    """Whether ``name`` is in ``sys.modules`` as a stand-in that nothing has used yet."""
    return name in _STAND_INS and sys.modules.get(name) is _STAND_INS[name]


def _load(name: str, stand_in: types.ModuleType) -> types.ModuleType:
    """The real module ``name``, imported in the stand-in's place the first time."""
    if sys.modules.get(name) is stand_in:
        del sys.modules[name]
    module = importlib.import_module(name)
    _bind_in_parent(name, module)
    return module


def _bind_in_parent(name: str, module: types.ModuleType) -> None:
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
