"""Houses (房): ``curated.house`` and ``curated.house_mentions``.

One row of ``curated.house`` per housing unit of the authoritative register, keyed by
``house_id``, the pseudonym of the unit's authoritative key (the concept ``house.unit_id``).
The unit's building comes from the building register (``house.building_id`` and its
``house.building_address``, public L1, matched on community and building number); the unit's
own address (a person's home, L3) is stored only as ciphertext bound to the curated row.
The catalogue's other L1/L2 fields of the unit, without PII, are kept as JSON attributes.

``curated.house_mentions`` links every staged record that names a person's address (a field
of PII kind ``address`` outside the house register: a registered or residence address, an
appeal's address) to the unit it names, by the address parts (:mod:`curated.address`):

=====================  =====  ==========================================================
method                 score  when
=====================  =====  ==========================================================
``exact``              1.0    community, building, entrance and room from the address
``community_field``    0.95   the address names no community; the record's community
                              field (``place.community_code``) supplies it
``unique_room``        0.85   the address names no entrance, and the register's building
                              has one entrance, with that room (3号楼501室 of a building
                              without 单元); in a building of several entrances a room
                              number alone names no flat and stays unresolved
``unregistered``       0.9    a whole unit address (community, building, entrance, room)
                              that no unit of the register has: the flat the persons live
                              in is missing from the register (its row quarantined, or
                              never registered). It becomes a house of its own,
                              ``in_register`` false, ``house_id`` the pseudonym of the
                              normalised address key, so everyone naming it is linked
``unresolved``         null   the address names no whole unit (house_id null)
=====================  =====  ==========================================================

A unit key that two units of the register share links nothing (both stay, unreached).
Keys are compared as pseudonyms (the house table keeps them, so an incremental run links a
changed dataset's addresses without decrypting the register again).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import duckdb
import polars as pl

from catalog.authority import authorities, authority, fields_of_concept, person_key, pid_column
from catalog.errors import StreethubError
from catalog.model import Catalogue, Dataset, FieldSpec, Level, PiiKind, dataset_table
from catalog.street import Street
from curated.address import parse_addresses
from lakehouse.lake import ensure_table, has_table, insert_frame, transaction
from masking.crypto import encrypt_series
from masking.keys import KeyRing
from masking.pseudonym import pseudonymise_series
from quality.keys import KEY_PID

HOUSE = "house"
MENTIONS = "house_mentions"
UNIT_KEY = "house.unit_id"
UNIT_ADDRESS = "house.address"
BUILDING_KEY = "house.building_id"
BUILDING_ADDRESS = "house.building_address"
COMMUNITY = "place.community_code"
LON, LAT = "place.lon", "place.lat"
GRID = "place.grid_code"
PURPOSE = "master_index"
PERSON_MENTIONS = "person_mentions"  # the master index (engineer LINK's table)
# curated columns holding public register text (L1/L2 catalogue values without PII: a shop's
# or a hazard point's name, a building's address) and never free text: the leak scanner
# counts a registry name there only as the whole value (王兴便利店 holds the name 王兴)
PUBLIC_TEXT_COLUMNS = {
    HOUSE: frozenset({"building_address", "attributes"}),
    "thing": frozenset({"attributes"}),  # curated.things.THING
    # curated.events.EVENT: catalogue values of L1/L2 fields without PII (a category, a
    # handling office 街道平安建设办公室, a channel, a service item); its free text is ciphertext
    "event": frozenset({"category", "status", "urgency", "handler", "channel", "item_code"}),
}

HOUSE_COLUMNS = [
    ("house_id", "VARCHAR"),
    ("community_code", "VARCHAR"),
    ("building_id", "VARCHAR"),
    ("building_address", "VARCHAR"),
    ("lon", "DOUBLE"),
    ("lat", "DOUBLE"),
    ("grid_code", "VARCHAR"),  # the grid cell whose centre is nearest the building
    ("address", "VARCHAR"),  # ciphertext, bound to curated.house.address and the house_id
    ("unit_key_pid", "VARCHAR"),
    ("room_key_pid", "VARCHAR"),
    ("in_register", "BOOLEAN"),
    ("attributes", "VARCHAR"),
    ("dept", "VARCHAR"),
    ("dataset", "VARCHAR"),
    ("built_at", "TIMESTAMPTZ"),
]
MENTION_COLUMNS = [
    ("dept", "VARCHAR"),
    ("dataset", "VARCHAR"),
    ("key_pid", "VARCHAR"),
    ("field", "VARCHAR"),
    ("house_id", "VARCHAR"),
    ("method", "VARCHAR"),
    ("score", "DOUBLE"),
    ("unit_key_pid", "VARCHAR"),
    ("linked_at", "TIMESTAMPTZ"),
]
SCORES = {"exact": 1.0, "community_field": 0.95, "unregistered": 0.9, "unique_room": 0.85}


# -- reading staged, writing curated (shared by the place modules) -------------------------


class Revealer(Protocol):
    """What the place modules need of the pipelines' protection: the key ring (pseudonyms,
    encryption of curated values) and audited decryption of staged values."""

    keyring: KeyRing

    def reveal(self, frame: pl.DataFrame, dataset: Dataset, purpose: str) -> pl.DataFrame: ...


def staged_name(dept: str, ds: Dataset) -> str:
    """The staged table of a dataset (:func:`catalog.model.dataset_table`)."""
    return dataset_table(dept, ds.code)


def concept_field(ds: Dataset, concept: str) -> str | None:
    """The dataset's (first) field carrying ``concept``, or None."""
    names = fields_of_concept(ds, concept)
    return names[0] if names else None


