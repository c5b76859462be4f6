"""Things (物): ``curated.thing`` — merchants, service points, devices, hazard points, grid cells.

Every dataset whose entity is ``thing`` and whose business key is one field holds things,
one a record (a dataset keyed by several fields, like time-stamped readings, holds facts
about things, not things). A thing is keyed by ``thing_id``:

- in a dataset that is the authority for its own key (the merchant register keyed by
  ``merchant.credit_code``, the grid keyed by ``place.grid_code``), the pseudonym of that key
  — so any record carrying the key meets the same id;
- elsewhere, the pseudonym of the dataset's resource code and the record's key pseudonym.

A thing of another dataset that refers to a keyed register's entity is linked to it
(``entity_id``) by the register's key when the record carries one the register holds
(method ``key``, score 1), else by name + address (``name_address``, 0.9: the register's name and address concepts,
addresses normalised by :mod:`curated.address`, names equal after clean-up), else by the
address alone when exactly one register entity is there (``address``, 0.7).

Place: ``community_code`` (``place.community_code``), ``lon``/``lat`` (``place.lon/lat``),
``grid_code`` (``place.grid_code``, else the grid cell whose centre is nearest,
:func:`nearest_grid`). Attributes: the record's public fields (L1/L2, no PII) as JSON.
"""

from __future__ import annotations

import math

import duckdb
import polars as pl

from catalog.authority import Authority, authority, key_authorities
from catalog.model import Catalogue, Dataset, Entity
from catalog.street import Street
from curated.address import AddressParser, clean_address
from curated.houses import (
    GRID,
    Revealer,
    attributes_json,
    concept_field,
    pseudonyms,
    public_fields,
    read_staged,
    replace_rows,
)

THING = "thing"
COMMUNITY = "place.community_code"
LON, LAT = "place.lon", "place.lat"
ADDRESS_CONCEPTS = ("place.address",)
SCORES = {"key": 1.0, "name_address": 0.9, "address": 0.7}
THING_COLUMNS = [
    ("thing_id", "VARCHAR"),
    ("dept", "VARCHAR"),
    ("dataset", "VARCHAR"),
    ("key_pid", "VARCHAR"),
    ("entity_id", "VARCHAR"),
    ("link_method", "VARCHAR"),
    ("link_score", "DOUBLE"),
    ("community_code", "VARCHAR"),
    ("grid_code", "VARCHAR"),
    ("lon", "DOUBLE"),
    ("lat", "DOUBLE"),
    ("attributes", "VARCHAR"),
    ("built_at", "TIMESTAMPTZ"),
]


def thing_datasets(catalogue: Catalogue) -> list[tuple[str, Dataset]]:
    """(dept, dataset) of every dataset of things (entity thing, a one-field key)."""
    return [
        (d.code, ds)
        for d, ds in catalogue.datasets()
        if ds.entity is Entity.thing and len(ds.key) == 1
    ]


def _own_key(catalogue: Catalogue, dept: str, ds: Dataset) -> Authority | None:
    """The key authority this dataset is (keyed by the concept it is authoritative for)."""
    for a in key_authorities(catalogue).values():
        if (a.dept, a.dataset.code) == (dept, ds.code):
            return a
    return None


# -- grid cells --------------------------------------------------------------------------------


def grid_centres(con: duckdb.DuckDBPyConnection, catalogue: Catalogue) -> pl.DataFrame:
    """grid_code, community_code, lon, lat of every cell of the authoritative grid (empty
    without one, or without centres)."""
    empty = pl.DataFrame(
        schema={"grid_code": pl.String, "g_community": pl.String, "g_lon": pl.Float64,
                "g_lat": pl.Float64}
    )  # fmt: skip
    a = authority(catalogue, GRID)
    if a is None:
        return empty
    ds = a.dataset
    lon, lat, comm = concept_field(ds, LON), concept_field(ds, LAT), concept_field(ds, COMMUNITY)
    if lon is None or lat is None:
        return empty
    frame = read_staged(con, a.dept, ds, [a.field, lon, lat] + ([comm] if comm else []))
    if frame is None:
        return empty
    return frame.select(
        pl.col(a.field).cast(pl.String).alias("grid_code"),
        (pl.col(comm) if comm else pl.lit(None)).cast(pl.String).alias("g_community"),
        pl.col(lon).cast(pl.Float64).alias("g_lon"),
        pl.col(lat).cast(pl.Float64).alias("g_lat"),
    ).drop_nulls(["grid_code", "g_lon", "g_lat"])


