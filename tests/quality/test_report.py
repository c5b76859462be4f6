"""The quality report: one self-contained HTML page, and the CLI scorecard."""

from __future__ import annotations

import datetime as dt
import re

import polars as pl
import pytest
from rich.console import Console
from test_scores_street import (
    EMPTY_QUARANTINE,
    LOADED_AT,
    deliveries_and_accounts,
    staged_frames,
    street,
)

from catalog.loader import get_catalogue
from quality.corrections import issue_counts, open_dispute
from quality.report import render_report, scorecard_text, summarise_quarantine
from quality.scores import score_datasets

NOW = LOADED_AT + dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def scorecard() -> pl.DataFrame:
    home = street()
    cat = get_catalogue()
    deliveries, accounts = deliveries_and_accounts(home)
    return score_datasets(
        cat, staged_frames(home, cat), EMPTY_QUARANTINE, accounts, deliveries, NOW
    )


def _expectations() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "dept": ["mzj", "mzj"],
            "dataset": ["elderly_alone", "elderly_alone"],
            "expectation": [
                "expect_column_values_to_not_be_null",
                "expect_column_values_to_be_unique",
            ],
            "column": ["name", "citizen_id"],
            "success": [True, False],
            "observed": ["0 of 98 unexpected (0.00 %)", "4 of 98 unexpected (4.08 %)"],
            "detail": ["required: no nulls", "business key unique"],
            "run_at": [NOW, NOW],
        }
    )


def _quarantine() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "dept": ["wjw"] * 3,
            "dataset": ["elderly_health_checks"] * 3,
            "delivery_id": ["d1"] * 3,
            "file_name": ["f.csv"] * 3,
            "source_row": [5, 5, 9],
            "stage": ["staged"] * 3,
            "field": ["citizen_id", "gender", "citizen_id"],
            "check_name": [
                "citizen_id_checksum",
                "gender_matches_citizen_id",
                "citizen_id_checksum",
            ],
            "reason": ["x"] * 3,
            "value_masked": ["110105********002X"] * 3,
            "quarantined_at": [NOW] * 3,
        },
        schema=EMPTY_QUARANTINE.schema,
    )


def test_report_is_self_contained_and_complete(scorecard, tmp_path) -> None:
    issues = issue_counts(
        open_dispute("mzj", "elderly_alone", "pid1", "mobile", "wrong", "wjw", now=NOW)
    )
    html = render_report(
        scorecard,
        _expectations(),
        {"cleaning_rate 清洗率": 0.97, "wrong_value_recall": 1.0},
        summarise_quarantine(_quarantine()),
        "建外街道 数据质量报告",
        issues=issues,
    )
    (tmp_path / "report.html").write_text(html, encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "http" not in html  # no CDN, no external reference, not even an SVG namespace URL
    for attr in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html):
        assert "http" not in attr
    assert "<script" not in html and "<link" not in html
    assert "<svg" in html and "<style>" in html
    for label in ("完整性", "completeness", "准确性", "accuracy", "清洗率", "0.97", "待纠错"):
        assert label in html
    # failures first in the expectations table
    assert html.index("expect_column_values_to_be_unique") < html.index(
        "expect_column_values_to_not_be_null"
    )
    assert "citizen_id_checksum" in html and "elderly_health_checks" in html
    assert "110105********002X" not in html  # not even masked values
    # every department has a row in the heat map
    assert html.count("<rect") == len(get_catalogue().departments) * 6


def test_report_without_truth_or_quarantine(scorecard) -> None:
    html = render_report(scorecard, pl.DataFrame(), None, pl.DataFrame(), "t")
    assert "对照真值" not in html and "nothing quarantined" in html


def test_summarise_quarantine_counts_rows_not_cells() -> None:
    s = summarise_quarantine(_quarantine())
    row = s.filter(pl.col("check_name") == "citizen_id_checksum").row(0, named=True)
    assert (row["rows"], row["cells"]) == (2, 2)


def test_scorecard_text(scorecard) -> None:
    table = scorecard_text(scorecard)
    assert table.row_count == scorecard.select("dept", "dataset").unique().height
    console = Console(record=True, width=200)
    console.print(table)
    text = console.export_text()
    assert "registered_residents" in text and "一致性" in text
