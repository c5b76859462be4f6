"""The need model's features, labels, grid counts and feature table on the need street."""

from __future__ import annotations

import datetime as dt
import re
import string
from contextlib import contextmanager
from itertools import pairwise
from types import SimpleNamespace

import duckdb
import polars as pl
import pytest

from curated.golden import person_as_of, reveal_history_rows, staged_table
from curated.houses import staged_name
from lakehouse.lake import ALIAS, has_table, open_lake, transaction
from marts.need_model import features as need_features
from marts.need_model.features import (
    ATTRIBUTES,
    FIRST_LOADS,
    features,
    known_by,
    load_feature_set,
    monthly_cutoffs,
    read_feature_sql,
    register_first_loads,
    register_macros,
)
from marts.need_model.grid import complete_weeks, grid_counts
from marts.need_model.labels import label_frame, labels, outcomes
from marts.need_model.spec import GRID_COUNT, GRID_KEYS, HORIZON_DAYS, KEYS, NEEDS
from marts.need_model.store import (
    read_features,
    read_slices,
    stored_cutoffs,
    stored_rows,
    write_features,
)
from marts.need_model.train import in_rows_order
from masking.crypto import CIPHERTEXT
from tests.need_street import NeedStreet
from tests.python_child import printed_figures
from tests.streets import copy_home


def test_features_yaml_separates_inputs_from_fairness_groups():
    fs = load_feature_set()
    assert set(fs.groups) == {"gender", "age_band", "resident_type"}
    assert not set(fs.groups) & set(fs.inputs)
    assert {
        "age",
        "living_alone",
        "chronic_disease",
        "door_decline_vs_street",
        "appeals_90d",
    } <= set(fs.inputs)
    for f in fs.features:  # a phrase: Chinese, at most one placeholder, none for a flag
        fields = [name for _, name, _, _ in string.Formatter().parse(f.phrase) if name]
        assert re.search(r"[\u4e00-\u9fff]", f.phrase), f.name
        assert len(fields) <= (0 if f.type == "boolean" else 1), f.name


def test_one_row_per_resident_and_cutoff_typed_as_the_yaml_says(need_street: NeedStreet):
    frame, fs = need_street.features, load_feature_set()
    assert frame.schema == pl.Schema(fs.schema)
    assert frame.select(KEYS).is_unique().all()
    assert sorted(frame["cutoff"].unique().to_list()) == need_street.cutoffs
    per_cutoff = frame.group_by("cutoff").len()["len"]
    assert per_cutoff.min() > 500
    # the street's residents mostly have a known age, and the elderly some care signals
    latest = frame.filter(pl.col("cutoff") == need_street.cutoffs[-1])
    assert latest["age"].null_count() < latest.height / 2
    assert latest["living_alone"].sum() > 0 and latest["chronic_disease"].sum() > 0
    assert set(latest["resident_type"].unique()) == {"registered", "migrant"}


def test_appeal_counts_are_the_residents_appeals_in_the_window(need_street: NeedStreet):
    cutoff = need_street.cutoffs[-1]
    appeals = need_street.query(
        'SELECT person_id, CAST("at" AS DATE) AS day FROM curated.event '
        "WHERE dept = 'rx' AND dataset = 'appeals' AND person_id IS NOT NULL"
    )
    window = appeals.filter(
        (pl.col("day") <= cutoff) & (pl.col("day") > cutoff - dt.timedelta(days=90))
    )
    expected = window.group_by("person_id").len().rename({"len": "want"})
    got = need_street.features.filter(pl.col("cutoff") == cutoff).select("person_id", "appeals_90d")
    both = got.join(expected, on="person_id", how="inner")
    assert both.height > 0
    assert (both["appeals_90d"] == both["want"]).all()

    # against the mean of the adults of the person's grid cell, in per cent
    mine = need_street.features.filter(pl.col("cutoff") == cutoff)
    cell = pl.col("appeals_90d").filter(pl.col("age") >= 18).mean().over("grid_code")
    want = (100 * pl.col("appeals_90d") / cell).round(1)
    checked = mine.with_columns(want.alias("want")).filter(pl.col("want").is_finite())
    assert checked["appeals_90d_vs_grid"].n_unique() > 10
    assert (checked["appeals_90d_vs_grid"] - checked["want"]).abs().max() <= 0.1 + 1e-9


def test_monthly_cutoffs_step_a_month_and_keep_the_day():
    assert monthly_cutoffs(dt.date(2026, 3, 31), 3) == [
        dt.date(2026, 1, 31),
        dt.date(2026, 2, 28),
        dt.date(2026, 3, 31),
    ]
    assert monthly_cutoffs(dt.date(2026, 1, 1), 2) == [dt.date(2025, 12, 1), dt.date(2026, 1, 1)]