def nearest_grid(lon: pl.Series, lat: pl.Series, grids: pl.DataFrame) -> pl.Series:
    """For each point, the grid cell whose centre is nearest (equirectangular distance,
    longitude scaled by cos latitude); null where the point has no coordinates or there
    is no grid. Cells are compared one at a time (a street has dozens)."""
    n = len(lon)
    if grids.height == 0:
        return pl.Series("grid_code", [None] * n, dtype=pl.String)
    frame = pl.DataFrame({"lon": lon.cast(pl.Float64), "lat": lat.cast(pl.Float64)})
    scale = math.cos(math.radians(float(grids["g_lat"].mean())))
    best_d = pl.Series([math.inf] * n, dtype=pl.Float64)
    best = pl.Series([None] * n, dtype=pl.String)
    for code, glon, glat in grids.select("grid_code", "g_lon", "g_lat").iter_rows():
        d = frame.select(
            (((pl.col("lon") - glon) * scale) ** 2 + (pl.col("lat") - glat) ** 2).fill_null(
                math.inf
            )
        ).to_series()
        closer = d < best_d
        best_d = pl.select(pl.when(closer).then(d).otherwise(best_d)).to_series()
        best = pl.select(pl.when(closer).then(pl.lit(code)).otherwise(best)).to_series()
    return best.alias("grid_code")


def place_columns(frame: pl.DataFrame, ds: Dataset, grids: pl.DataFrame) -> pl.DataFrame:
    """community_code, grid_code, lon, lat of each record of ``frame`` (its place fields;
    the grid nearest its coordinates where it names none; the grid's community where it
    names none)."""
    cols = {c: concept_field(ds, c) for c in (GRID, COMMUNITY, LON, LAT)}

    def col(concept: str, dtype: pl.DataType) -> pl.Series:
        name = cols[concept]
        if name is None or name not in frame.columns:
            return pl.Series([None] * frame.height, dtype=dtype)
        return frame[name].cast(dtype)

    lon, lat = col(LON, pl.Float64), col(LAT, pl.Float64)
    grid = col(GRID, pl.String)
    if grid.null_count() and grids.height:
        grid = pl.select(pl.coalesce(grid, nearest_grid(lon, lat, grids))).to_series()
    out = pl.DataFrame({"grid_code": grid, "community_code": col(COMMUNITY, pl.String),
                        "lon": lon, "lat": lat})  # fmt: skip
    if grids.height:
        out = out.join(
            grids.select("grid_code", "g_community"),
            on="grid_code",
            how="left",
            maintain_order="left",
        ).with_columns(pl.coalesce("community_code", "g_community").alias("community_code"))
    return out.select("community_code", "grid_code", "lon", "lat")


def place_fields(ds: Dataset) -> list[str]:
    """The dataset's fields that say where a record is (grid, community, coordinates)."""
    return [f for c in (GRID, COMMUNITY, LON, LAT) if (f := concept_field(ds, c))]


# -- things ------------------------------------------------------------------------------------


def _clean_name(values: pl.Series) -> pl.Series:
    return pl.Series([None if v is None else clean_address(v) for v in values.to_list()],
                     dtype=pl.String)  # fmt: skip


def _register_places(
    frame: pl.DataFrame, a: Authority, parser: AddressParser
) -> pl.DataFrame | None:
    """entity_id, normalised address and name of a keyed register (for the fallback)."""
    ds = a.dataset
    entity = a.concept.split(".", 1)[0]
    addr = concept_field(ds, f"{entity}.address")
    name = concept_field(ds, f"{entity}.name")
    if addr is None:
        return None
    return frame.select(
        pl.col("thing_id").alias("entity_id"),
        pl.Series([parser.canonical(v) for v in frame[addr].to_list()], dtype=pl.String).alias(
            "_addr"
        ),
        (
            _clean_name(frame[name]) if name else pl.Series([None] * frame.height, dtype=pl.String)
        ).alias("_name"),
    )


def link_to_register(
    frame: pl.DataFrame,
    ds: Dataset,
    a: Authority,
    register_frame: pl.DataFrame,
    protection: Revealer,
    parser: AddressParser,
) -> pl.DataFrame:
    """entity_id, link_method, link_score of each record of ``frame`` (a dataset ``ds`` of
    things) against the keyed register ``a`` (``register_frame``: its staged rows with their
    ``thing_id``): by key, else name + address, else address alone (module docstring)."""
    register = _register_places(register_frame, a, parser)
    entity = a.concept.split(".", 1)[0]
    key = concept_field(ds, a.concept)
    n = frame.height
    by_key = (
        pseudonyms(frame[key], protection, ds.field(key).pii)
        if key
        else pl.Series([None] * n, dtype=pl.String)
    )
    # a code the register does not hold (a merchant struck off before its last snapshot)
    # links nothing by key: name and address may still find it
    known = register_frame["thing_id"].implode()
    out = pl.DataFrame({"by_key": by_key, "_i": pl.int_range(n, eager=True)}).with_columns(
        pl.when(pl.col("by_key").is_in(known)).then(pl.col("by_key")).alias("by_key")
    )
    addr = concept_field(ds, f"{entity}.address") or next(
        (f for c in ADDRESS_CONCEPTS if (f := concept_field(ds, c))), None
    )
    name = concept_field(ds, f"{entity}.name")
    if register is not None and addr is not None:
        mine = pl.DataFrame({
            "_i": pl.int_range(n, eager=True),
            "_addr": [parser.canonical(v) for v in frame[addr].to_list()],
            "_name": _clean_name(frame[name]) if name else [None] * n,
        }, schema={"_i": pl.Int64, "_addr": pl.String, "_name": pl.String})  # fmt: skip
        named = (
            mine.join(register, on=["_addr", "_name"], how="inner")
            .group_by("_i")
            .agg(pl.col("entity_id").first(), pl.len().alias("_n"))
            .filter(pl.col("_n") == 1)
        )
        at_address = register.group_by("_addr").agg(
            pl.col("entity_id").first(), pl.len().alias("_n")
        )
        only = mine.join(at_address.filter(pl.col("_n") == 1), on="_addr", how="inner")
        out = out.join(
            named.select("_i", pl.col("entity_id").alias("by_name")), on="_i", how="left"
        ).join(only.select("_i", pl.col("entity_id").alias("by_addr")), on="_i", how="left")
    else:
        out = out.with_columns(pl.lit(None, pl.String).alias("by_name"),
                               pl.lit(None, pl.String).alias("by_addr"))  # fmt: skip
    out = out.sort("_i")
    method = (
        pl.when(pl.col("by_key").is_not_null()).then(pl.lit("key"))
        .when(pl.col("by_name").is_not_null()).then(pl.lit("name_address"))
        .when(pl.col("by_addr").is_not_null()).then(pl.lit("address"))
    )  # fmt: skip
    return out.select(
        pl.coalesce("by_key", "by_name", "by_addr").alias("entity_id"),
        method.alias("link_method"),
    ).with_columns(
        pl.col("link_method").replace_strict(SCORES, default=None, return_dtype=pl.Float64)
        .alias("link_score")
    )  # fmt: skip


