"""The street itself (街道): its code, extent and communities (社区), from ``street.yaml``.

The department files say what each dataset holds; this file says where the hub is.
Community codes and names are checked against it, coordinates against its extent, and
later the marts group by its communities. A data office edits it once per street.

Codes follow the statistical division codes (统计用区划代码): a street is 9 digits (the
county's 6 and 3 of its own), a community 12 (the street's 9 and 3 of its own).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from catalog.errors import CatalogError, StreethubError
from catalog.settings import STREET_FILE, get_settings
from catalog.yamlfile import read_yaml

COMMUNITY_SUFFIXES = ("社区居委会", "居委会", "社区")


class Community(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^\d{12}$", description="12-digit community code")
    name: str = Field(min_length=1, description="name without the 社区 suffix")

    @model_validator(mode="after")
    def _bare_name(self) -> Community:
        if self.name.endswith(COMMUNITY_SUFFIXES):
            raise ValueError(f"community name {self.name!r}: give it without the 社区 suffix")
        return self


class Street(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^\d{9}$", description="9-digit street code")
    name: str = Field(min_length=1)
    district: str = Field(min_length=1, description="city and district, e.g. 北京市朝阳区")
    bbox: tuple[float, float, float, float] = Field(
        description="extent, WGS-84: lon_min, lat_min, lon_max, lat_max"
    )
    bbox_margin_deg: float = Field(
        default=0.002, ge=0, le=0.05, description="slack for points on the boundary roads"
    )
    communities: list[Community] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Street:
        x0, y0, x1, y1 = self.bbox
        if not (73 <= x0 < x1 <= 136 and 3 <= y0 < y1 <= 54):
            raise ValueError(
                f"bbox {list(self.bbox)} is not lon_min < lon_max, lat_min < lat_max within China"
            )
        problems = [
            f"community {c.code} ({c.name}) does not start with the street code {self.code}"
            for c in self.communities
            if not c.code.startswith(self.code)
        ]
        for what in ("code", "name"):
            values = [getattr(c, what) for c in self.communities]
            problems += [f"duplicate community {what} {v!r}" for v in sorted(set(values))
                         if values.count(v) > 1]  # fmt: skip
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def community_codes(self) -> list[str]:
        return [c.code for c in self.communities]

    @property
    def community_names(self) -> list[str]:
        """Each name as written here and with each usual suffix (光华里, 光华里社区, …)."""
        return [c.name + s for c in self.communities for s in ("", *COMMUNITY_SUFFIXES)]


def load_street(path: Path | None = None) -> Street:
    """Read and validate ``street.yaml``; CatalogError naming the file and the field."""
    path = Path(path or STREET_FILE)
    file = str(path)
    try:
        raw = read_yaml(path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CatalogError([StreethubError(f"cannot read YAML: {exc}", file=file)]) from None
    if not isinstance(raw, dict):
        raise CatalogError([StreethubError("top level must be a mapping", file=file)])
    try:
        return Street.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = list(err["loc"])
            field = None
            if len(loc) >= 2 and loc[0] == "communities" and isinstance(loc[1], int):
                items = raw.get("communities") or []
                item = items[loc[1]] if loc[1] < len(items) else {}
                label = item.get("code") if isinstance(item, dict) else None
                field = f"communities[{label or '#' + str(loc[1] + 1)}]"
                loc = loc[2:]
            where = ".".join(str(p) for p in loc)
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(
                StreethubError(f"{where}: {msg}" if where else msg, file=file, field=field)
            )
        raise CatalogError(problems) from None


@lru_cache(maxsize=8)
def _cached(path: str) -> Street:
    return load_street(Path(path))


def get_street(path: Path | None = None) -> Street:
    """The validated street (default ``STREETHUB_STREET_FILE``), cached per file."""
    return _cached(str(Path(path or get_settings().street_file).resolve()))
