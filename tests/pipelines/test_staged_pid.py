"""Person pseudonyms in staged (``_pid_<field>``): one deterministic pseudonym per field
that names a record's subject by citizen ID or mobile, computed at staging from the
standardised value — the same for the same person in every department, null when the value
is null, never a plain value in the lake (quarantine included); a table from before the
columns gains them, filled through the audited ``master_index`` purpose; a re-key
recomputes them under the new suite."""

from __future__ import annotations

import datetime as dt
import hmac
import re
from pathlib import Path

import polars as pl
import pytest

from catalog.authority import authority, person_key, pid_column, pid_fields
from catalog.identifiers import citizen_id_valid
from catalog.loader import load_catalogue
from catalog.model import Catalogue, Dataset, PiiKind
from catalog.settings import Settings
from lakehouse.lake import close_idle, open_lake, tables_in
from masking.audit import AuditLog
from masking.crypto import column_id
from masking.keys import KeyRing
from masking.leaks import KnownNames, scan_frame
from pipelines.defs.sources.specs import landing_key, staged_key
from pipelines.ingest.raw import raw_table
from pipelines.ingest.staged import stage_dataset, staged_without_pids
from pipelines.ingest_run import select_work
from pipelines.leaks import registry_names, scan_tables, structured_columns
from pipelines.protection import Protection
from pipelines.rekey import rekey
from tests.streets import copy_home

Key = tuple[str, str]
ID_OR_MOBILE = re.compile(r"(?<![0-9])(\d{17}[0-9X]|1[3-9]\d{9})(?![0-9])")


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="module")
def street(staged_street: Settings) -> Path:
    """The session's staged street (read here; the tests that change it copy it)."""
    return staged_street.home


def _with_pids(cat: Catalogue) -> dict[Key, Dataset]:
    return {(d.code, ds.code): ds for d, ds in cat.datasets() if pid_fields(ds)}


def _revealed(settings: Settings, cat: Catalogue) -> dict[Key, pl.DataFrame]:
    """Each staged table with person pseudonyms: lineage, its ``_pid_`` columns and their
    fields in the clear (read with the ring as it stands, whatever its suite)."""
    ring = KeyRing.from_settings(settings, enforce_suite=False)
    reader = Protection(ring, AuditLog.from_settings(settings, ring), "test:pid")
    out = {}
    with open_lake(settings, read_only=True) as con:
        staged = {t for _, t in tables_in(con, "staged")}
        for (dept, code), ds in _with_pids(cat).items():
            if raw_table(dept, ds) not in staged:
                continue
            frame = con.execute(
                f'SELECT * FROM staged."{raw_table(dept, ds)}" ORDER BY _delivery_id, _source_row'
            ).pl()
            out[(dept, code)] = reader.reveal(frame, ds, "quality_scores")
    return out


@pytest.fixture(scope="module")
def revealed(street: Path, cat: Catalogue) -> dict[Key, pl.DataFrame]:
    return _revealed(Settings(home=street), cat)


def _oracle(key: bytes, value: str, digest: str) -> str:
    """The pseudonym as anyone holding the data key computes it (``masking.pseudonym``)."""
    return hmac.digest(key.hex().encode(), value.encode(), digest).hex()[:20]


def _check_pids(frames: dict[Key, pl.DataFrame], cat: Catalogue, key: bytes, digest: str):
    """Every ``_pid_`` value is the keyed HMAC of its staged value, null exactly when the
    value is; (values checked, of each kind)."""
    checked = {PiiKind.citizen_id: 0, PiiKind.mobile: 0}
    for ref, frame in frames.items():
        ds = _with_pids(cat)[ref]
        for f in pid_fields(ds):
            pids, values = frame[pid_column(f.name)].to_list(), frame[f.name].to_list()
            want = [None if v is None else _oracle(key, v, digest) for v in values]
            assert pids == want, f"{ref}.{f.name}"
            checked[f.pii] += sum(v is not None for v in values)
    return checked


def _work(settings: Settings, cat: Catalogue, con) -> set:
    """The asset keys the main job's next run would materialise (``select_work``)."""
    now = dt.datetime.now(dt.UTC)
    return {k for keys in select_work(settings, cat, con, now).values() for k in keys}


