"""The row gate against the simulator's ground truth: the targets hold on every dataset."""

from __future__ import annotations

import polars as pl
from test_gate_street import street
from test_gate_street import street_report as report

from quality import evaluation
from quality.evaluation import evaluate, evaluate_lake, matched_files, read_manifest
from quality.gate import gate


def test_every_dataset_is_measured():
    assert report().datasets.height == len(street().raw)


def test_targets_hold():
    rep = report()
    assert rep.problems() == [], rep.missed
    t = rep.totals
    assert t["dirty_rows"] > 300
    assert t["clean_rows_quarantined"] == 0
    assert t["citizen_id_exact"] == 1.0 and t["citizen_ids_repaired"] > 50
    assert t["cleaning_rate"] >= 0.98
    assert t["defects_missed"] == 0


def test_targets_hold_per_dataset():
    d = report().datasets
    assert d.filter(pl.col("clean_rows_quarantined") > 0).height == 0
    assert d.filter(pl.col("defects_missed") > 0).height == 0
    assert d.filter(pl.col("repaired_recoverable") < pl.col("dirty_recoverable") * 0.98).height == 0


def test_a_gate_that_stages_everything_raw_is_caught():
    s = street()
    ref = "gaj.registered_residents"
    raw = s.raw[ref]
    lazy = gate(raw, s.dataset(ref))
    sloppy = raw.select(lazy.staged.columns).with_columns(
        pl.col("birth_date").str.to_date(strict=False),
        pl.col("updated_at").str.to_datetime(strict=False),
    )
    empty = lazy.quarantine.clear()
    rep = evaluate({ref: sloppy}, {ref: empty}, s.truth, s.catalogue, s.files)
    assert rep.totals["cleaning_rate"] < 0.5 and rep.problems()


def _delivery(delivery_id: str, dept: str, dataset: str, sha256: str, source: str) -> dict:
    return {"delivery_id": delivery_id, "dept": dept, "dataset": dataset, "sha256": sha256,
            "source": source}  # fmt: skip


def test_landed_deliveries_are_matched_by_hash_and_pulls_by_source():
    m = street().manifest["departments"]
    wjw = next(iter(m["wjw"].items()))
    ((file, digest),) = wjw[1]["sha256"].items()
    gaj = m["gaj"]["registered_residents"]["system"]
    db = f"{gaj['database']}#{gaj['table']}"  # its path in the simulator's folder
    api = m["rx"]["appeals"]["system"]["endpoint"]
    # the same records in the platform dialect (what rx's catalogue entry pulls)
    (platform,) = set(m["rx"]["appeals"]["system"]["endpoints"]) - {api}
    deliveries = pl.DataFrame([
        _delivery("a", "wjw", wjw[0], digest, f"inbox/wjw/{file}"),
        _delivery("b", "wjw", wjw[0], "0" * 64, f"inbox/wjw/{file}"),  # same name, other bytes
        # pulled from the simulator's database wherever its folder was (copied, moved) …
        _delivery("c", "gaj", "registered_residents", "1" * 64, f"sqlite:/a/b.departments/{db}"),
        # … not from another database, nor from another table of its own
        _delivery("d", "gaj", "registered_residents", "2" * 64, "sqlite:/elsewhere.sqlite#hukou"),
        _delivery("h", "gaj", "registered_residents", "5" * 64, f"sqlite:/a/{db}_x"),
        _delivery("i", "gaj", "registered_residents", "6" * 64, f"sqlite:/a/x{db}"),
        _delivery("e", "rx", "appeals", "3" * 64, f"http://127.0.0.1:4321{api}"),
        _delivery("f", "rx", "appeals", "4" * 64, f"https://dept.example.gov.cn{api}"),
        _delivery("j", "rx", "appeals", "7" * 64, f"http://127.0.0.1:4321{platform}"),
        _delivery("k", "rx", "appeals", "8" * 64, f"http://127.0.0.1:4321{api}/query"),
        _delivery("g", "cl", "certificates", digest, "inbox/cl/x.csv"),  # not the simulator's
    ])  # fmt: skip
    assert matched_files(street().manifest, deliveries) == {
        "a": file,
        "c": "registry.sqlite",
        "e": "api",
        "j": "api",
    }


