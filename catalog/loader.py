"""Load and validate the catalogue: one YAML file per department.

Every problem is reported, not only the first, each naming the file, the
dataset and the field, so a data officer can fix a catalogue in one pass.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from pathlib import Path

from catalog.errors import CatalogError, StreethubError
from catalog.model import Catalogue, Department
from catalog.settings import CATALOG_DIR
from catalog.yamlfile import load_entry


def load_department(path: Path) -> tuple[Department | None, list[StreethubError]]:
    """Parse one department file; return it (or None) and the problems found."""
    return load_entry(path, Department, "department", lambda d: d.code, "code")


def _cross_checks(depts: dict[str, Department], files: dict[str, str]) -> list[StreethubError]:
    problems: list[StreethubError] = []
    by_code: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for d in depts.values():
        for ds in d.datasets:
            by_code[ds.resource_code].append((d.code, ds.code))
        codes = [ds.code for ds in d.datasets]
        for c in sorted({c for c in codes if codes.count(c) > 1}):
            problems.append(StreethubError("duplicate dataset code", file=files[d.code], dataset=c))
    for rc, owners in by_code.items():
        if len(owners) > 1:
            for dept, ds in owners:
                others = ", ".join(f"{a}.{b}" for a, b in owners if (a, b) != (dept, ds))
                problems.append(
                    StreethubError(
                        f"duplicate resource code {rc!r} (also used by {others})",
                        file=files[dept],
                        dataset=ds,
                    )
                )
    authoritative: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for d in depts.values():
        for ds in d.datasets:
            for rel in ds.related_resources:
                if rel not in by_code:
                    problems.append(
                        StreethubError(
                            f"related resource code {rel!r} is not in the catalogue",
                            file=files[d.code],
                            dataset=ds.code,
                        )
                    )
            for f in ds.fields:
                if f.authoritative and f.concept:
                    authoritative[f.concept].append((d.code, ds.code, f.name))
                if f.authoritative and not f.concept:
                    problems.append(
                        StreethubError(
                            "an authoritative field must name the concept it is authoritative for",
                            file=files[d.code],
                            dataset=ds.code,
                            field=f.name,
                        )
                    )
    for concept, owners in authoritative.items():
        depts_owning = {o[0] for o in owners}
        if len(depts_owning) > 1:
            for dept, ds, fname in owners:
                problems.append(
                    StreethubError(
                        f"concept {concept!r} has more than one authoritative department "
                        f"({', '.join(sorted(depts_owning))})",
                        file=files[dept],
                        dataset=ds,
                        field=fname,
                    )
                )
    return problems


def load_catalogue(directory: Path | None = None) -> Catalogue:
    """Load every ``<dept>.yaml`` in ``directory``; raise CatalogError listing all problems.

    The catalogue is open: a department is whatever valid YAML file describes it (code
    pattern, provider code, code equal to the file name, unique codes); there is no list of
    departments to be complete against.
    """
    directory = Path(directory or CATALOG_DIR)
    paths = sorted(directory.glob("*.yaml"))
    problems: list[StreethubError] = []
    if not paths:
        raise CatalogError([StreethubError("no department YAML files found", file=str(directory))])
    depts: dict[str, Department] = {}
    files: dict[str, str] = {}
    for path in paths:
        dept, found = load_department(path)
        problems.extend(found)
        if dept is not None:
            if dept.code in depts:
                problems.append(
                    StreethubError(
                        f"department {dept.code!r} is also defined in {files[dept.code]}",
                        file=str(path),
                    )
                )
                continue
            depts[dept.code] = dept
            files[dept.code] = str(path)
    problems.extend(_cross_checks(depts, files))
    if problems:
        raise CatalogError(problems)
    return Catalogue(departments=depts, sources=files)


@lru_cache(maxsize=8)
def _cached(directory: str) -> Catalogue:
    return load_catalogue(Path(directory))


def get_catalogue(directory: Path | None = None) -> Catalogue:
    """The validated catalogue, cached per directory for the life of the process."""
    return _cached(str(Path(directory or CATALOG_DIR).resolve()))
