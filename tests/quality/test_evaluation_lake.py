"""The truth evaluation on a lake: the main job reads each staged table in parts (the
deliveries and source rows judged, the columns the truth has), with the figures of
whole tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.loader import load_catalogue
from lakehouse.lake import open_lake, tables_in
from pipelines.ingest.raw import raw_table
from pipelines.protection import Protection
from pipelines.truth_run import evaluate_against_truth
from quality import evaluation
from quality.evaluation import evaluate_lake
from tests.streets import ingest_and_stage

SMALL_PARTS = 97  # source rows a part in the test: a prime, so parts end anywhere in a file


@pytest.mark.timeout(600)
def test_parts_read_from_the_lake_give_the_figures_of_whole_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = load_catalogue()  # a database pull, GBK CSV files, an HTTP API
    cat = shipped.model_copy(
        update={"departments": {c: shipped.departments[c] for c in ("gaj", "wjw", "rsj")}}
    )
    settings = ingest_and_stage(tmp_path / "home", cat, residents=300, seed=3)
    protection = Protection.from_settings(settings)
    with open_lake(settings, read_only=True) as con:
        staged = {t for _, t in tables_in(con, "staged")}
        whole = {
            (dept.code, ds.code): protection.reveal(
                con.execute(f'SELECT * FROM staged."{raw_table(dept.code, ds)}"').pl(),
                ds,
                "quality_scores",
            )
            for dept, ds in cat.datasets()
            if raw_table(dept.code, ds) in staged
        }
        quarantine = con.execute("SELECT * FROM quarantine.rows").pl()
        deliveries = con.execute(
            "SELECT delivery_id, dept, dataset, sha256, source FROM landing.deliveries"
        ).pl()
    expected = evaluate_lake(settings.sim_dir_abs, cat, whole, quarantine, deliveries)
    assert expected is not None and expected.totals["rows"] > 500
    assert expected.totals["dirty_rows"] > 0 and expected.totals["repaired"] > 0
    # several parts a file (each part is a read and a decryption: a few hundred parts in all,
    # not thousands), then the default again for what the cache saves
    per_file = max(f.group_by("_delivery_id").len()["len"].max() for f in whole.values())
    assert per_file > 2 * SMALL_PARTS  # three parts or more
    default = evaluation.PART_ROWS
    monkeypatch.setattr(evaluation, "PART_ROWS", SMALL_PARTS)
    parts = evaluate_against_truth(settings, cat)
    assert parts is not None and parts.deliveries == expected.deliveries
    monkeypatch.setattr(evaluation, "PART_ROWS", default)
    # the scorecard did not run here: the disagreements' figure is 0 in both
    assert parts.totals == expected.totals and parts.problems == expected.problems
    # the figures are kept per dataset: judged again only where the judged rows changed
    judged: list[str] = []
    real = evaluation.evaluate_dataset

    def counting(ref, *args, **kwargs):
        judged.append(ref)
        return real(ref, *args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_dataset", counting)
    again = evaluate_against_truth(settings, cat)
    assert judged == [] and again is not None and again.totals == parts.totals
    changed = raw_table("gaj", cat.dataset("gaj.registered_residents")[1])
    with open_lake(settings) as con:  # a staged row and a quarantined row less
        con.execute(
            f'DELETE FROM staged."{changed}" WHERE _source_row = '
            f'(SELECT min(_source_row) FROM staged."{changed}")'
        )
        con.execute(
            "DELETE FROM quarantine.rows WHERE dept = 'gaj' AND dataset = 'registered_residents' "
            "AND source_row = (SELECT min(source_row) FROM quarantine.rows "
            "WHERE dept = 'gaj' AND dataset = 'registered_residents')"
        )
    cached = evaluate_against_truth(settings, cat)
    assert judged == ["gaj.registered_residents"]
    (settings.state_dir / "truth_evaluation.json").unlink()
    fresh = evaluate_against_truth(settings, cat)
    assert cached is not None and fresh is not None
    assert cached.totals == fresh.totals and cached.totals != parts.totals