def read_staged(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    ds: Dataset,
    columns: list[str],
    *,
    protection: Revealer | None = None,
    purpose: str = PURPOSE,
) -> pl.DataFrame | None:
    """``_key_pid`` and ``columns`` of the dataset's staged rows, sensitive ones decrypted for
    ``purpose`` (audited; only the columns asked for); None when the dataset is not staged."""
    wanted = list(dict.fromkeys([KEY_PID, *columns]))
    frame = staged_rows(con, staged_name(dept, ds), ", ".join(f'"{c}"' for c in wanted))
    if frame is None:
        return None
    sensitive = [
        c for c in columns if c in {f.name for f in ds.fields} and ds.field(c).level.sensitive
    ]
    if sensitive:
        if protection is None:
            raise StreethubError(
                "a sensitive column is read only through a protection (audited decryption)",
                dataset=f"{dept}.{ds.code}",
                field=sensitive[0],
            )
        frame = protection.reveal(frame, ds, purpose)
    return frame


def staged_rows(
    con: duckdb.DuckDBPyConnection, table: str, select: str, where: str = ""
) -> pl.DataFrame | None:
    """``SELECT <select> FROM staged.<table> <where>``; None when the table does not exist. The
    read is the probe: a :func:`lakehouse.lake.has_table` first was one more lake
    statement (the same failing SELECT when missing), ~60 of them in a build."""
    try:
        return con.execute(f'SELECT {select} FROM staged."{table}" {where}').pl()
    except duckdb.CatalogException:
        return None


def public_fields(ds: Dataset, skip: set[str] = frozenset()) -> list[str]:
    """Fields kept as a curated row's attributes: L1/L2 without PII about a person (an
    organisation's credit code is kept), apart from ``skip``."""
    return [
        f.name
        for f in ds.fields
        if f.level in (Level.L1, Level.L2)
        and f.pii in (PiiKind.none, PiiKind.credit_code)
        and f.name not in skip
    ]


def attributes_json(frame: pl.DataFrame, names: list[str]) -> pl.Series:
    """JSON text of each row's ``names`` (catalogue order); null without any."""
    if not names:
        return pl.Series("attributes", [None] * frame.height, dtype=pl.String)
    texts = [json.dumps(r, ensure_ascii=False, default=str) for r in frame.select(names).to_dicts()]
    return pl.Series("attributes", texts, dtype=pl.String)


def subject_ids(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, dept: str, ds: Dataset
) -> pl.DataFrame | None:
    """``key_pid`` → ``person_id`` of the dataset's records that have a subject: from the
    master index (``curated.person_mentions``) once it exists, else exact on the staged
    pseudonym of the person key (``_pid_<citizen-id field>``); None when neither says."""
    try:  # the read is the probe (as :func:`staged_rows`)
        return con.execute(
            f'SELECT key_pid, person_id FROM curated."{PERSON_MENTIONS}" '
            "WHERE dept = ? AND dataset = ? AND person_id IS NOT NULL",
            [dept, ds.code],
        ).pl()
    except duckdb.CatalogException:
        pass
    key = person_key(catalogue)
    field = concept_field(ds, key) if key else None
    if field is None:
        return None
    return staged_rows(
        con,
        staged_name(dept, ds),
        f'"{KEY_PID}" AS key_pid, "{pid_column(field)}" AS person_id',
        f'WHERE "{pid_column(field)}" IS NOT NULL',
    )


