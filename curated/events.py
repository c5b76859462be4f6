"""Events (事): ``curated.event`` — appeals, grid events, violations, incidents, follow-ups,
door-access activity — one table, every dataset whose entity is ``event``.

What an event is comes from the catalogue's concepts, never from a dataset's name:
``event.time`` (when), ``event.category``, ``event.status``, ``event.closed_time``; where
from ``place.grid_code`` or, where a record names none, the grid cell whose centre is
nearest its ``place.lon/lat`` (:func:`curated.things.nearest_grid`), and its
``place.community_code`` (else the grid's community). A dataset without place fields takes
its place from the thing it names: a related resource (``related_resources``) of things whose
one-field key is a field of the event (a door event's device → the device's grid).

``person_id``: the record's subject (``curated.person_mentions``, or exact on the person-key
pseudonym before the index exists). ``house_id``: where the record's address resolves to a
unit (``curated.house_mentions`` of the same record). ``lon``/``lat``: the record's own
coordinates (or those of the thing that places it); null where it has none.

What the marts need of an event beyond that is a column per concept of
:data:`curated.event_details.DETAILS` (urgency, first-answer time, handling office, channel,
service item, time limit, visits), null where a dataset has no field of the concept; a
detail field at L3/L4 is not kept.
The free text of ``event.description`` is L3: it is kept only as ciphertext bound to
``curated.event.description`` and the row's ``event_id`` (:func:`reveal_descriptions`).

An event whose time is a person's whereabouts (the ``event.time`` field's PII kind is
``location``: door access, 行踪信息) is not kept record by record: one row per person and
day (``granularity = 'person_day'``, ``occurrences`` = records, place = the cell most of
them happened in); records without a person are summarised per day and grid cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from catalog.model import Catalogue, Dataset, Entity, PiiKind
from catalog.street import Street
from curated.event_details import (
    DESCRIPTION,
    DETAILS,
    as_timestamp,
    detail_columns,
    detail_fields,
)
from curated.houses import (
    HOUSE,
    MENTIONS,
    PERSON_MENTIONS,
    Revealer,
    building_keys,
    buildings_frame,
    concept_field,
    house_datasets,
    pseudonyms,
    read_staged,
    replacing,
    subject_ids,
)
from curated.things import (
    THING,
    grid_centres,
    nearest_grid,
    place_columns,
    place_fields,
    thing_datasets,
)
from lakehouse.lake import has_table
from masking.crypto import decrypt_series, encrypt_series

EVENT = "event"
TIME, CATEGORY, STATUS, CLOSED = "event.time", "event.category", "event.status", "event.closed_time"
ADDRESS = "place.address"
DESCRIPTION_COLUMN = f"curated.{EVENT}.description"  # the ciphertexts' column identity
RECORD, PERSON_DAY = "record", "person_day"
EVENT_COLUMNS = [
    ("event_id", "VARCHAR"),
    ("dept", "VARCHAR"),
    ("dataset", "VARCHAR"),
    ("key_pid", "VARCHAR"),
    ("granularity", "VARCHAR"),
    ("occurrences", "BIGINT"),
    ("category", "VARCHAR"),
    ("status", "VARCHAR"),
    ("at", "TIMESTAMP"),
    ("closed_at", "TIMESTAMP"),
    ("day", "DATE"),
    ("grid_code", "VARCHAR"),
    ("community_code", "VARCHAR"),
    ("person_id", "VARCHAR"),
    ("house_id", "VARCHAR"),
    ("lon", "DOUBLE"),
    ("lat", "DOUBLE"),
    *DETAILS.values(),
    ("description", "VARCHAR"),  # ciphertext, bound to curated.event.description and event_id
    ("built_at", "TIMESTAMPTZ"),
]


def event_datasets(catalogue: Catalogue) -> list[tuple[str, Dataset]]:
    """(dept, dataset) of every dataset of events with an ``event.time``."""
    return [
        (d.code, ds)
        for d, ds in catalogue.datasets()
        if ds.entity is Entity.event and concept_field(ds, TIME)
    ]


def whereabouts(ds: Dataset) -> bool:
    """The dataset's event time is a person's whereabouts (PII kind location): summarised."""
    return ds.field(concept_field(ds, TIME)).pii is PiiKind.location


def placing_thing(catalogue: Catalogue, ds: Dataset) -> tuple[str, Dataset, str] | None:
    """(dept, dataset, key field) of the related things that place an event dataset with no
    place fields of its own; None when it has some, or no such relation."""
    if place_fields(ds):
        return None
    names = {f.name for f in ds.fields}
    for dept, other in thing_datasets(catalogue):
        if other.resource_code in ds.related_resources and other.key[0] in names:
            return dept, other, other.key[0]
    return None


def _place_from_thing(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    via: tuple[str, Dataset, str],
    protection: Revealer,
) -> pl.DataFrame:
    dept, other, key = via
    n = frame.height
    empty = pl.DataFrame(
        {c: pl.Series([None] * n, dtype=pl.String) for c in ("community_code", "grid_code")}
    ).with_columns(pl.lit(None, pl.Float64).alias("lon"), pl.lit(None, pl.Float64).alias("lat"))
    if not has_table(con, "curated", THING):
        return empty
    things = con.execute(
        f'SELECT key_pid, community_code, grid_code, lon, lat FROM curated."{THING}" '
        "WHERE dept = ? AND dataset = ?",
        [dept, other.code],
    ).pl()
    pids = pseudonyms(frame[key], protection, other.field(key).pii).alias("key_pid")
    return (
        pids.to_frame()
        .join(things.unique("key_pid"), on="key_pid", how="left", maintain_order="left")
        .select("community_code", "grid_code", "lon", "lat")
    )


def dataset_events(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    dept: str,
    ds: Dataset,
    protection: Revealer,
    places: Places,
) -> pl.DataFrame | None:
    """The ``curated.event`` rows of one dataset (None when it is not staged)."""
    concepts = {
        c: concept_field(ds, c) for c in (TIME, CATEGORY, STATUS, CLOSED, ADDRESS, DESCRIPTION)
    }
    details = detail_fields(ds)
    via = placing_thing(catalogue, ds)
    wanted = (
        [f for f in concepts.values() if f]
        + list(details.values())
        + place_fields(ds)
        + ([via[2]] if via else [])
    )
    frame = read_staged(con, dept, ds, list(dict.fromkeys(wanted)), protection=protection)
    if frame is None:
        return None
    n = frame.height

    def col(concept: str) -> pl.Series:
        name = concepts[concept]
        return frame[name] if name else pl.Series([None] * n, dtype=pl.String)

    place = (
        _place_from_thing(con, frame, via, protection)
        if via
        else place_columns(frame, ds, places.grids)
    )
    at = as_timestamp(col(TIME))
    events = pl.DataFrame(
        {
            "key_pid": frame["_key_pid"],
            "category": col(CATEGORY).cast(pl.String),
            "status": col(STATUS).cast(pl.String),
            "at": at,
            "closed_at": as_timestamp(col(CLOSED)),
            "day": at.dt.date(),
        }
    ).hstack(place.select("grid_code", "community_code", "lon", "lat"))
    events = events.hstack(detail_columns(frame, details))
    ids = subject_ids(con, catalogue, dept, ds)
    if ids is not None:
        events = events.join(ids.unique("key_pid"), on="key_pid", how="left", maintain_order="left")
    else:
        events = events.with_columns(pl.lit(None, pl.String).alias("person_id"))
    try:  # the read is the probe (no has_table first: one lake statement less)
        houses = con.execute(
            f'SELECT key_pid, house_id FROM curated."{MENTIONS}" '
            "WHERE dept = ? AND dataset = ? AND house_id IS NOT NULL",
            [dept, ds.code],
        ).pl()
    except duckdb.CatalogException:
        houses = None
    if houses is not None:
        events = events.join(
            houses.unique("key_pid"), on="key_pid", how="left", maintain_order="left"
        )
    else:
        events = events.with_columns(pl.lit(None, pl.String).alias("house_id"))
    events = place_by_house(con, events, places.grids)
    events = place_by_building(events, col(ADDRESS), places)
    if whereabouts(ds):
        del frame, place, ids, houses  # what was read: only the events go on to be grouped
        events = per_person_day(con, events, ds)
        events = events.with_columns(
            pseudonyms(events["_label"], protection).alias("event_id")
        ).drop("_label")
    else:
        events = events.with_columns(
            pseudonyms(ds.resource_code + ":" + events["key_pid"], protection).alias("event_id"),
            pl.lit(RECORD).alias("granularity"),
            pl.lit(1, pl.Int64).alias("occurrences"),
        )
        events = events.with_columns(
            encrypt_series(
                col(DESCRIPTION).cast(pl.String),
                protection.keyring,
                column=DESCRIPTION_COLUMN,
                rows=events["event_id"],
            ).alias("description")
        )
    return events.with_columns(pl.lit(dept).alias("dept"), pl.lit(ds.code).alias("dataset"))


def reveal_descriptions(
    con: duckdb.DuckDBPyConnection, protection: Revealer, purpose: str
) -> pl.DataFrame:
    """event_id and the plain ``description`` of every event that has one, decrypted for
    ``purpose`` (an authorised one; audited)."""
    frame = con.execute(
        f'SELECT event_id, description FROM curated."{EVENT}" WHERE description IS NOT NULL'
    ).pl()
    plain = decrypt_series(
        frame["description"], protection.keyring, column=DESCRIPTION_COLUMN, purpose=purpose,
        actor=protection.actor, audit=protection.audit, rows=frame["event_id"],
    )  # fmt: skip
    return frame.with_columns(plain.alias("description"))


@dataclass(frozen=True)
class Places:
    """What places an event: the grid's cell centres and the buildings' coordinates."""

    grids: pl.DataFrame
    buildings: pl.DataFrame
    street: Street


def place_by_building(events: pl.DataFrame, addresses: pl.Series, places: Places) -> pl.DataFrame:
    """Events still without a grid cell whose address names a building of the register
    (光华里社区3号楼附近): the cell nearest that building, its community where none is named."""
    missing = events["grid_code"].is_null() & addresses.is_not_null()
    if not missing.any() or places.buildings.height == 0:
        return events
    keys = building_keys(addresses, events["community_code"], places.street)
    at = (
        keys.alias("building_key")
        .to_frame()
        .join(places.buildings, on="building_key", how="left", maintain_order="left")
    )
    near = nearest_grid(at["lon"], at["lat"], places.grids)
    return events.with_columns(
        pl.coalesce(pl.col("grid_code"), near).alias("grid_code"),
        pl.coalesce(pl.col("community_code"), at["b_community"]).alias("community_code"),
    )


def place_by_house(
    con: duckdb.DuckDBPyConnection, events: pl.DataFrame, grids: pl.DataFrame
) -> pl.DataFrame:
    """Events that name no grid cell but whose address resolved to a house: the grid cell
    nearest the house's building, and its community where the event names none."""
    missing = events["grid_code"].is_null() & events["house_id"].is_not_null()
    if not missing.any() or not has_table(con, "curated", HOUSE):
        return events
    houses = con.execute(
        f"SELECT house_id, community_code AS h_community, lon AS h_lon, lat AS h_lat "
        f'FROM curated."{HOUSE}"'
    ).pl()
    joined = events.join(houses, on="house_id", how="left", maintain_order="left")
    near = nearest_grid(joined["h_lon"], joined["h_lat"], grids)
    return joined.with_columns(
        pl.coalesce(pl.col("grid_code"), near).alias("grid_code"),
        pl.coalesce(pl.col("community_code"), pl.col("h_community")).alias("community_code"),
    ).drop("h_community", "h_lon", "h_lat")


