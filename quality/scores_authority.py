"""Which value an authoritative source (权威来源) holds for a concept field, and where it differs.

The catalogue marks authoritative fields (``authoritative: true``) with a shared
``concept`` (``person.birth_date``); ``catalog.authority`` derives from that alone the
*entity keys*: authoritative datasets whose key is a single authoritative concept field
(the household registry keyed by ``person.citizen_id``, the merchant register by
``merchant.credit_code``). Every other dataset holding that key concept can be joined to
it, and each of its other concept fields of the same entity is compared with the
authoritative value.

When the authority names no authoritative field for a concept, the authoritative
dataset's field of the same PII kind stands in (pii ``mobile``), and the comparison says
so (``by_pii_kind``). When the catalogue declares no authority at all for a dataset's
concepts, :func:`undeclared` names them and the scores say "no authority declared".
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from catalog.authority import NO_AUTHORITY, Authority, authorities, key_authorities
from catalog.authority import authoritative_datasets as authoritative_datasets
from catalog.model import Catalogue, Dataset, PiiKind

DISAGREEMENT_COLUMNS = {
    "dept": pl.String,
    "dataset": pl.String,
    "delivery_id": pl.String,
    "source_row": pl.Int64,
    "field": pl.String,
    "concept": pl.String,
    "authoritative_dataset": pl.String,
    "authoritative_field": pl.String,
}


@dataclass(frozen=True)
class Comparison:
    """One concept field of a dataset compared with its authoritative value."""

    dept: str
    dataset: str
    field: str
    concept: str
    join_field: str  # this dataset's field holding the entity key (e.g. citizen_id)
    auth_dept: str
    auth_dataset: str
    auth_field: str
    auth_key: str
    by_pii_kind: bool = False

    @property
    def auth_ref(self) -> str:
        return f"{self.auth_dept}.{self.auth_dataset}"


def _auth_field(auth: Authority, concept: str, pii: PiiKind) -> tuple[str, bool] | None:
    for f in auth.dataset.fields:
        if f.concept == concept and f.authoritative:
            return f.name, False
    if pii is not PiiKind.none:
        for f in auth.dataset.fields:
            if f.concept is None and f.pii is pii:
                return f.name, True
    return None


def comparisons(catalogue: Catalogue) -> list[Comparison]:
    """Every (dataset, concept field) the catalogue lets us check against an authority."""
    out: list[Comparison] = []
    for key_concept, auth in key_authorities(catalogue).items():
        entity = auth.entity
        for dept, ds in catalogue.datasets():
            if dept.code == auth.dept and ds.code == auth.dataset.code:
                continue
            joins = [f.name for f in ds.fields if f.concept == key_concept]
            if len(joins) != 1:  # none, or ambiguous (two people in one row)
                continue
            for f in ds.fields:
                if f.concept is None or f.concept == key_concept:
                    continue
                if f.concept.split(".")[0] != entity:
                    continue
                found = _auth_field(auth, f.concept, f.pii)
                if found is None:
                    continue
                out.append(
                    Comparison(
                        dept=dept.code,
                        dataset=ds.code,
                        field=f.name,
                        concept=f.concept,
                        join_field=joins[0],
                        auth_dept=auth.dept,
                        auth_dataset=auth.dataset.code,
                        auth_field=found[0],
                        auth_key=auth.field,
                        by_pii_kind=found[1],
                    )
                )
    return out


def undeclared(catalogue: Catalogue, ds: Dataset) -> list[str]:
    """The dataset's concepts for which the catalogue declares no authority (sorted)."""
    declared = authorities(catalogue)
    return sorted({f.concept for f in ds.fields if f.concept and f.concept not in declared})


def no_authority_detail(catalogue: Catalogue, ds: Dataset) -> str | None:
    """``n/a: no authority declared for …`` naming the dataset's concepts without one.

    None when every concept of the dataset has an authority (or it has no concept).
    """
    missing = undeclared(catalogue, ds)
    return f"n/a: {NO_AUTHORITY} for {', '.join(missing)}" if missing else None


def _authority_values(frame: pl.DataFrame, key: str, field: str) -> pl.DataFrame:
    """One value per key: the most recently loaded row wins."""
    cols = [key, field] + (["_loaded_at"] if "_loaded_at" in frame.columns else [])
    out = frame.select(cols).filter(pl.col(key).is_not_null())
    if "_loaded_at" in cols:
        out = out.sort("_loaded_at", nulls_last=False)
    return out.unique(subset=[key], keep="last").select(
        pl.col(key).alias("_auth_key"), pl.col(field).alias("_auth_value")
    )


def compare(cmp: Comparison, frame: pl.DataFrame, authority: pl.DataFrame) -> pl.DataFrame:
    """Row-level result of one comparison.

    Columns ``_delivery_id, _source_row, matched`` (the key is in the authority),
    ``compared`` (matched, both values present), ``agrees``.
    """
    auth = _authority_values(authority, cmp.auth_key, cmp.auth_field)
    value = pl.col(cmp.field)
    other = pl.col("_auth_value")
    if frame.schema[cmp.field] != auth.schema["_auth_value"]:
        value, other = value.cast(pl.String), other.cast(pl.String)
    lineage = [c for c in ("_delivery_id", "_source_row") if c in frame.columns]
    joined = frame.select(
        *lineage,
        pl.int_range(pl.len()).alias("_row"),
        pl.col(cmp.join_field).alias("_auth_key"),
        pl.col(cmp.field),
    ).join(auth.with_columns(pl.lit(True).alias("_matched")), on="_auth_key", how="left")
    return joined.select(
        *lineage,
        "_row",
        pl.col("_matched").fill_null(False).alias("matched"),
        (pl.col("_matched").fill_null(False) & value.is_not_null() & other.is_not_null()).alias(
            "compared"
        ),
        (value == other).fill_null(False).alias("agrees"),
    ).sort("_row")