def pseudonyms(values: pl.Series, protection: Revealer, kind: PiiKind | None = None) -> pl.Series:
    """Hub pseudonyms of ``values`` (nulls stay null), normalised by their PII ``kind``."""
    kind = None if kind in (None, PiiKind.none) else kind
    return pseudonymise_series(values.cast(pl.String), protection.keyring, kind=kind)


def replace_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: list[tuple[str, str]],
    frame: pl.DataFrame,
    scope: set[tuple[str, str]] | None,
) -> None:
    """Replace ``curated.<table>``'s rows: all of them (``scope`` None) or those of the
    (dept, dataset) pairs in ``scope``, by ``frame`` — in one transaction. Columns missing from
    the frame are null; a ``*_at`` TIMESTAMPTZ column missing is now."""
    with replacing(con, table, columns, scope) as insert:
        insert(frame)


@contextlib.contextmanager
def replacing(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: list[tuple[str, str]],
    scope: set[tuple[str, str]] | None,
) -> Iterator[Callable[[pl.DataFrame], None]]:
    """:func:`replace_rows` by parts: the rows go in as frames given to the function
    yielded, one after the other (a part made, written and let go before the next is made),
    in the one transaction that deletes the rows replaced; the same ``*_at`` time for all."""
    now = dt.datetime.now(dt.UTC)
    schema = dict(_polars_schema(columns))

    def insert(frame: pl.DataFrame) -> None:
        fill = []
        for c, t in columns:
            if c in frame.columns:
                fill.append(pl.col(c).cast(schema[c]) if c in schema else pl.col(c))
            elif t == "TIMESTAMPTZ" and c.endswith("_at"):
                fill.append(pl.lit(now, schema[c]).alias(c))
            else:
                fill.append(pl.lit(None, schema.get(c)).alias(c))
        if frame.width:  # no frame (no source): no rows
            insert_frame(con, "curated", table, frame.select(fill))

    with transaction(con):
        ensure_table(con, "curated", table, columns)
        if scope is None:
            con.execute(f'DELETE FROM curated."{table}"')
        else:
            for dept, ds in sorted(scope):
                con.execute(
                    f'DELETE FROM curated."{table}" WHERE dept = ? AND dataset = ?', [dept, ds]
                )
        yield insert


def _polars_schema(columns: list[tuple[str, str]]) -> list[tuple[str, pl.DataType]]:
    types = {"VARCHAR": pl.String, "DOUBLE": pl.Float64, "TIMESTAMPTZ": pl.Datetime("us", "UTC"),
             "BIGINT": pl.Int64, "DATE": pl.Date, "TIMESTAMP": pl.Datetime("us"),
             "BOOLEAN": pl.Boolean}  # fmt: skip
    return [(c, types[t]) for c, t in columns if t in types]


# -- houses ----------------------------------------------------------------------------------


def address_fields(catalogue: Catalogue) -> list[tuple[str, Dataset, FieldSpec]]:
    """(dept, dataset, field) of every field naming a person's address: PII kind address,
    not the house register's own address (a ``house.*`` concept)."""
    return [
        (dept.code, ds, f)
        for dept, ds in catalogue.datasets()
        if ds is not None
        for f in ds.fields
        if f.pii is PiiKind.address and not (f.concept or "").startswith("house.")
    ]


def house_datasets(catalogue: Catalogue) -> set[tuple[str, str]]:
    """(dept, dataset) holding the house register (any authoritative ``house.*`` concept) or
    the grid a house's cell comes from (``place.grid_code``): a change there rebuilds every
    house and mention."""
    return {
        (a.dept, a.dataset.code)
        for c, a in authorities(catalogue).items()
        if c.startswith("house.") or c == GRID
    }


