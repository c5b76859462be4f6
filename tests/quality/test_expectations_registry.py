"""Registry references (expect_column_values_to_be_in_set) really run, against the registers the
catalogue declares — in the plain function, in the scorecard's expectations, and read from a
lake as the Dagster check and the leak scanner read them.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from test_scores_authority import LOADED, NOW, catalogue_variant, citizen_ids, frame, person_world

from catalog.authority import person_key, person_registers
from catalog.model import Catalogue, PiiKind, UpdateMode
from catalog.settings import Settings
from lakehouse.lake import open_lake
from pipelines.ingest.raw import raw_table
from pipelines.leaks import registry_names
from pipelines.protection import Protection
from pipelines.quality_run import QualityInputs, _expectations, registry_ids
from quality.expectations import checks_registry, run_expectations

IN_SET = "expect_column_values_to_be_in_set"


def _run(cat: Catalogue, key: tuple[str, str], data: pl.DataFrame, ids) -> pl.DataFrame:
    _, ds = cat.dataset(f"{key[0]}.{key[1]}")
    return run_expectations(
        ds,
        data,
        previous_rows=data.height,
        registry_ids=ids,
        newest_delivery_at=LOADED,
        now=NOW,
        dept=key[0],
        catalogue=cat,
    )


def _in_set(out: pl.DataFrame) -> pl.DataFrame:
    return out.filter(pl.col("expectation") == IN_SET)


@pytest.mark.parametrize("variant", ["shipped", "renamed"])
def test_unknown_persons_are_found(tmp_path: Path, variant: str) -> None:
    cat = catalogue_variant(tmp_path, variant)
    reg, other, staged, _ = person_world(cat, n=40, unknown=4)
    known = set(staged[reg][person_registers(cat)[0].field].to_list())
    (row,) = _in_set(_run(cat, other, staged[other], known)).iter_rows(named=True)
    _, ds = cat.dataset(f"{other[0]}.{other[1]}")
    assert row["column"] == next(f.name for f in ds.fields if f.concept == person_key(cat))
    assert not row["success"] and row["observed"] == "4 of 40 unexpected (10.00 %)"
    registers = ", ".join(r.ref for r in person_registers(cat))
    assert f"found in {registers} (40 ids" in row["detail"]
    if variant == "renamed":
        assert "authority.registered_residents" in registers and "gaj" not in row["detail"]
    # every person known: the check passes
    everyone = known | set(staged[other][row["column"]].to_list())
    (ok,) = _in_set(_run(cat, other, staged[other], everyone)).iter_rows(named=True)
    assert ok["success"] and ok["observed"].startswith("0 of 40")
    # no value is ever shown
    text = " ".join(str(v) for r in _run(cat, other, staged[other], known).rows() for v in r)
    assert not any(cid in text for cid in staged[other][row["column"]].to_list())


def test_registers_and_catalogues_without_authority_are_not_checked(tmp_path: Path) -> None:
    cat = catalogue_variant(tmp_path, "shipped")
    reg, other, staged, _ = person_world(cat)
    ids = set(staged[reg][person_registers(cat)[0].field].to_list())
    for r in person_registers(cat):  # a register is the reference itself
        assert not checks_registry(r.dataset, r.dept, cat)
        assert _in_set(_run(cat, (r.dept, r.dataset.code), staged[reg].head(0), ids)).is_empty()
    _, ds = cat.dataset(f"{other[0]}.{other[1]}")
    assert checks_registry(ds, other[0], cat)
    assert _in_set(_run(cat, other, staged[other], None)).is_empty()  # no registry IDs
    # a dataset without the person key
    no_key = next(
        (d, x) for d, x in cat.datasets() if not any(f.concept == person_key(cat) for f in x.fields)
    )
    assert not checks_registry(no_key[1], no_key[0].code, cat)
    # a catalogue that declares no authority: the suite runs, no reference check
    bare = catalogue_variant(tmp_path, "no_authority")
    assert not checks_registry(ds, other[0], bare)
    out = _run(bare, other, staged[other], ids)
    assert _in_set(out).is_empty() and out.filter(pl.col("expectation") == "freshness").height


def _inputs(staged: dict, deliveries: pl.DataFrame) -> QualityInputs:
    return QualityInputs(
        staged=staged,
        quarantine=pl.DataFrame(),
        accounts=pl.DataFrame(),
        deliveries=deliveries.with_columns(pl.lit("f").alias("file_name")),
        issues=None,
    )


def test_scorecard_expectations_check_references(tmp_path: Path) -> None:
    cat = catalogue_variant(tmp_path, "renamed")
    reg, other, staged, deliveries = person_world(cat, n=30, unknown=3)
    out = _expectations(cat, _inputs(staged, deliveries), NOW)
    rows = _in_set(out)
    assert rows.select("dept", "dataset").rows() == [other]
    assert rows["observed"].item() == "3 of 30 unexpected (10.00 %)"
    # the register not staged yet: nothing to check against, no false alarm
    without = {k: v for k, v in staged.items() if k != reg}
    assert _in_set(_expectations(cat, _inputs(without, deliveries), NOW)).is_empty()
    # a snapshot re-delivered identically stages nothing of its own: the dataset as it
    # stands is judged (as the Dagster check does), not an empty newest delivery
    _, ds = cat.dataset(f"{other[0]}.{other[1]}")
    assert ds.update_mode is not UpdateMode.append
    again = pl.DataFrame(
        [{"delivery_id": "again", "dept": other[0], "dataset": other[1], "arrived_at": NOW}]
    )
    out = _expectations(cat, _inputs(staged, pl.concat([deliveries, again])), NOW)
    mine = out.filter((pl.col("dept") == other[0]) & (pl.col("dataset") == other[1]))
    assert _in_set(mine)["observed"].item() == "3 of 30 unexpected (10.00 %)"
    rows = mine.filter(pl.col("expectation") == "expect_table_row_count_to_be_between")
    assert rows["success"].item() and rows["observed"].item() == "30 rows"


def _stage(con, protection: Protection, dept: str, ds, data: pl.DataFrame) -> None:
    """Write a frame to staged as the pipelines do: sensitive columns encrypted (bound to
    each row's key pseudonym: a stand-in here, the frame may lack the key fields)."""
    keyed = data.with_columns(pl.format("pid-{}", pl.int_range(pl.len())).alias("_key_pid"))
    protected = protection.protect(keyed, ds)
    con.register("t", protected.to_arrow())
    con.execute(f'CREATE TABLE staged."{raw_table(dept, ds)}" AS FROM t')
    con.unregister("t")


def test_registry_read_from_the_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Dagster expectations check and the leak scanner read: the registers' person
    keys and names, decrypted from staged — every register, under whatever code."""
    cat = catalogue_variant(tmp_path, "renamed")
    settings = Settings(home=tmp_path / "home", catalog_dir=tmp_path / "catalogue-renamed")
    settings.ensure_dirs()
    protection = Protection.from_settings(settings)
    regs = person_registers(cat)
    assert len(regs) == 2
    ids = [citizen_ids(5), citizen_ids(3, start=700)]
    names = [["张三丰", "李四", "王五", "赵六", "孙七"], ["周八", "吴九", "郑十"]]
    _, (other_dept, other_code), _, _ = person_world(cat)
    other_dept_spec, other = cat.dataset(f"{other_dept}.{other_code}")
    key_field = next(f.name for f in other.fields if f.concept == person_key(cat))
    theirs = frame({key_field: ids[0][:3] + ids[1][:1] + citizen_ids(2, start=900)}, "o-d1")
    with open_lake(settings) as con:
        for reg, some, named in zip(regs, ids, names, strict=True):
            (name_field,) = [f.name for f in reg.dataset.fields if f.pii is PiiKind.person_name]
            data = frame({reg.field: some, name_field: named}, f"{reg.dept}-d1")
            assert protection.protect(data, reg.dataset)[reg.field].to_list() != some
            _stage(con, protection, reg.dept, reg.dataset, data)
        _stage(con, protection, other_dept, other, theirs)
        con.execute(
            "CREATE TABLE landing.deliveries AS SELECT 'o-d1' AS delivery_id, ? AS dept, "
            "? AS dataset, ?::TIMESTAMPTZ AS arrived_at",
            [other_dept, other_code, LOADED],
        )
    with open_lake(settings, read_only=True) as con:
        assert registry_ids(con, cat, protection) == set(ids[0]) | set(ids[1])
        assert registry_names(con, cat, protection) == set(names[0]) | set(names[1])

    # the Dagster expectations check on the referring dataset: 2 of 6 persons unknown
    from pipelines.defs.quality.checks import build_expectations_check
    from pipelines.resources import LakeResource

    monkeypatch.setenv("STREETHUB_HOME", str(settings.home_abs))
    monkeypatch.setenv("STREETHUB_CATALOG_DIR", str(settings.catalog_dir))
    check = build_expectations_check(other_dept_spec, other)
    result = check(lake=LakeResource())
    failed = result.metadata["failed"].value
    assert any(f.startswith(f"{IN_SET}({key_field}): 2 of 6 unexpected") for f in failed), failed

    # a lake where no register is staged: None (the check is not run), no names
    empty = Settings(home=tmp_path / "empty", catalog_dir=settings.catalog_dir).ensure_dirs()
    with open_lake(empty) as con:
        assert registry_ids(con, cat, protection) is None
        assert registry_names(con, cat, protection) == set()
