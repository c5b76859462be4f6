"""Reading the catalogue's YAML files: one reader for the departments and the street.

PyYAML's C loader (libyaml, shipped in PyYAML's wheels) parses the catalogue about ten
times faster than the pure-Python ``safe_load``, and every run and CLI command parses it;
it is the same safe subset of YAML (no Python objects). Where a PyYAML build lacks
libyaml, the pure-Python safe loader reads the same documents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from catalog.errors import StreethubError

SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> Any:
    """The document in ``path`` (UTF-8), parsed safely; OSError, UnicodeDecodeError or
    yaml.YAMLError as the caller reports them."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)


def read_mapping(path: Path, what: str) -> tuple[dict | None, list[StreethubError]]:
    """A catalogue file's top-level mapping (a department's, a mart's), or None and the
    problem naming the file: unreadable, not YAML, or not a mapping of ``what`` keys."""
    try:
        raw = read_yaml(path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return None, [StreethubError(f"cannot read YAML: {exc}", file=str(path))]
    if not isinstance(raw, dict):
        return None, [StreethubError(f"top level must be a mapping of {what} keys", file=str(path))]
    return raw, []