def test_pid_fields_are_the_subjects_ids_and_mobiles(cat: Catalogue) -> None:
    named = [(ref, f) for ref, ds in _with_pids(cat).items() for f in pid_fields(ds)]
    assert named and all(
        f.concept and f.pii in (PiiKind.citizen_id, PiiKind.mobile) for _, f in named
    )
    assert {f.pii for _, f in named} == {PiiKind.citizen_id, PiiKind.mobile}
    # a citizen ID or mobile that names someone else (a guardian, a shop) carries no concept
    others = [
        f for _, ds in cat.datasets() for f in ds.fields
        if f.pii in (PiiKind.citizen_id, PiiKind.mobile) and f.concept is None
    ]  # fmt: skip
    assert others and not any(f in pid_fields(ds) for _, ds in cat.datasets() for f in others)
    # the person key's authority (the registry) has its pseudonym column
    register = authority(cat, person_key(cat))
    assert register.field in [f.name for f in pid_fields(register.dataset)]
    assert pid_column("citizen_id") == "_pid_citizen_id"


def test_staged_pids_are_the_pseudonyms_of_the_standardised_values(
    street: Path, cat: Catalogue, revealed: dict[Key, pl.DataFrame]
) -> None:
    assert revealed.keys() == _with_pids(cat).keys()  # every such dataset is staged
    ring = KeyRing.from_settings(Settings(home=street))
    checked = _check_pids(revealed, cat, ring.current("pseudonym").material, "sha256")
    assert checked[PiiKind.citizen_id] > 500 and checked[PiiKind.mobile] > 100
    nulls = sum(f[pid_column(x.name)].null_count() for r, f in revealed.items()
                for x in pid_fields(_with_pids(cat)[r]))  # fmt: skip
    assert nulls > 0  # optional mobiles left out: their pseudonym is null, not hmac("")
    # a citizen ID with a pseudonym is a valid one (the gate quarantines the others): usable
    ids = pl.concat(
        [f.select(pl.col(x.name).alias("id")) for r, f in revealed.items()
         for x in pid_fields(_with_pids(cat)[r]) if x.pii is PiiKind.citizen_id]
    ).drop_nulls()  # fmt: skip
    assert ids.height > 500 and ids.select(citizen_id_valid(pl.col("id")).all()).item()


def test_one_person_one_pid_in_every_department(
    cat: Catalogue, revealed: dict[Key, pl.DataFrame]
) -> None:
    pairs = pl.concat(
        [
            frame.select(
                pl.lit(f"{ref[0]}.{ref[1]}").alias("ref"),
                pl.lit(f.pii.value).alias("kind"),
                pl.col(f.name).alias("value"),
                pl.col(pid_column(f.name)).alias("pid"),
            )
            for ref, frame in revealed.items()
            for f in pid_fields(_with_pids(cat)[ref])
        ]
    ).drop_nulls("value")
    by_value = pairs.group_by("kind", "value").agg(
        pl.col("pid").n_unique().alias("pids"), pl.col("ref").n_unique().alias("refs")
    )
    assert by_value["pids"].max() == 1  # one value, one pseudonym, in every department
    assert pairs.group_by("pid").agg(pl.col("value").n_unique())["value"].max() == 1
    shared = by_value.filter((pl.col("kind") == "citizen_id") & (pl.col("refs") >= 3))
    assert shared.height > 50  # persons known to three departments or more join on it
    # a dataset keyed by the citizen ID alone: its key pseudonym is the person pseudonym
    keyed = [
        (ref, ds.key[0]) for ref, ds in _with_pids(cat).items()
        if len(ds.key) == 1 and ds.key[0] in [f.name for f in pid_fields(ds)]
    ]  # fmt: skip
    assert keyed
    for ref, field in keyed:
        frame = revealed[ref]
        assert frame[pid_column(field)].equals(frame["_key_pid"], check_names=False), ref


def test_quarantine_and_the_leak_scan_see_no_plain_value(
    street: Path, cat: Catalogue, revealed: dict[Key, pl.DataFrame]
) -> None:
    settings = Settings(home=street)
    fields = {f.name for ds in _with_pids(cat).values() for f in pid_fields(ds)}
    with open_lake(settings, read_only=True) as con:
        quarantine = con.execute("SELECT * FROM quarantine.rows").pl()
        protection = Protection.from_settings(settings, "test:pid")
        names = KnownNames(registry_names(con, cat, protection))
        staged = [(z, t) for z, t in tables_in(con, "staged")]
        findings = scan_tables(con, staged, names, structured_columns(cat))
    assert not [c for c in quarantine.columns if c.startswith("_pid_")]
    shown = quarantine.filter(pl.col("field").is_in(sorted(fields)))["value_masked"].drop_nulls()
    assert shown.len() > 0  # bad IDs and mobiles were quarantined, masked
    assert not [v for v in shown if ID_OR_MOBILE.search(v)]
    assert sum(f.leaks for f in findings) == 0
    assert {f.place for f in findings} >= {f"staged.{raw_table(d, ds)}" for (d, _), ds in
                                           _with_pids(cat).items()}  # fmt: skip
    # the scanner does find these values when they are plain: the pid columns hold none
    pids = pl.concat([f.select(pl.col("^_pid_.*$")) for f in revealed.values()], how="diagonal")
    plain = pl.concat(
        [f.select(pl.col(x.name).alias("v")) for r, f in revealed.items()
         for x in pid_fields(_with_pids(cat)[r])]
    ).drop_nulls()  # fmt: skip
    assert scan_frame(plain.head(200)).total > 0
    assert scan_frame(pids).total == 0