def test_labels_count_outcomes_in_the_horizon_only():
    cutoff = dt.date(2026, 6, 1)
    keys = pl.DataFrame({"person_id": ["a", "b", "c", "d"], "cutoff": [cutoff] * 4})
    day = lambda n: cutoff + dt.timedelta(days=n)  # noqa: E731
    recorded = pl.DataFrame(
        {
            "person_id": ["a", "b", "c", "c", "d"],
            "need": ["home_care", "home_care", "health_event", "emergency_help", "home_care"],
            "day": [day(0), day(HORIZON_DAYS), day(1), day(HORIZON_DAYS + 1), day(-5)],
        }
    )
    out = label_frame(keys, recorded)
    assert out.columns == [*KEYS, *NEEDS]
    assert out["home_care"].to_list() == [False, True, False, False]  # the cut-off day is past
    assert out["health_event"].to_list() == [False, False, True, False]
    assert not out["emergency_help"].any() and not out["financial_assistance"].any()


def test_grid_counts_are_the_heatmaps_appeals_with_empty_weeks_as_zero(need_street: NeedStreet):
    with open_lake(need_street.settings, read_only=True) as con:
        counts = grid_counts(con)
    heatmap = need_street.query(
        "SELECT sum(events) FROM marts.demand_heatmap "
        "WHERE dept = 'rx' AND dataset = 'appeals' AND grid_code IS NOT NULL"
    ).item()
    assert counts[GRID_COUNT].sum() == heatmap > 0
    assert counts.select(GRID_KEYS).is_unique().all()
    weeks = counts["week_start"].n_unique()
    assert (counts.group_by("grid_code", "category").len()["len"] == weeks).all()
    assert (counts["week_start"].dt.weekday() == 1).all()
    assert (counts[GRID_COUNT] == 0).sum() > 0


def test_complete_weeks_keeps_only_weeks_ended_by_until():
    monday = dt.date(2026, 11, 2)
    counts = pl.DataFrame(
        {"grid_code": ["g", "g"], "category": ["c", "c"],
         "week_start": [monday, monday + dt.timedelta(days=14)], GRID_COUNT: [2, 1]}
    )  # fmt: skip
    out = complete_weeks(counts)
    assert out[GRID_COUNT].to_list() == [2, 0, 1]
    assert complete_weeks(counts, until=monday + dt.timedelta(days=19))[GRID_COUNT].to_list() == [2]


def test_feature_table_holds_sensitive_features_encrypted_and_reads_back(
    need_street: NeedStreet,
):
    fs = load_feature_set()
    stored = need_street.query("SELECT * FROM curated.need_features")
    for cutoff in need_street.cutoffs:  # one stored row per resident and cut-off
        mine = stored.filter(pl.col("cutoff") == cutoff)
        assert mine.height == need_street.features.filter(pl.col("cutoff") == cutoff).height
    sensitive = [f.name for f in fs.features if f.sensitive]
    assert "chronic_disease" in sensitive and "age" in sensitive
    for name in sensitive:  # every value stored is ciphertext (a feature may be all null)
        assert stored[name].drop_nulls().str.contains(CIPHERTEXT).all(), name
    assert stored.select(pl.col(sensitive).is_not_null().sum()).sum_horizontal().item() > 0
    assert stored["appeals_90d"].dtype == pl.Int64  # not sensitive: plain
    with open_lake(need_street.settings, read_only=True) as con:
        back = read_features(con, need_street.protection(), need_street.cutoffs[-2:])
        # sorted a column at a time: as the cut-offs read one by one, concatenated and sorted
        alone = [
            read_features(con, need_street.protection(), [c]) for c in need_street.cutoffs[-2:]
        ]
    want = need_street.features.filter(pl.col("cutoff").is_in(need_street.cutoffs[-2:]))
    assert back.equals(want)
    assert back.equals(pl.concat(alone).sort(list(KEYS)))
    assert back["person_id"].n_unique() < back.height  # residents at both: the keys interleave


def test_features_read_by_column_are_those_of_the_whole_read_and_only_they_are_decrypted(
    need_street: NeedStreet,
):
    """Training reads only the columns it uses: the same values as the whole frame's, and
    only the sensitive columns read are decrypted (each decryption audited)."""
    fs = load_feature_set()
    plain, sealed = (next(f.name for f in fs.features if f.sensitive is s) for s in (False, True))
    protection = need_street.protection()
    decrypted: list[str] = []
    recording = SimpleNamespace(
        keyring=protection.keyring,
        actor=protection.actor,
        audit=SimpleNamespace(
            append_many=lambda entries: decrypted.extend(d["column"] for _, _, d in entries)
        ),
    )
    cutoffs = need_street.cutoffs[-2:]
    with open_lake(need_street.settings, read_only=True) as con:
        some = read_features(con, recording, cutoffs, [sealed, plain])  # type: ignore[arg-type]
        with pytest.raises(KeyError, match="no feature"):
            read_features(con, recording, cutoffs, ["no_such_feature"])  # type: ignore[arg-type]
    whole = need_street.features.filter(pl.col("cutoff").is_in(cutoffs))
    assert some.columns == [c for c in whole.columns if c in (*KEYS, plain, sealed)]
    assert some.equals(whole.select(some.columns)) and some[sealed].drop_nulls().len() > 0
    assert decrypted == [f"curated.need_features.{sealed}"] * len(cutoffs)