def _unit_keys(parts: pl.DataFrame, community: pl.Expr) -> pl.DataFrame:
    """Unit key (community|building|entrance|room) and room key (community|building|room) of
    each parsed address; ``community`` stands in where the address names none."""
    code = pl.coalesce(pl.col("address_community"), community)
    return parts.select(
        pl.concat_str(
            [code, pl.col("building"), pl.col("entrance"), pl.col("room")], separator="|"
        ).alias("unit_key"),
        pl.concat_str([code, pl.col("building"), pl.col("room")], separator="|").alias("room_key"),
        pl.concat_str([code, pl.col("building")], separator="|").alias("building_key"),
        pl.col("address_community").is_not_null().alias("community_stated"),
        pl.col("entrance").is_not_null().alias("entrance_stated"),
    )


def building_keys(addresses: pl.Series, community: pl.Series, street: Street) -> pl.Series:
    """``community|building`` of each address (``community`` where it names none), null
    where it names no building: the key of :func:`buildings_frame`."""
    parts = parse_addresses(addresses, street).with_columns(community.cast(pl.String).alias("_c"))
    return _unit_keys(parts, pl.col("_c"))["building_key"]


def buildings_frame(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, street: Street
) -> pl.DataFrame:
    """building_key → building id, address, community, lon, lat (empty without a register)."""
    key = authority(catalogue, BUILDING_KEY)
    addr = authority(catalogue, BUILDING_ADDRESS)
    empty = pl.DataFrame(
        schema={"building_key": pl.String, "building_id": pl.String,
                "building_address": pl.String, "b_community": pl.String,
                "lon": pl.Float64, "lat": pl.Float64}
    )  # fmt: skip
    if (
        key is None
        or addr is None
        or (key.dept, key.dataset.code) != (addr.dept, addr.dataset.code)
    ):
        return empty
    ds = key.dataset
    cols = {
        "building_id": key.field,
        "building_address": addr.field,
        "b_community": concept_field(ds, COMMUNITY),
        "lon": concept_field(ds, LON),
        "lat": concept_field(ds, LAT),
    }
    frame = read_staged(con, key.dept, ds, [c for c in cols.values() if c])
    if frame is None:
        return empty
    frame = frame.select(
        (pl.col(src) if src else pl.lit(None)).alias(name) for name, src in cols.items()
    ).with_columns(pl.col("lon", "lat").cast(pl.Float64), pl.col("b_community").cast(pl.String))
    parts = parse_addresses(frame["building_address"], street)
    # the community field stands in when the building's address names none
    keys = _unit_keys(parts.with_columns(frame["b_community"].alias("_c")), pl.col("_c"))
    out = frame.with_columns(keys["building_key"])
    dupes = out.group_by("building_key").len().filter(pl.col("len") > 1)["building_key"]
    return out.filter(
        pl.col("building_key").is_not_null() & ~pl.col("building_key").is_in(dupes.implode())
    )


def build_house_table(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection: Revealer,
    street: Street,
) -> pl.DataFrame:
    """Every unit of the register as a ``curated.house`` row (not written)."""
    unit = authority(catalogue, UNIT_KEY)
    addr = authority(catalogue, UNIT_ADDRESS)
    if unit is None or addr is None or addr.dataset.code != unit.dataset.code:
        return pl.DataFrame(schema=dict(_polars_schema(HOUSE_COLUMNS)))
    ds = unit.dataset
    public = public_fields(ds, {unit.field})
    community = concept_field(ds, COMMUNITY)
    wanted = list(dict.fromkeys([unit.field, addr.field, *public]
                                + ([community] if community else [])))  # fmt: skip
    frame = read_staged(con, unit.dept, ds, wanted, protection=protection, purpose=PURPOSE)
    if frame is None:
        return pl.DataFrame(schema=dict(_polars_schema(HOUSE_COLUMNS)))
    parts = parse_addresses(frame[addr.field], street)
    fallback = frame[community] if community else pl.Series([None] * frame.height, dtype=pl.String)
    keys = _unit_keys(parts.with_columns(fallback.alias("_c")), pl.col("_c"))
    house_ids = pseudonyms(frame[unit.field], protection, kind=unit.dataset.field(unit.field).pii)
    # a room without its entrance names one flat only in a building of one entrance
    entrances = (
        parts.select(keys["building_key"], "entrance")
        .group_by("building_key")
        .agg(pl.col("entrance").n_unique().alias("_entrances"))
    )
    single = keys.join(entrances, on="building_key", how="left", maintain_order="left")
    room_keys = single.select(
        pl.when(pl.col("_entrances") == 1).then(pl.col("room_key"))
    ).to_series()
    houses = pl.DataFrame(
        {
            "house_id": house_ids,
            "community_code": parts["address_community"].fill_null(fallback.cast(pl.String)),
            "building_key": keys["building_key"],
            "unit_key_pid": pseudonyms(keys["unit_key"], protection),
            "room_key_pid": pseudonyms(room_keys, protection),
            "in_register": pl.Series([True] * frame.height, dtype=pl.Boolean),
            "attributes": attributes_json(frame, public),
            "address": encrypt_series(
                frame[addr.field].cast(pl.String),
                protection.keyring,
                column=f"curated.{HOUSE}.address",
                rows=house_ids,
            ),
        }
    )
    buildings = buildings_frame(con, catalogue, street).drop("b_community")
    houses = houses.join(buildings, on="building_key", how="left", maintain_order="left")
    from curated.things import grid_centres, nearest_grid  # things builds on this module

    grid = nearest_grid(houses["lon"], houses["lat"], grid_centres(con, catalogue))
    return houses.with_columns(
        grid, pl.lit(unit.dept).alias("dept"), pl.lit(ds.code).alias("dataset")
    ).drop("building_key")