def test_a_table_from_before_gains_its_pid_columns_filled_through_master_index(
    street: Path, tmp_path: Path, cat: Catalogue, revealed: dict[Key, pl.DataFrame]
) -> None:
    settings = copy_home(street, tmp_path)
    with open_lake(settings, read_only=True) as con:
        before = _work(settings, cat, con)
    with open_lake(settings) as con:
        for (dept, _), ds in _with_pids(cat).items():
            for f in pid_fields(ds):
                con.execute(
                    f'ALTER TABLE staged."{raw_table(dept, ds)}" DROP COLUMN "{pid_column(f.name)}"'
                )
    close_idle()
    assert not any(
        c.startswith("_pid_") for f in _revealed(settings, cat).values() for c in f.columns
    )
    with open_lake(settings, read_only=True) as con:
        assert staged_without_pids(con, cat) == set(_with_pids(cat))
        work = _work(settings, cat, con)
    # the main job's next run stages them, though no delivery of theirs is new
    landed = {staged_key(d, c) for d, c in _with_pids(cat) if landing_key(d, c) in before}
    assert work - before == {staged_key(d, c) for d, c in _with_pids(cat)} - landed
    assert len(landed) < len(_with_pids(cat))  # (pulled datasets are due: they land anew)
    ring = KeyRing.from_settings(settings)
    audit = AuditLog.from_settings(settings, ring)
    seen = len(audit.records())
    protection = Protection.from_settings(settings, "test:pid")
    with open_lake(settings) as con:
        for dept, ds in cat.datasets():
            assert stage_dataset(con, dept.code, ds, protection) == []  # no delivery to gate
        assert staged_without_pids(con, cat) == set()
    close_idle()
    decrypted = [r for r in audit.records()[seen:] if r["action"] == "decrypt"]
    after = _revealed(settings, cat)
    for ref, frame in revealed.items():
        assert after[ref].select(frame.columns).equals(frame), ref  # the same values back

    assert {r["purpose"] for r in decrypted} == {"master_index"}
    want = {
        column_id(ds, f.name): revealed[ref][f.name].drop_nulls().len()
        for ref, ds in _with_pids(cat).items()
        for f in pid_fields(ds)
        if ds.field(f.name).level.sensitive
    }
    assert {r["column"]: r["values"] for r in decrypted} == want

    # once filled, a later staging step decrypts nothing more
    seen = len(audit.records())
    with open_lake(settings) as con:
        for dept, ds in cat.datasets():
            stage_dataset(con, dept.code, ds, protection)
    close_idle()
    assert not [r for r in audit.records()[seen:] if r["action"] == "decrypt"]


def test_rekey_recomputes_the_pids_and_gives_a_table_from_before_its_columns(
    street: Path, tmp_path: Path, cat: Catalogue, revealed: dict[Key, pl.DataFrame]
) -> None:
    settings = copy_home(street, tmp_path)
    (dept, _), ds = next(iter(_with_pids(cat).items()))
    with open_lake(settings) as con:
        for f in pid_fields(ds):
            con.execute(
                f'ALTER TABLE staged."{raw_table(dept, ds)}" DROP COLUMN "{pid_column(f.name)}"'
            )
    close_idle()
    rekey(settings, "gm", "test:officer")
    ring = KeyRing.from_settings(settings, enforce_suite=False)
    after = _revealed(settings, cat)
    assert after.keys() == revealed.keys()
    checked = _check_pids(after, cat, ring.current("pseudonym").material, "sm3")
    assert checked[PiiKind.citizen_id] > 500
    old = {p for f in revealed.values() for p in f.select(pl.col("^_pid_.*$")).unpivot()["value"]}
    new = {p for f in after.values() for p in f.select(pl.col("^_pid_.*$")).unpivot()["value"]}
    assert len(new) == len(old) and not (new - {None}) & (old - {None})