def thing_frame(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, protection: Revealer, street: Street
) -> pl.DataFrame:
    """Every thing of every thing dataset (``curated.thing`` rows, not written)."""
    grids = grid_centres(con, catalogue)
    parser = AddressParser(street)
    read: dict[tuple[str, str], pl.DataFrame] = {}
    for dept, ds in thing_datasets(catalogue):
        names = list(dict.fromkeys([*ds.key, *public_fields(ds), *place_fields(ds)]))
        frame = read_staged(con, dept, ds, names, protection=protection)
        if frame is None:
            continue
        own = _own_key(catalogue, dept, ds)
        if own is not None:
            ids = pseudonyms(frame[own.field], protection, ds.field(own.field).pii)
        else:
            ids = pseudonyms(ds.resource_code + ":" + frame["_key_pid"], protection)
        read[(dept, ds.code)] = frame.with_columns(ids.alias("thing_id"))
    registers = {
        a.concept: (a, read[(a.dept, a.dataset.code)])
        for a in key_authorities(catalogue).values()
        if (a.dept, a.dataset.code) in read
        and a.dataset.entity is Entity.thing
        and a.concept != GRID  # a grid cell is reached by place (place_columns)
    }
    out = []
    for dept, ds in thing_datasets(catalogue):
        frame = read.get((dept, ds.code))
        if frame is None:
            continue
        link = pl.DataFrame(
            schema={"entity_id": pl.String, "link_method": pl.String, "link_score": pl.Float64}
        )
        own = _own_key(catalogue, dept, ds)
        for concept, (a, register) in registers.items():
            entity = concept.split(".", 1)[0]
            refers = concept_field(ds, concept) or concept_field(ds, f"{entity}.name")
            if own is None and refers is not None:
                link = link_to_register(frame, ds, a, register, protection, parser)
                break
        if own is not None and own.concept in registers:  # the register: its own entity
            link = frame.select(
                pl.col("thing_id").alias("entity_id"),
                pl.lit("key").alias("link_method"),
                pl.lit(SCORES["key"]).alias("link_score"),
            )
        elif link.height == 0:
            link = pl.DataFrame({
                "entity_id": pl.Series([None] * frame.height, dtype=pl.String),
                "link_method": pl.Series([None] * frame.height, dtype=pl.String),
                "link_score": pl.Series([None] * frame.height, dtype=pl.Float64),
            })  # fmt: skip
        place = place_columns(frame, ds, grids)
        out.append(
            pl.concat(
                [
                    frame.select(
                        "thing_id",
                        pl.lit(dept).alias("dept"),
                        pl.lit(ds.code).alias("dataset"),
                        pl.col("_key_pid").alias("key_pid"),
                    ),
                    link,
                    place,
                    attributes_json(frame, public_fields(ds, set(place_fields(ds)))).to_frame(),
                ],
                how="horizontal",
            )
        )
    return pl.concat(out, how="vertical_relaxed") if out else pl.DataFrame()


def build_things(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, protection: Revealer, street: Street
) -> dict[str, int]:
    """Write ``curated.thing`` whole (things are few: hundreds on a street, all public
    values, nothing decrypted). Counts for the asset's metadata."""
    frame = thing_frame(con, catalogue, protection, street)
    replace_rows(con, THING, THING_COLUMNS, frame, None)
    row = con.execute(f'SELECT count(*), count(entity_id) FROM curated."{THING}"').fetchone()
    return {"things": int(row[0]), "things_linked": int(row[1])}