@dataclass(frozen=True)
class UnitIndex:
    """The register's units as address-key pseudonyms: ``units`` (unit_key_pid → house_id)
    and ``rooms`` (room_key_pid → house_id) without the keys two units share; ``registered``
    every unit key of the register (shared ones too: never a house of their own)."""

    units: pl.DataFrame
    rooms: pl.DataFrame
    registered: pl.Series


def unit_index(con: duckdb.DuckDBPyConnection) -> UnitIndex:
    """The :class:`UnitIndex` of ``curated.house``'s registered units."""
    houses = con.execute(
        f'SELECT house_id, unit_key_pid, room_key_pid FROM curated."{HOUSE}" WHERE in_register'
    ).pl()

    def unique(col: str) -> pl.DataFrame:
        h = houses.filter(pl.col(col).is_not_null())
        once = h.group_by(col).len().filter(pl.col("len") == 1).select(col)
        return h.join(once, on=col).select(col, "house_id")

    registered = houses["unit_key_pid"].drop_nulls().unique()
    return UnitIndex(unique("unit_key_pid"), unique("room_key_pid"), registered)


def refresh_unregistered(con: duckdb.DuckDBPyConnection) -> int:
    """The houses only mentions know (method ``unregistered``) as rows of ``curated.house``:
    the former ones replaced by those the mentions name now. Their number."""
    with transaction(con):
        con.execute(f'DELETE FROM curated."{HOUSE}" WHERE NOT in_register')
        con.execute(
            f'INSERT INTO curated."{HOUSE}" (house_id, unit_key_pid, in_register, built_at) '
            f'SELECT DISTINCT house_id, house_id, false, now() FROM curated."{MENTIONS}" '
            "WHERE method = 'unregistered'"
        )
    return int(
        con.execute(f'SELECT count(*) FROM curated."{HOUSE}" WHERE NOT in_register').fetchone()[0]
    )