def test_rewriting_a_cutoff_replaces_its_rows(need_street: NeedStreet, tmp_path):
    """Written once, then again: each time the cut-off holds the rows written last, and the
    other cut-offs are untouched (one copy of the street for both)."""
    settings = copy_home(need_street.home, tmp_path)
    protection = need_street.protection()
    cutoff = need_street.cutoffs[-1]
    mine = need_street.features.filter(pl.col("cutoff") == cutoff)
    others = pl.col("cutoff") != cutoff
    with open_lake(settings) as con:
        before = read_features(con, protection)
        for rows in (10, 7):  # the second write replaces the first's rows, fewer of them
            write_features(con, mine.head(rows), protection.keyring)
            assert stored_cutoffs(con) == sorted(before["cutoff"].unique())
            back = read_features(con, protection)
            assert back.filter(pl.col("cutoff") == cutoff).equals(mine.head(rows))
            assert back.filter(others).equals(before.filter(others))


def test_a_cutoff_is_read_from_one_snapshot_while_another_writer_rewrites_it(
    need_street: NeedStreet, tmp_path, monkeypatch
):
    """The plain columns of a cut-off are read first, its sealed ones after, one statement
    each, lined up by the rows' order: a writer that rewrites the cut-off between them (its
    rows reversed, one sealed value changed) is not seen — the read is the state it began
    on. Read across snapshots, the sealed columns would fail to decrypt (a ciphertext is
    bound to its row) or carry the writer's values."""
    import marts.need_model.store as store

    settings = copy_home(need_street.home, tmp_path)
    protection = need_street.protection()
    cutoff = need_street.cutoffs[-1]
    mine = need_street.features.filter(pl.col("cutoff") == cutoff)
    rewritten = mine.reverse().with_columns(pl.col("age") + 1)
    row_ids = store._row_ids
    writes = []

    def rewrite_between(frame):  # after the plain columns' read, before the sealed ones'
        if not writes:
            writes.append(cutoff)  # first: the writer's own sealing calls this again
            other = con.cursor()  # a connection of its own: another transaction
            other.execute(f"USE {ALIAS}")
            write_features(other, rewritten, protection.keyring)
            other.close()
        return row_ids(frame)

    with open_lake(settings) as con:
        monkeypatch.setattr(store, "_row_ids", rewrite_between)
        during = read_features(con, protection, [cutoff])
        monkeypatch.setattr(store, "_row_ids", row_ids)
        after = read_features(con, protection, [cutoff])
    assert writes, "the writer did not run between the reads"
    assert during.equals(mine.sort(list(KEYS)))  # the snapshot the read began on
    assert after.equals(rewritten.sort(list(KEYS)))  # the writer's rows, once committed


