"""Keys across deliveries, as plain functions: the row digest, the gate's versions within a
delivery, and ``quality.keys.reconcile`` against staged rows for each update mode."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_gate import RESIDENT, _raw, residents

from catalog.loader import load_catalogue
from catalog.model import Dataset, UpdateMode
from masking.keys import KeyRing
from masking.pseudonym import ROW_DIGEST_HEX, pseudonymise_series, row_digests
from quality.gate import gate
from quality.keys import reconcile

T0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    mp = pytest.MonkeyPatch()
    mp.delenv("STREETHUB_MASTER_KEY", raising=False)
    yield KeyRing(tmp_path_factory.mktemp("keys"))
    mp.undo()


# -- the row digest ------------------------------------------------------------------------

TEXT = st.one_of(st.none(), st.text(max_size=12))
INTS = st.integers(-(2**63), 2**63 - 1)
ROWS = st.lists(st.tuples(TEXT, TEXT, st.one_of(st.none(), INTS)), min_size=1,
                max_size=8)  # fmt: skip


def _frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"a": pl.String, "b": pl.String, "n": pl.Int64}, orient="row"
    ).with_columns(pl.date(2026, 11, 20).alias("d"), pl.lit(T0).alias("t"))


@settings(max_examples=60, deadline=None)
@given(rows=ROWS)
def test_digest_never_equals_a_plain_value_or_its_pseudonym(ring: KeyRing, rows) -> None:
    frame = _frame(rows)
    digests = row_digests(frame, frame.columns, ring)
    assert digests.str.len_chars().to_list() == [ROW_DIGEST_HEX] * frame.height
    plain = {str(v) for row in frame.iter_rows() for v in row if v is not None}
    pids = set(pseudonymise_series(frame["a"], ring).drop_nulls())
    assert not (set(digests) & (plain | pids | {p[:ROW_DIGEST_HEX] for p in pids}))


@settings(max_examples=80, deadline=None)
@given(row=st.tuples(TEXT, TEXT, st.one_of(st.none(), INTS)), data=st.data())
def test_two_rows_differing_in_one_field_differ_in_digest(ring: KeyRing, row, data) -> None:
    i = data.draw(st.integers(0, 2))
    changed = list(row)
    other = data.draw(st.one_of(st.none(), INTS) if i == 2 else TEXT)
    if other == row[i]:
        return
    changed[i] = other
    frame = _frame([row, tuple(changed), row])
    d = row_digests(frame, frame.columns, ring).to_list()
    assert d[0] != d[1] and d[0] == d[2]


def test_digest_tells_null_from_empty_and_field_from_field(ring: KeyRing) -> None:
    frame = pl.DataFrame({"a": [None, "", "x", None, "x|"], "b": ["", None, None, "x", ""]})
    assert row_digests(frame, ["a", "b"], ring).n_unique() == 5


def test_digest_is_keyed(ring: KeyRing, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("STREETHUB_MASTER_KEY", raising=False)
    frame = _frame([("x", "y", 1)])
    other = KeyRing(tmp_path / "other")
    assert row_digests(frame, frame.columns, ring)[0] != row_digests(frame, frame.columns, other)[0]


# -- versions within one delivery (the gate) ------------------------------------------------


def test_upsert_cursor_keeps_the_newest_version_and_skips_the_older() -> None:
    ds = residents()
    assert ds.update_mode is UpdateMode.upsert and ds.update_cursor == "updated_at"
    newer = {**RESIDENT, "mobile": "13912345678", "updated_at": "2026-11-21 09:00:00"}
    r = gate(_raw([RESIDENT, newer], ds), ds)
    assert r.staged["_source_row"].to_list() == [3]
    assert r.quarantine.height == 0
    assert r.skipped.select("_source_row", "check_name").rows() == [(2, "superseded")]
    assert r.skipped["reason"][0] == (
        "an older version of the record in source row 3 (更新时间 is earlier)"
    )


def test_versions_the_cursor_cannot_order_are_all_quarantined() -> None:
    ds = residents()
    same_time = {**RESIDENT, "mobile": "13912345678"}
    r = gate(_raw([RESIDENT, same_time], ds), ds)
    assert r.staged.height == 0 and r.skipped.height == 0
    assert r.quarantine.filter(pl.col("check_name") == "conflicting_key")[
        "_source_row"
    ].to_list() == [2, 3]


def test_without_a_cursor_conflicting_versions_are_quarantined() -> None:
    ds = residents().model_copy(update={"update_cursor": None})
    newer = {**RESIDENT, "mobile": "13912345678", "updated_at": "2026-11-21 09:00:00"}
    r = gate(_raw([RESIDENT, newer], ds), ds)
    assert r.staged.height == 0 and r.skipped.height == 0
    assert set(r.quarantine["check_name"]) == {"conflicting_key"}


# -- one delivery against staged (quality.keys) ---------------------------------------------


def _dataset(mode: str, cursor: str | None = None) -> Dataset:
    _, ds = load_catalogue().dataset("gaj.registered_residents")
    return ds.model_copy(update={"update_mode": UpdateMode(mode), "update_cursor": cursor})


def _incoming(rows: list[tuple], cursor: bool = False) -> pl.DataFrame:
    """(source row, key, digest[, cursor])."""
    names = ["_source_row", "_key_pid", "_row_digest"] + (["_cursor"] if cursor else [])
    return pl.DataFrame(rows, schema=names, orient="row")


def _staged(rows: list[tuple], cursor: bool = False) -> pl.DataFrame:
    """(key, digest, arrived[, cursor]) staged from delivery 'old'."""
    names = ["_key_pid", "_row_digest", "_arrived_at"] + (["_cursor"] if cursor else [])
    return pl.DataFrame(rows, schema=names, orient="row").with_columns(
        pl.lit("old").alias("_delivery_id"),
        pl.int_range(2, pl.len() + 2).alias("_source_row"),
        pl.col("_arrived_at").dt.replace_time_zone("UTC"),
    )


LATER = T0 + dt.timedelta(days=1)
EARLIER = T0 - dt.timedelta(days=1)


def _outcome(met) -> dict[int, str]:
    out = {int(r): "staged" for r in met.stage}
    out |= {int(r): "skipped" for r in met.skipped["_source_row"]}
    out |= {int(r): c for r, c in met.quarantine.select("_source_row", "check_name").rows()}
    return out


def test_append_identical_skipped_other_values_quarantined_new_staged() -> None:
    incoming = _incoming([(2, "k1", "d1"), (3, "k2", "dX"), (4, "k3", "d3")])
    staged = _staged([("k1", "d1", T0.replace(tzinfo=None)), ("k2", "d2", T0.replace(tzinfo=None))])
    met = reconcile(incoming, staged, _dataset("append"), LATER)
    assert _outcome(met) == {2: "skipped", 3: "conflicting_key", 4: "staged"}
    assert met.replace_keys.len() == 0
    reason = met.quarantine["reason"][0]
    assert reason == "公民身份号码 already staged with other values (source row 3 of delivery old)"


def test_upsert_by_arrival_newer_replaces_older_is_stale() -> None:
    incoming = _incoming([(2, "k1", "d1"), (3, "k2", "dX")])
    staged = _staged([("k1", "d1", T0.replace(tzinfo=None)), ("k2", "d2", T0.replace(tzinfo=None))])
    met = reconcile(incoming, staged, _dataset("upsert"), LATER)
    assert _outcome(met) == {2: "skipped", 3: "staged"}
    assert met.replace_keys.to_list() == ["k2"]
    stale = reconcile(incoming, staged, _dataset("upsert"), EARLIER)
    assert _outcome(stale) == {2: "skipped", 3: "stale_version"}
    assert "arrived before the staged one" in stale.quarantine["reason"][0]


def test_upsert_by_cursor_newer_replaces_older_is_stale_tie_conflicts() -> None:
    ds = _dataset("upsert", "updated_at")
    c0 = dt.datetime(2026, 11, 20, 8)
    incoming = _incoming(
        [(2, "k1", "dA", c0 + dt.timedelta(hours=1)), (3, "k2", "dB", c0 - dt.timedelta(hours=1)),
         (4, "k3", "dC", c0), (5, "k4", "d4", c0)],
        cursor=True,
    )  # fmt: skip
    naive = T0.replace(tzinfo=None)
    staged = _staged(
        [("k1", "d1", naive, c0), ("k2", "d2", naive, c0), ("k3", "d3", naive, c0),
         ("k4", "d4", naive, c0 - dt.timedelta(days=9))],
        cursor=True,
    )  # fmt: skip
    met = reconcile(incoming, staged, ds, EARLIER)  # the cursor wins over arrival
    assert _outcome(met) == {2: "staged", 3: "stale_version", 4: "conflicting_key", 5: "skipped"}
    assert met.replace_keys.to_list() == ["k1"]
    assert "更新时间 is earlier" in met.quarantine.filter(pl.col("_source_row") == 3)["reason"][0]


def test_snapshot_other_values_replace_and_identical_are_skipped() -> None:
    incoming = _incoming([(2, "k1", "d1"), (3, "k2", "dX"), (4, "k9", "d9")])
    staged = _staged([("k1", "d1", T0.replace(tzinfo=None)), ("k2", "d2", T0.replace(tzinfo=None))])
    met = reconcile(incoming, staged, _dataset("snapshot"), EARLIER)
    assert _outcome(met) == {2: "skipped", 3: "staged", 4: "staged"}
    assert met.replace_keys.to_list() == ["k2"]


def test_a_key_staged_twice_before_digests_is_met_once() -> None:
    """A lake staged before this version may hold a key twice, one row without a digest."""
    incoming = _incoming([(2, "k1", "d1")])
    staged = _staged([("k1", None, T0.replace(tzinfo=None)), ("k1", "d1", T0.replace(tzinfo=None))])
    assert _outcome(reconcile(incoming, staged, _dataset("append"), LATER)) == {2: "skipped"}
