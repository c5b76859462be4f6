"""The quality scorecard as a mart (质量评分卡): ``quality/``'s scores published through the
same build as every mart.

``quality/`` scores each dataset and department (six dimensions); the quality run
(``pipelines/quality_run.py``) hands the scored rows to :func:`publish_scorecard`, which
builds ``marts/sql/quality_scorecard.sql`` over them (input ``quality_scores``) with
``catalog/marts/quality_scorecard.yaml``: the columns and their types checked against the
catalogue, lineage parsed, the table replaced in one lake transaction.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import polars as pl

from catalog.marts import Mart, load_marts
from catalog.model import Catalogue
from marts.build import MartBuild, build_mart

QUALITY_MART = "quality_scorecard"
SCORES_INPUT = "quality_scores"  # the relation the mart's SQL reads: the scored rows


def publish_scorecard(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    scorecard: pl.DataFrame,
    marts: Mapping[str, Mart] | None = None,
) -> MartBuild:
    """Build ``marts.quality_scorecard`` from the scored rows. Its SQL reads no curated
    column, so nothing is decrypted and the build needs no keys (protection None)."""
    marts = dict(load_marts() if marts is None else marts)
    return build_mart(con, catalogue, marts, QUALITY_MART, None, inputs={SCORES_INPUT: scorecard})