def test_a_cutoff_read_in_slices_is_the_whole_read_from_one_snapshot(
    need_street: NeedStreet, tmp_path
):
    """A cut-off read a slice of residents at a time (the training's read) is, slices
    concatenated, its whole read: every row once, each slice a run of residents after the
    last one's, the whole in person order as the table holds it (so the training sorts
    nothing); and all the slices come from the snapshot the first began on, while a writer
    rewrites the cut-off between two of them."""
    settings = copy_home(need_street.home, tmp_path)
    protection = need_street.protection()
    cutoff = need_street.cutoffs[-1]
    mine = need_street.features.filter(pl.col("cutoff") == cutoff)
    columns = ["age", "appeals_90d"]  # a sealed column and a plain one
    with open_lake(settings) as con:
        whole = read_features(con, protection, [cutoff], columns, in_key_order=False)
        slices = []
        for piece in read_slices(con, protection, cutoff, columns, rows=mine.height // 3):
            if not slices:  # another writer, between the first slice and the next
                other = con.cursor()
                other.execute(f"USE {ALIAS}")
                write_features(other, mine.with_columns(pl.col("age") + 1), protection.keyring)
                other.close()
            slices.append(piece)
        after = read_features(con, protection, [cutoff], columns)
    assert len(slices) >= 3 and all(p.height for p in slices)
    assert pl.concat(slices).equals(whole) and whole.height == mine.height
    for before, later in pairwise(slices):
        assert before["person_id"].max() < later["person_id"].min()
    assert in_rows_order(whole) and whole.equals(mine.sort(list(KEYS)).select(whole.columns))
    assert after["age"].equals(whole["age"] + 1)  # the writer's rows, once committed


# the outcome datasets and their dating field (the catalogue's; labels.sql reads them)
OUTCOMES = {
    "home_care": ("mzj", "home_care_enrolments", "enrolled_on", "DATE"),
    "health_event": ("wjw", "health_events", "event_date", "DATE"),
    "financial_assistance": ("mzj", "temporary_assistance", "approved_on", "DATE"),
    "emergency_help": ("yjj", "emergency_calls", "call_time", "TIMESTAMP"),
}


def test_labels_read_the_outcome_datasets_through_the_master_index(
    need_street: NeedStreet, tmp_path
):
    """A few outcome records written into a copy of the street (staged rows and their
    mentions): each resident's labels say which need fell in the horizon of which cut-off."""
    settings = copy_home(need_street.home, tmp_path)
    first, last = need_street.cutoffs[0], need_street.cutoffs[-1]
    with open_lake(settings, read_only=True) as con:  # residents without any outcome yet
        before = outcomes(con)["person_id"]
    residents = need_street.features.filter(pl.col("cutoff") == first)["person_id"]
    people = residents.filter(~residents.is_in(before.implode())).head(4)
    # resident k: need k recorded 10 days after the first cut-off; resident 0 also a
    # home-care record 200 days before it (in no horizon)
    records = [(people[k], need, first + dt.timedelta(days=10)) for k, need in enumerate(NEEDS)]
    records.append((people[0], "home_care", first - dt.timedelta(days=200)))
    with open_lake(settings) as con, transaction(con):
        for n, (person, need, day) in enumerate(records):
            dept, dataset, field, kind = OUTCOMES[need]
            table = f'staged."{dept}__{dataset}"'
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (_key_pid VARCHAR, _loaded_at TIMESTAMPTZ, "
                f'"{field}" {kind})'
            )
            key = f"test-outcome-{n}"
            con.execute(
                f'INSERT INTO {table} (_key_pid, _loaded_at, "{field}") VALUES (?, now(), ?)',
                [key, day],
            )
            con.execute(
                "INSERT INTO curated.person_mentions (dept, dataset, key_pid, person_id) "
                "VALUES (?, ?, ?, ?)",
                [dept, dataset, key, person],
            )
    keys = pl.DataFrame({"person_id": people.to_list() * 2, "cutoff": [first] * 4 + [last] * 4})
    with open_lake(settings, read_only=True) as con:
        out = labels(con, keys)
    at_first = out.filter(pl.col("cutoff") == first).sort("person_id")
    for k, need in enumerate(NEEDS):
        mine = at_first.filter(pl.col("person_id") == people[k])
        assert mine.select(list(NEEDS)).row(0) == tuple(n == need for n in NEEDS), need
    assert (
        not out.filter(pl.col("cutoff") == last)
        .select(pl.any_horizontal(list(NEEDS)))
        .to_series()
        .any()
    )


def test_door_decline_is_the_last_30_days_against_the_residents_own_180_day_rate(
    need_street: NeedStreet,
):
    cutoff = need_street.cutoffs[-1]
    days = need_street.query(
        "SELECT person_id, day, occurrences FROM curated.event "
        "WHERE granularity = 'person_day' AND person_id IS NOT NULL"
    )
    since = lambda n: pl.col("day") > cutoff - dt.timedelta(days=n)  # noqa: E731
    rates = (
        days.filter(pl.col("day") <= cutoff)
        .group_by("person_id")
        .agg(
            pl.col("occurrences").filter(since(30)).sum().alias("recent"),
            pl.col("occurrences").filter(since(210) & ~since(30)).sum().alias("before"),
        )
        .filter(pl.col("before") > 0)
        .with_columns(
            (100 * (1 - (pl.col("recent") / 30) / (pl.col("before") / 180))).alias("decline")
        )
        .with_columns(pl.col("decline").round(1).alias("want"))
    )
    got = need_street.features.filter(pl.col("cutoff") == cutoff).join(rates, on="person_id")
    assert got.height > 100  # residents of the buildings with smart doors
    assert (got["door_decline_pct"] - got["want"]).abs().max() <= 0.1 + 1e-9  # rounding
    # less the street's decline over the same days (every door user with a baseline)
    street = 100 * (1 - (rates["recent"].sum() / 30) / (rates["before"].sum() / 180))
    assert abs(street) > 0.5  # the street's own change: the relative decline differs
    relative = got["door_decline_vs_street"] - (got["decline"] - street)
    assert relative.abs().max() <= 0.05 + 1e-9  # rounding
    assert got["door_events_30d"].equals(got["recent"].cast(pl.Int64), check_names=False)


def test_the_need_streets_labels_hold_each_need_at_its_cut_offs(need_street: NeedStreet):
    """The outcome datasets reach the labels: every need recorded after some cut-off with a
    complete horizon, each at a plausible rate (rare, never for most residents)."""
    out = need_street.labels()
    assert out.select(KEYS).equals(need_street.features.select(KEYS).sort(list(KEYS)))
    complete = out.filter(pl.col("cutoff") <= need_street.cutoffs[-1] - dt.timedelta(days=90))
    assert all(complete[need].sum() > 0 for need in NEEDS)
    assert all(0 < complete[need].mean() < 0.2 for need in NEEDS)


def test_days_since_each_need_is_its_latest_outcome_in_the_year_to_the_cut_off(
    need_street: NeedStreet,
):
    cutoff = need_street.cutoffs[-1]
    with open_lake(need_street.settings, read_only=True) as con:
        recorded = outcomes(con)
    latest = (
        recorded.filter((pl.col("day") <= cutoff) & (pl.col("day") > cutoff - dt.timedelta(365)))
        .group_by("person_id", "need")
        .agg((pl.lit(cutoff) - pl.col("day").max()).dt.total_days().alias("want"))
    )
    got = need_street.features.filter(pl.col("cutoff") == cutoff)
    for need in NEEDS:
        mine = latest.filter(pl.col("need") == need).select("person_id", "want")
        both = got.select("person_id", f"days_since_{need}").join(mine, on="person_id", how="left")
        assert both[f"days_since_{need}"].drop_nulls().len() > 0, need
        assert both[f"days_since_{need}"].equals(both["want"], check_names=False), need


def test_disability_is_the_allowance_roster_at_every_cut_off(need_street: NeedStreet):
    """The roster has no start date and came with the hub's first load: its recipients are
    flagged at every cut-off (the golden attribute begins at the load, after them all)."""
    roster = set(
        need_street.query(
            "SELECT DISTINCT m.person_id FROM staged.mzj__disability_allowance AS s "
            "JOIN curated.person_mentions AS m ON m.dept = 'mzj' "
            "AND m.dataset = 'disability_allowance' AND m.key_pid = s._key_pid"
        )["person_id"].drop_nulls()
    )
    assert roster
    for cutoff in need_street.cutoffs:
        mine = need_street.features.filter(pl.col("cutoff") == cutoff)
        flagged = set(mine.filter(pl.col("disability_allowance"))["person_id"])
        assert flagged == roster & set(mine["person_id"]), cutoff


def test_a_cut_off_stored_by_another_feature_definition_is_not_stored(
    need_street: NeedStreet, tmp_path, monkeypatch
):
    import marts.need_model.store as store

    settings = copy_home(need_street.home, tmp_path)
    protection = need_street.protection()
    cutoff = need_street.cutoffs[-1]
    with open_lake(settings) as con:
        assert cutoff in stored_cutoffs(con)
        monkeypatch.setattr(store, "feature_set_version", lambda: "an-older-definition")
        assert stored_cutoffs(con) == [] and read_features(con, protection).is_empty()
        write_features(
            con, need_street.features.filter(pl.col("cutoff") == cutoff), protection.keyring
        )
        assert stored_cutoffs(con) == [cutoff]


def test_features_equal_those_of_the_history_read_whole_into_polars(need_street: NeedStreet):
    """The feature query reads the golden attributes as a view over the history in DuckDB,
    only the decrypted concepts brought into Python (``attributes_as_of``): the features equal
    the old path's, where the whole history as of the cut-off was read into polars, the
    decrypted concepts opened there and the frame registered as ``attributes``."""
    fs, protection = load_feature_set(), need_street.protection()
    for cutoff in (need_street.cutoffs[0], need_street.cutoffs[-1]):
        with open_lake(need_street.settings, read_only=True) as con:
            history = person_as_of(con, cutoff)
            opened = pl.col("concept").is_in(list(fs.decrypt))
            whole = pl.concat(
                [history.filter(~opened), reveal_history_rows(history.filter(opened), protection)]
            )
            con.register(ATTRIBUTES, whole.to_arrow())
            register_macros(con)
            register_first_loads(con)
            params = {"cutoff": cutoff, "known_by": known_by(cutoff)}
            old = con.execute(read_feature_sql(), params).pl().cast(fs.schema)
            con.unregister(ATTRIBUTES)
            new = features(con, protection, cutoff)
        assert new.height > 500 and new["age"].is_not_null().sum() > 500
        assert new["person_id"].is_sorted()  # features() orders, the query does not
        assert new.equals(old.sort("person_id")), cutoff


def test_stored_rows_count_each_cut_offs_rows_in_the_lake(need_street: NeedStreet):
    """The features asset's row counts come from the lake (nothing read back): each cut-off's
    rows as stored, 0 for one never computed."""
    never = need_street.cutoffs[0] - dt.timedelta(days=400)
    with open_lake(need_street.settings, read_only=True) as con:
        rows = stored_rows(con, [*need_street.cutoffs, never])
    heights = need_street.features.group_by("cutoff").len()
    assert rows == dict(heights.iter_rows()) | {never: 0}
    assert min(rows[c] for c in need_street.cutoffs) > 500


def test_the_features_step_calls_between_before_each_cut_offs_query(
    need_street: NeedStreet, tmp_path, monkeypatch
):
    """``between`` (the pipeline's heap trim) runs before each missing cut-off's query, never
    for a cut-off already stored: what a cut-off's write freed is given back before the next
    query stands on it."""
    from marts.need_model import step

    settings = copy_home(need_street.home, tmp_path)
    events: list[object] = []
    real = step.features_for
    monkeypatch.setattr(
        step, "features_for", lambda con, p, cs: events.append(list(cs)) or real(con, p, cs)
    )
    stored = need_street.cutoffs[-1]
    missing = [stored - dt.timedelta(days=31 * k) for k in (12, 13)]
    with open_lake(settings) as con:
        assert not set(missing) & set(stored_cutoffs(con))
        computed = step.store_features(
            con, need_street.protection(), [stored, *missing],
            between=lambda: events.append("between"),
        )  # fmt: skip
        assert set(missing) <= set(stored_cutoffs(con))
    assert computed == sorted(missing)
    assert events == [e for c in sorted(missing) for e in ("between", [c])]


def test_a_step_computes_the_first_loads_once_for_all_its_cut_offs(
    need_street: NeedStreet, tmp_path, monkeypatch
):
    """Each staged dataset's first load is computed once for a step's cut-offs (inside
    ``known_records`` it was scanned twice per call and cut-off: half a feature query's time),
    and the cut-offs' features are those computed alone."""
    from marts.need_model import step

    settings = copy_home(need_street.home, tmp_path)
    calls: list[object] = []
    real = need_features.register_first_loads
    monkeypatch.setattr(
        need_features, "register_first_loads", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    cutoffs = need_street.cutoffs[-2:]
    with open_lake(settings) as con:
        with transaction(con):
            con.execute("DELETE FROM curated.need_features")
        step.store_features(con, need_street.protection(), cutoffs)
        assert len(calls) == 1
        assert not con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?",
            [FIRST_LOADS],
        ).fetchone()[0]  # dropped after the step
        stored = read_features(con, need_street.protection(), cutoffs)
    expected = need_street.features.filter(pl.col("cutoff").is_in(cutoffs))
    assert stored.sort(KEYS).equals(expected.sort(KEYS))


def test_a_dataset_without_a_first_load_fails_a_query_that_knows_by_a_time(
    need_street: NeedStreet,
):
    """``known_records`` of a dataset ``first_loads`` lacks is an error naming it when the
    query knows by a time (its backfill cannot be told), and reads every record when it knows
    by infinity (the labels)."""
    with open_lake(need_street.settings, read_only=True) as con:
        register_macros(con)
        register_first_loads(con, [("mzj", "home_care_enrolments")])

        def known(dataset: str, by: str) -> int:
            sql = f"SELECT count(*) FROM known_records('{dataset[0]}', '{dataset[1]}', {by})"
            return con.execute(sql).fetchone()[0]

        infinity = "CAST('infinity' AS TIMESTAMPTZ)"
        newest = f"TIMESTAMPTZ '{known_by(need_street.cutoffs[-1]).isoformat()}'"
        listed, unlisted = ("mzj", "home_care_enrolments"), ("wjw", "health_events")
        [[linked]] = con.execute(
            "SELECT count(*) FROM linked_records('wjw', 'health_events')"
        ).fetchall()
        assert known(unlisted, infinity) == linked > 0
        assert known(listed, newest) > 0
        with pytest.raises(duckdb.Error, match=r"no row for wjw\.health_events"):
            known(unlisted, newest)


def test_a_first_delivery_stamped_a_batch_at_a_time_is_the_backfill_whole(
    need_street: NeedStreet, tmp_path
):
    """A large delivery is read and stamped a batch at a time, so its rows carry several
    ``_loaded_at`` (the history's ``known_at`` likewise): every row of a dataset's first
    delivery is its backfill, known from the dates it records — not only those of its first
    batch (at 200,000 residents the features held only the first batch's residents)."""
    settings = copy_home(need_street.home, tmp_path)
    later = "INTERVAL 1 MICROSECOND"  # a later batch of the same delivery
    restamped: list[tuple[str, str]] = []
    with open_lake(settings) as con, transaction(con):
        for dept, ds in need_street.catalogue.datasets():
            table = staged_table(dept.code, ds)
            if not has_table(con, "staged", staged_name(dept.code, ds)):
                continue
            first = f"(SELECT arg_min(_delivery_id, _loaded_at) FROM {table})"
            [[moved]] = con.execute(
                f"UPDATE {table} SET _loaded_at = _loaded_at + {later} "
                f"WHERE _delivery_id = {first} AND _source_row % 2 = 1"
            ).fetchall()
            if moved:
                restamped.append((dept.code, ds.code))
        for dept_code, ds_code in restamped:  # half the residents' runs of each
            con.execute(
                f"UPDATE curated.person_attribute_history SET known_at = known_at + {later} "
                "WHERE source_dept = ? AND source_dataset = ? AND hash(person_id) % 2 = 1 "
                "AND known_at = (SELECT min(known_at) FROM curated.person_attribute_history "
                "WHERE source_dept = ? AND source_dataset = ?)",
                [dept_code, ds_code, dept_code, ds_code],
            )
    assert ("gaj", "registered_residents") in restamped and len(restamped) > 10
    with open_lake(settings, read_only=True) as con:  # one scan each: the two-scan definition's
        register_macros(con)
        register_first_loads(con)
        got_loads = dict(((d, s), t) for d, s, t in con.execute(f"FROM {FIRST_LOADS}").fetchall())
        for dept_code, ds_code in restamped:
            table = f"staged.{dept_code}__{ds_code}"
            [[expected]] = con.execute(
                f"SELECT max(_loaded_at) FROM {table} WHERE _delivery_id = "
                f"(SELECT arg_min(_delivery_id, _loaded_at) FROM {table})"
            ).fetchall()
            assert got_loads[(dept_code, ds_code)] == expected, (dept_code, ds_code)
    protection = need_street.protection()
    for cutoff in (need_street.cutoffs[0], need_street.cutoffs[-1]):
        with open_lake(settings, read_only=True) as con:
            got = features(con, protection, cutoff)
        assert got.equals(need_street.features.filter(pl.col("cutoff") == cutoff)), cutoff


def test_a_feature_query_beyond_its_bound_runs_again_within_the_lakes_limit(
    need_street: NeedStreet, monkeypatch: pytest.MonkeyPatch
):
    """A feature query that does not fit in QUERY_MEMORY (at 200,000 residents the scoring
    cut-off's needed more than 256 MB: the step failed, nothing trained) is run again within
    the lake's own limit: the same features, the limit restored after."""
    cutoff, protection = need_street.cutoffs[-1], need_street.protection()
    refused: list[int] = []
    bounded = need_features.memory_limit

    @contextmanager
    def spied(con, limit):  # the bounded attempt, seen failing
        try:
            with bounded(con, limit):
                yield
        except duckdb.OutOfMemoryException:
            refused.append(limit)
            raise

    with open_lake(need_street.settings, read_only=True) as con:
        fitting = features(con, protection, cutoff)
        [limit] = con.execute("SELECT current_setting('memory_limit')").fetchone()
        monkeypatch.setattr(need_features, "QUERY_MEMORY", 2**20)  # 1 MiB: cannot fit
        monkeypatch.setattr(need_features, "memory_limit", spied)
        again = features(con, protection, cutoff)
        assert con.execute("SELECT current_setting('memory_limit')").fetchone() == (limit,)
    assert refused == [2**20]
    assert fitting.height > 500 and again.equals(fitting)


_LEAN_CHILD = """
import sys
import duckdb
from marts.need_model.features import lean_result
def rss():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) >> 10 for l in fh if l.startswith("VmRSS"))
con = duckdb.connect(config={"threads": 1, "allocator_background_threads": True})
con.execute("SET enable_progress_bar = false")
sql = ("SELECT i % 1000 AS k, count(DISTINCT m) AS n FROM (SELECT md5(i::VARCHAR) AS m, i "
       "FROM range(3000000) t(i)) GROUP BY k ORDER BY k")
before = rss()
frame = lean_result(con, sql, {}) if sys.argv[1] == "lean" else con.execute(sql).pl()
print("figures", rss() - before, frame.height, frame.get_column("n").sum())
"""


def test_a_querys_result_is_converted_after_what_the_query_freed_goes_back():
    """``lean_result`` hands back what the query's operators freed before its result is
    converted: a distinct count over 3 million strings frees ~250 MB that DuckDB's allocator
    keeps resident for its decay, which a result converted at once stood on (at 200,000
    residents the scoring cut-off's features so were the run's peak). A fresh process each:
    its RSS is the query's alone."""

    def grown(mode: str) -> tuple[int, int, int]:
        [(rss, rows, total)] = printed_figures(_LEAN_CHILD, mode)
        return int(rss), int(rows), int(total)

    lean, whole = grown("lean"), grown("whole")
    assert lean[1:] == whole[1:] == (1000, 3_000_000)  # the same result either way
    assert lean[0] < 50 and whole[0] - lean[0] > 100, (lean, whole)


def test_the_sql_s_linked_datasets_are_every_literal_pair_it_reads():
    """``linked_datasets`` lists each (dept, dataset) the need model's SQL reads through
    ``known_records`` or ``linked_records``: those of the features and of the outcomes."""
    pairs = need_features.linked_datasets()
    text = "".join(read_feature_sql(n) for n in ("features", "macros", "labels"))
    calls = re.findall(r"(?:known|linked)_records\('(\w+)', '(\w+)'", text)
    assert set(pairs) == set(calls) and len(pairs) == len(set(calls)) >= 10
    assert ("gaj", "registered_residents") in pairs and ("yjj", "emergency_calls") in pairs


def test_features_read_from_the_copied_mentions_equal_those_read_from_the_index(
    need_street: NeedStreet, monkeypatch: pytest.MonkeyPatch
):
    """A block of queries reads a copy of the index's linked mentions when they are few, the
    index itself when they are more than ``MENTIONS_COPY_ROWS``; either way the features are
    the same, and a dataset the copy lacks is read from the index."""
    from curated import golden

    protection, cutoff = need_street.protection(), need_street.cutoffs[-1]
    with open_lake(need_street.settings, read_only=True) as con:
        register_macros(con)
        pairs = need_features.linked_datasets()
        outside = ("iot", "door_access_events")  # linked, read by no known_records call
        assert outside not in pairs

        def linked(pair: tuple[str, str]) -> int:
            sql = f"SELECT count(*) FROM linked_records('{pair[0]}', '{pair[1]}')"
            return con.execute(sql).fetchone()[0]

        def left() -> int:
            [[n]] = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?",
                [need_features.LINKED],
            ).fetchall()
            return n

        with need_features.linked_mentions(con) as used:
            assert used is True
            [[copied, expected]] = con.execute(
                f"SELECT (SELECT count(*) FROM {need_features.LINKED}), count(*) "
                "FROM curated.person_mentions WHERE person_id IS NOT NULL AND "
                f"dept || '.' || dataset IN ({', '.join(repr(f'{d}.{s}') for d, s in pairs)})"
            ).fetchall()
            assert copied == expected > 1000
            through_copy = {p: linked(p) for p in (*pairs, outside)}
        assert left() == 0
        with need_features.linked_mentions(con, limit=copied - 1) as used:
            assert used is False
            assert left() == 0
            assert {p: linked(p) for p in (*pairs, outside)} == through_copy
        assert through_copy[outside] > 0 and through_copy[("gaj", "registered_residents")] > 0
        with_copy = features(con, protection, cutoff)
        monkeypatch.setattr(golden, "MENTIONS_COPY_ROWS", 0)
        from_index = features(con, protection, cutoff)
    assert with_copy.height > 500 and with_copy.equals(from_index)