def test_a_street_simulated_before_relative_paths_matches_its_database_url():
    system = {"db_url": "sqlite:/old/sim/systems/gaj/registry.sqlite", "table": "hukou"}
    manifest = {"departments": {"gaj": {"r": {"kind": "sql_db", "system": system}}}}
    deliveries = pl.DataFrame([
        _delivery("a", "gaj", "r", "1" * 64, f"{system['db_url']}#hukou"),
        _delivery("b", "gaj", "r", "2" * 64, "sqlite:/new/sim/systems/gaj/registry.sqlite#hukou"),
    ])  # fmt: skip
    assert matched_files(manifest, deliveries) == {"a": "registry.sqlite"}


def test_nothing_is_evaluated_without_a_simulator(tmp_path):
    s = street()
    frame = s.raw["wjw.elderly_health_checks"]
    deliveries = pl.DataFrame(
        [_delivery(d, "wjw", "elderly_health_checks", "0" * 64, "x") for d in s.files]
    )
    assert read_manifest(tmp_path) is None
    quarantine = pl.DataFrame(schema={"dept": pl.String, "dataset": pl.String,
                                      "delivery_id": pl.String, "source_row": pl.Int64})  # fmt: skip
    staged = {("wjw", "elderly_health_checks"): frame}
    assert evaluate_lake(tmp_path, s.catalogue, staged, quarantine, deliveries) is None
    # the simulator's folder, but none of its deliveries landed: nothing to evaluate either
    assert evaluate_lake(s.sim, s.catalogue, staged, quarantine, deliveries) is None


def test_only_the_covered_files_are_judged():
    s = street()
    ref = "wjw.elderly_health_checks"
    r = gate(s.raw[ref], s.dataset(ref))
    staged, quarantine = {ref: r.staged}, {ref: r.quarantine}
    everything = evaluate(staged, quarantine, s.truth, s.catalogue, s.files)
    clean = pl.read_parquet(s.truth / "wjw" / "elderly_health_checks" / "clean.parquet")
    assert everything.totals["rows"] == clean.height > 0 and everything.totals["defects"] > 0
    nothing = evaluate(staged, quarantine, s.truth, s.catalogue, s.files, covered={ref: set()})
    assert nothing.totals["rows"] == nothing.totals["defects"] == 0
    assert nothing.problems() == []  # nothing to repair is not a missed target


def test_rows_of_anyone_elses_delivery_change_no_figure():
    """The evaluation judges file by file: a staged row whose delivery the simulator did not
    make has no file and is judged nowhere (the lake's frames are not filtered first)."""
    s = street()
    ref = "wjw.elderly_health_checks"
    r = gate(s.raw[ref], s.dataset(ref))
    alone = evaluate({ref: r.staged}, {ref: r.quarantine}, s.truth, s.catalogue, s.files)
    foreign = r.staged.head(50).with_columns(pl.lit("someone-else").alias("_delivery_id"))
    mixed = evaluate(
        {ref: pl.concat([r.staged, foreign])}, {ref: r.quarantine}, s.truth, s.catalogue, s.files
    )
    assert alone.datasets.to_dicts() == mixed.datasets.to_dicts()
    assert alone.totals["rows"] > 0


def test_judging_a_file_in_parts_changes_no_figure():
    """Each file is judged ``part_rows`` source rows at a time (bounded memory on a large
    street): parts of 29 rows give the figures, missed defects and wrongly quarantined rows
    of one part a file, every row in exactly one part."""
    s = street()
    for ref in ("gaj.registered_residents", "wjw.elderly_health_checks"):
        dept, ds = s.catalogue.dataset(ref)
        r = gate(s.raw[ref], ds)
        truth = s.truth / dept.code / ds.code
        args = (ref, ds, r.staged, r.quarantine, truth, s.files)
        whole = evaluation.evaluate_dataset(*args, part_rows=10**9)
        parts = evaluation.evaluate_dataset(*args, part_rows=29)
        assert whole[0]["rows"] > 3 * 29 and whole[0]["dirty_rows"] > 0
        assert parts[0] == whole[0]
        for a, b in zip(parts[1:], whole[1:], strict=True):
            assert a.sort(a.columns).equals(b.sort(b.columns))


def test_expected_rows_cover_only_the_departments_asked_for():
    s = street()
    every = evaluation.expected_rows(s.sim)
    assert set(every) == set(s.manifest["departments"]) and min(every.values()) > 0
    some = evaluation.expected_rows(s.sim, ["wjw", "gaj", "not_simulated"])
    assert some == {"wjw": every["wjw"], "gaj": every["gaj"]}
    assert evaluation.expected_rows(s.sim, []) == {}
