"""Reading the catalogue's YAML files: one reader for the departments, the marts and the
street, and one account of what in them is invalid (``problems_from``).

PyYAML's C loader (libyaml, shipped in PyYAML's wheels) parses the catalogue about ten
times faster than the pure-Python ``safe_load``, and every run and CLI command parses it;
it is the same safe subset of YAML (no Python objects). Where a PyYAML build lacks
libyaml, the pure-Python safe loader reads the same documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

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


def _name_at(raw: Any, loc: Iterable[Any]) -> tuple[str | None, str | None, str]:
    """Turn a pydantic error location into (dataset code, field name, rest of path): a
    department's ``datasets`` and ``fields`` and a mart's ``columns`` are named by their
    items' code or name."""
    dataset = field = None
    rest: list[str] = []
    node = raw
    loc = list(loc)
    i = 0
    while i < len(loc):
        part = loc[i]
        nxt = loc[i + 1] if i + 1 < len(loc) else None
        if part in ("datasets", "fields", "columns") and isinstance(nxt, int):
            items = node.get(part) if isinstance(node, dict) else None
            item = items[nxt] if isinstance(items, list) and nxt < len(items) else {}
            label = (item.get("code") or item.get("name")) if isinstance(item, dict) else None
            label = label or f"#{nxt + 1}"
            if part == "datasets":
                dataset = str(label)
            else:
                field = str(label)
            node = item
            i += 2
            continue
        rest.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
        i += 1
    return dataset, field, ".".join(rest)


Entry = TypeVar("Entry", bound=BaseModel)


def load_entry(
    path: Path, model: type[Entry], what: str, named: Callable[[Entry], str], label: str = "name"
) -> tuple[Entry | None, list[StreethubError]]:
    """One catalogue file (a department's, a mart's) parsed into ``model``: the entry, or
    None, and the problems found, each naming the file (and the dataset and field where
    there is one). The entry's ``what`` ``label`` (``named`` of it) must be the file's name
    without ``.yaml``: an entry that says otherwise comes back with that problem."""
    file = str(path)
    raw, problems = read_mapping(path, what)
    if raw is None:
        return None, problems
    try:
        entry = model.model_validate(raw)
    except ValidationError as exc:
        return None, problems_from(exc, raw, file)
    if named(entry) != path.stem:
        return entry, [
            StreethubError(
                f"{what} {label} {named(entry)!r} does not match the file name {path.name!r}",
                file=file,
            )
        ]
    return entry, []


def problems_from(exc: ValidationError, raw: Any, file: str) -> list[StreethubError]:
    """A catalogue file's validation errors, each naming the file, dataset and field."""
    out = []
    for err in exc.errors():
        dataset, field, rest = _name_at(raw, err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if rest:
            msg = f"{rest}: {msg}"
        out.append(StreethubError(msg, file=file, dataset=dataset, field=field))
    return out