SUMMARISED = ("grid_code", "community_code", "category", "house_id")  # a group's most frequent
_GROUP = ("person_id", "day", "_cell")


def _most_frequent(column: str) -> str:
    """SQL: each group's most frequent non-null ``column`` value, the smallest of a tie
    (polars' ``drop_nulls().mode().sort().first()``; DuckDB's ``mode()`` names no tie)."""
    keys = ", ".join(_GROUP)
    return (
        f"SELECT {keys}, {column} AS v FROM _whereabouts WHERE {column} IS NOT NULL "
        f"GROUP BY {keys}, {column} QUALIFY row_number() OVER "
        f"(PARTITION BY {keys} ORDER BY count(*) DESC, {column}) = 1"
    )


DAY_ROWS = 100_000  # whereabouts records grouped at once (whole days: no group spans two)


def _day_parts(records: pl.DataFrame, rows: int) -> list[pl.DataFrame]:
    """``records`` cut into runs of consecutive days of about ``rows`` records each, in day
    order (the records without a day in the last): at least one part, empty or not."""
    days = records.group_by("day").len().sort("day", nulls_last=True)
    part = ((pl.col("len").cum_sum() - pl.col("len")) // rows).rle_id()  # 0, 1, … in order
    days = days.with_columns(part.alias("_part"))
    parted = records.join(days.select("day", "_part"), on="day", how="left", nulls_equal=True)
    count = int(days["_part"].max() or 0) + 1
    return [parted.filter(pl.col("_part") == k).drop("_part") for k in range(count)]


def per_person_day(
    con: duckdb.DuckDBPyConnection, events: pl.DataFrame, ds: Dataset
) -> pl.DataFrame:
    """Whereabouts summarised: one row per person and day (per day and grid cell for records
    without a person); ``_label`` names the group (resource code, day, person or cell), whose
    pseudonym is the ``event_id``. Grouped in ``con``'s DuckDB (the lake's: bounded by its
    memory limit, spilling encrypted) rather than a polars group-by holding every record's
    groups (1.85 GB at 200,000 residents)."""
    records = events.select(
        pl.col("person_id").cast(pl.String),
        pl.col("day").cast(pl.Date),
        *(pl.col(c).cast(pl.String) for c in SUMMARISED),
    )
    joins = " ".join(
        f"LEFT JOIN ({_most_frequent(c)}) m{i} ON "
        + " AND ".join(f"g.{k} IS NOT DISTINCT FROM m{i}.{k}" for k in _GROUP)
        for i, c in enumerate(SUMMARISED)
    )
    picks = ", ".join(f"m{i}.v AS {c}" for i, c in enumerate(SUMMARISED))
    sql = (
        "WITH _whereabouts AS (SELECT person_id, day, CASE WHEN person_id IS NULL "
        f"THEN grid_code END AS _cell, {', '.join(SUMMARISED)} FROM _streethub_whereabouts), "
        "g AS (SELECT person_id, day, _cell, count(*) AS occurrences FROM _whereabouts "
        "GROUP BY ALL) "
        f"SELECT g.person_id, g.day, g._cell, g.occurrences, {picks} FROM g {joins} "
        "ORDER BY g.day NULLS LAST, g.person_id NULLS LAST, g._cell NULLS LAST"
    )
    found = []
    for part in _day_parts(records, DAY_ROWS):  # in day order, the null day last
        _streethub_whereabouts = part.to_arrow()
        found.append(con.execute(sql).pl())
        del _streethub_whereabouts
    del records
    groups = pl.concat(found).cast(
        {"occurrences": pl.Int64, "day": pl.Date, **dict.fromkeys(SUMMARISED, pl.String)}
    )
    del found
    label = pl.concat_str(
        [pl.lit(ds.resource_code), pl.col("day").cast(pl.String),
         pl.col("person_id").fill_null(""), pl.col("_cell").fill_null("")],
        separator=":",
    )  # fmt: skip
    return groups.with_columns(
        label.alias("_label"),
        pl.col("day").cast(pl.Datetime("us")).alias("at"),
        pl.lit(None, pl.String).alias("key_pid"),
        pl.lit(None, pl.String).alias("status"),
        pl.lit(None, pl.Datetime("us")).alias("closed_at"),
        pl.lit(PERSON_DAY).alias("granularity"),
    ).drop("_cell")


def build_events(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection: Revealer,
    street: Street,
    changed: set[tuple[str, str]] | None = None,
) -> dict[str, int]:
    """Write ``curated.event``: every event dataset (``changed`` None, or a change to the
    house register, the grid or the things that place events), else only the event
    datasets among ``changed``; then every event's person follows the master index (an
    update where a merge or split moved it). Counts for the asset's metadata."""
    datasets = event_datasets(catalogue)
    placing = {(d, ds.code) for d, ds in thing_datasets(catalogue)}
    full = (
        changed is None
        or bool(changed & (house_datasets(catalogue) | placing))
        or not has_table(con, "curated", EVENT)
    )
    scope = None if full else {(d, ds.code) for d, ds in datasets} & changed
    places = Places(grid_centres(con, catalogue), buildings_frame(con, catalogue, street), street)
    if scope is None or scope:
        # a dataset's events written as they are made (inside the replacing transaction),
        # not every dataset's frames held, joined and cast first (at 200,000 residents the
        # curated build's last peak, 887 -> 839 MB: what is left is the largest dataset's)
        with replacing(con, EVENT, EVENT_COLUMNS, scope) as insert:
            for dept, ds in datasets:
                if scope is not None and (dept, ds.code) not in scope:
                    continue
                events = dataset_events(con, catalogue, dept, ds, protection, places)
                if events is not None:
                    insert(events)
                del events
    if scope is not None:
        follow_person_index(con)
    row = con.execute(
        f"SELECT count(*), count(person_id), count(house_id), count(grid_code), "
        f'sum(occurrences) FROM curated."{EVENT}"'
    ).fetchone()
    keys = ("events", "events_with_person", "events_with_house", "events_with_grid", "records")
    return {k: int(v or 0) for k, v in zip(keys, row, strict=True)}


def follow_person_index(con: duckdb.DuckDBPyConnection) -> int:
    """Record-level events whose subject the master index now gives another person id
    (a merge or split since they were built) take it; the number moved."""
    if not has_table(con, "curated", PERSON_MENTIONS) or not has_table(con, "curated", EVENT):
        return 0
    moved = con.execute(
        f'UPDATE curated."{EVENT}" AS e SET person_id = m.person_id '
        f'FROM curated."{PERSON_MENTIONS}" AS m '
        "WHERE e.granularity = ? AND e.dept = m.dept AND e.dataset = m.dataset "
        "AND e.key_pid = m.key_pid AND e.person_id IS DISTINCT FROM m.person_id",
        [RECORD],
    ).fetchone()
    return int(moved[0]) if moved else 0