def test_a_block_of_queries_reads_copies_of_the_staged_tables_when_they_are_few(
    need_street: NeedStreet, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    """Several cut-offs of a step read temporary copies of the staged tables the SQL reads
    (when their rows are at most ``STAGED_COPY_ROWS``: the copy is what ``linked_records``
    reads), dropped after it; more rows, or one query, read the lake's tables; the features
    are the same either way."""
    from marts.need_model import step

    pairs = need_features.linked_datasets()

    def copies_left(con) -> int:
        [[n]] = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name LIKE ?",
            [need_features.STAGED_COPY + "%"],
        ).fetchall()
        return n

    with open_lake(need_street.settings, read_only=True) as con:
        register_macros(con)
        pair = ("gaj", "registered_residents")
        sql = f"SELECT count(*) FROM linked_records('{pair[0]}', '{pair[1]}')"
        [[lake_rows]] = con.execute(sql).fetchall()
        with need_features.staged_copies(con) as copied:
            assert copied is True
            assert copies_left(con) == len(pairs) >= 10
            copy = f'temp.main."{need_features.STAGED_COPY}{pair[0]}__{pair[1]}"'
            assert con.execute(sql).fetchone()[0] == lake_rows > 500
            con.execute(f"DELETE FROM {copy} WHERE rowid % 2 = 0")  # the copy is what is read
            assert 0 < con.execute(sql).fetchone()[0] < lake_rows
        assert copies_left(con) == 0
        assert con.execute(sql).fetchone()[0] == lake_rows  # the lake's table again
        with need_features.staged_copies(con, limit=100) as copied:
            assert copied is False and copies_left(con) == 0

    made: list[bool] = []
    real = need_features.staged_copies

    @contextmanager
    def watched(con, limit=None):
        with real(con, limit) as copied:
            made.append(copied)
            yield copied

    monkeypatch.setattr(need_features, "staged_copies", watched)
    cutoffs = need_street.cutoffs[-3:]
    stored = {}
    for rows in (need_features.STAGED_COPY_ROWS, 0):
        monkeypatch.setattr(need_features, "STAGED_COPY_ROWS", rows)
        settings = copy_home(need_street.home, tmp_path / str(rows))
        with open_lake(settings) as con:
            with transaction(con):
                con.execute("DELETE FROM curated.need_features")
            step.store_features(con, need_street.protection(), cutoffs)
            step.store_features(con, need_street.protection(), cutoffs[:1])  # stored: none
            assert copies_left(con) == 0
            stored[rows] = read_features(con, need_street.protection(), cutoffs).sort(KEYS)
    assert made == [True, False]  # one block a step of several queries
    assert stored[0].equals(stored[need_features.STAGED_COPY_ROWS])
    expected = need_street.features.filter(pl.col("cutoff").is_in(cutoffs)).sort(KEYS)
    assert stored[0].equals(expected) and expected.height > 1000