def link_addresses(
    frame: pl.DataFrame,
    address: str,
    community: str | None,
    street: Street,
    protection: Revealer,
    index: UnitIndex,
) -> pl.DataFrame:
    """``frame`` (plaintext ``address``, optional ``community`` field) → house_id, method,
    score, unit_key_pid per row, by :data:`SCORES` (module docstring)."""
    parts = parse_addresses(frame[address], street)
    fallback = frame[community].cast(pl.String) if community else None
    if fallback is None:
        fallback = pl.Series([None] * frame.height, dtype=pl.String)
    keys = _unit_keys(parts.with_columns(fallback.alias("_c")), pl.col("_c"))
    keyed = keys.with_columns(
        pseudonyms(keys["unit_key"], protection).alias("unit_key_pid"),
        pseudonyms(keys["room_key"], protection).alias("room_key_pid"),
        pl.int_range(pl.len()).alias("_i"),
    )
    by_unit = keyed.join(index.units, on="unit_key_pid", how="left", maintain_order="left")[
        "house_id"
    ]
    by_room = keyed.join(
        index.rooms.rename({"house_id": "room_house"}),
        on="room_key_pid",
        how="left",
        maintain_order="left",
    )["room_house"]
    out = keyed.with_columns(
        by_unit.alias("by_unit"),
        by_room.alias("by_room"),
        (
            pl.col("unit_key_pid").is_not_null()
            & ~pl.col("unit_key_pid").is_in(index.registered.implode())
        ).alias("unregistered"),
    )
    method = (
        pl.when(pl.col("by_unit").is_not_null() & pl.col("community_stated"))
        .then(pl.lit("exact"))
        .when(pl.col("by_unit").is_not_null())
        .then(pl.lit("community_field"))
        .when(~pl.col("entrance_stated") & pl.col("by_room").is_not_null())
        .then(pl.lit("unique_room"))
        .when(pl.col("unregistered"))
        .then(pl.lit("unregistered"))
        .otherwise(pl.lit("unresolved"))
    )
    return out.select(
        pl.when(pl.col("by_unit").is_not_null())
        .then(pl.col("by_unit"))
        .when(~pl.col("entrance_stated") & pl.col("by_room").is_not_null())
        .then(pl.col("by_room"))
        .when(pl.col("unregistered"))
        .then(pl.col("unit_key_pid"))
        .alias("house_id"),
        method.alias("method"),
        pl.col("unit_key_pid"),
    ).with_columns(
        pl.col("method")
        .replace_strict(SCORES, default=None, return_dtype=pl.Float64)
        .alias("score")
    )


def house_mentions_of(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    ds: Dataset,
    field: FieldSpec,
    street: Street,
    protection: Revealer,
    index: UnitIndex,
) -> pl.DataFrame | None:
    """The house mentions of one address field (None when the dataset is not staged)."""
    community = concept_field(ds, COMMUNITY)
    wanted = [field.name] + ([community] if community else [])
    frame = read_staged(con, dept, ds, wanted, protection=protection, purpose=PURPOSE)
    if frame is None:
        return None
    frame = frame.filter(pl.col(field.name).is_not_null())
    linked = link_addresses(frame, field.name, community, street, protection, index)
    return pl.concat(
        [
            frame.select(
                pl.lit(dept).alias("dept"),
                pl.lit(ds.code).alias("dataset"),
                pl.col("_key_pid").alias("key_pid"),
                pl.lit(field.name).alias("field"),
            ),
            linked,
        ],
        how="horizontal",
    )


def build_houses(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection: Revealer,
    street: Street,
    changed: set[tuple[str, str]] | None = None,
) -> dict[str, int]:
    """Write ``curated.house`` and ``curated.house_mentions``.

    ``changed`` None (or holding a house-register dataset) rebuilds both; otherwise only the
    mentions of the changed datasets are linked again (against the stored house keys), which
    equals a full rebuild; no address among them, nothing is written. Returns counts for the
    asset's metadata."""
    built = has_table(con, "curated", HOUSE) and has_table(con, "curated", MENTIONS)
    full = changed is None or bool(changed & house_datasets(catalogue)) or not built
    scope = None if full else changed & {(d, ds.code) for d, ds, _ in address_fields(catalogue)}
    if scope is not None and not scope:
        return house_counts(con)
    if full:
        houses = build_house_table(con, catalogue, protection, street)
        replace_rows(con, HOUSE, HOUSE_COLUMNS, houses, None)
    index = unit_index(con)
    frames = []
    for dept, ds, field in address_fields(catalogue):
        if scope is not None and (dept, ds.code) not in scope:
            continue
        linked = house_mentions_of(con, dept, ds, field, street, protection, index)
        if linked is not None:
            frames.append(linked)
    mentions = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
    replace_rows(con, MENTIONS, MENTION_COLUMNS, mentions, scope)
    refresh_unregistered(con)
    return house_counts(con)


def house_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Houses (in the register, only mentioned), mentions and linked mentions."""
    row = con.execute(
        f'SELECT (SELECT count(*) FROM curated."{HOUSE}"), '
        f'(SELECT count(*) FROM curated."{HOUSE}" WHERE NOT in_register), '
        f'count(*), count(house_id) FROM curated."{MENTIONS}"'
    ).fetchone()
    keys = ("houses", "houses_unregistered", "house_mentions", "house_mentions_linked")
    return {k: int(v) for k, v in zip(keys, row, strict=True)}
