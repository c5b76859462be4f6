"""jsonPredicateHints and limitHint: a file goes only when its statistics prove no row
matches (three-valued logic, ``not`` pushed down); anything unreadable keeps every file;
the limit stops once the kept files hold enough rows. Checked against a row-by-row oracle
on generated tables (hypothesis)."""

from __future__ import annotations

import datetime as dt

import orjson
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from share_api.sharing import files, versions
from share_api.sharing.files import SharedFile, file_stats
from share_api.sharing.hints import prune
from tests.share_api.test_sharing_versions import KIND, make_grant

SCHEMA = pa.schema(
    [
        ("n", pa.int64()),
        ("s", pa.string()),
        ("d", pa.date32()),
        ("t", pa.timestamp("us")),
        ("x", pa.float64()),
        ("b", pa.bool_()),
    ]
)
WHEN = dt.datetime(2025, 1, 1)


def shared(part: int, table: pa.Table) -> SharedFile:
    return SharedFile(f"f{part}", "g1", 0, part, "data", table.num_rows, 100, "0" * 64,
                      file_stats(table), WHEN)  # fmt: skip


def table_of(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def row(n=None, s=None, d=None, t=None, x=None, b=None) -> dict:
    return {"n": n, "s": s, "d": d, "t": t, "x": x, "b": b}


# three files: n in 1..10, 20..30 (and nulls), all null
LOW = shared(0, table_of([row(1, "apple", dt.date(2024, 1, 1), WHEN, 0.5, True), row(10, "kiwi")]))
HIGH = shared(1, table_of([row(20, "pear", dt.date(2024, 6, 1)), row(30, "plum"), row()]))
NULLS = shared(2, table_of([row(), row()]))
FILES = [LOW, HIGH, NULLS]


TYPES = {"n": "int", "s": "string", "d": "date", "t": "timestamp", "x": "double", "b": "bool"}


def col(name: str, value_type: str | None = None) -> dict:
    return {"op": "column", "name": name, "valueType": value_type or TYPES[name.lower()]}


def lit(value: str, value_type: str = "int") -> dict:
    return {"op": "literal", "value": value, "valueType": value_type}


def op(name: str, *children: dict) -> dict:
    return {"op": name, "children": list(children)}


def kept(tree, files=FILES, limit=None) -> list[str]:
    hint = tree if tree is None or isinstance(tree, str) else orjson.dumps(tree).decode()
    return [f.id for f in prune(files, hint, limit, SCHEMA)]


def test_comparisons_drop_files_whose_bounds_exclude_every_row() -> None:
    assert kept(op("equal", col("n"), lit("25"))) == ["f1"]
    assert kept(op("equal", lit("5"), col("n"))) == ["f0"]  # either side
    assert kept(op("lessThan", col("n"), lit("20"))) == ["f0"]
    assert kept(op("lessThanOrEqual", col("n"), lit("20"))) == ["f0", "f1"]
    assert kept(op("greaterThan", col("n"), lit("10"))) == ["f1"]
    assert kept(op("greaterThanOrEqual", col("n"), lit("10"))) == ["f0", "f1"]
    assert kept(op("equal", col("n"), lit("15"))) == []  # in no file's range
    assert kept(op("equal", col("s"), lit("pear", "string"))) == ["f1"]
    assert kept(op("lessThan", col("d", "date"), lit("2024-03-01", "date"))) == ["f0"]
    assert kept(op("greaterThan", col("x", "double"), lit("0.6", "double"))) == []
    after = lit("2025-01-01T00:00:01Z", "timestamp")
    assert kept(op("greaterThanOrEqual", col("t", "timestamp"), after)) == []
    assert kept(op("lessThanOrEqual", col("t", "timestamp"), after)) == ["f0"]


def test_null_checks_and_negation() -> None:
    is_null = op("isNull", col("n"))
    assert kept(is_null) == ["f1", "f2"]
    assert kept(op("not", is_null)) == ["f0", "f1"]
    # NOT (n < 20) is n >= 20: a null n matches neither
    assert kept(op("not", op("lessThan", col("n"), lit("20")))) == ["f1"]
    assert kept(op("not", op("not", op("equal", col("n"), lit("25"))))) == ["f1"]
    # NOT (n = 7) may hold wherever n is not the one value 7
    single = shared(3, table_of([row(7), row(7), row()]))
    assert kept(op("not", op("equal", col("n"), lit("7"))), [single, LOW]) == ["f0"]


def test_and_or_and_de_morgan() -> None:
    low_n, kiwi = op("lessThan", col("n"), lit("5")), op("equal", col("s"), lit("kiwi", "string"))
    plum = op("equal", col("s"), lit("plum", "string"))
    assert kept(op("and", low_n, kiwi)) == ["f0"]
    assert kept(op("and", low_n, plum)) == []
    assert kept(op("or", low_n, plum)) == ["f0", "f1"]
    # NOT (n >= 5 OR s > "a"): n < 5 AND s <= "a": no file has s <= "a"
    big = op("greaterThanOrEqual", col("n"), lit("5"))
    after_a = op("greaterThan", col("s"), lit("a", "string"))
    assert kept(op("not", op("or", big, after_a))) == []
    # an unreadable child of an and is true for every file: the other one decides
    odd = {"op": "between", "children": []}
    assert kept(op("and", odd, plum)) == ["f1"]
    assert kept(op("or", odd, plum)) == ["f0", "f1", "f2"]


def test_anything_unreadable_keeps_every_file() -> None:
    everything = ["f0", "f1", "f2"]
    unreadable = [
        None,
        "",
        "{not json",
        "[1, 2]",
        '"a string"',
        {"op": "like", "children": [col("s"), lit("a%", "string")]},
        op("equal", col("missing", "int"), lit("1")),
        op("equal", col("n"), lit("seven")),  # does not parse as its type
        op("equal", col("n", "string"), lit("25", "string")),  # n compared as text
        op("equal", col("d", "date"), lit("2024-01-01T10:00:00", "timestamp")),
        op("equal", col("n"), {"op": "literal", "valueType": "int"}),  # no value
        op("equal", col("n"), lit("1", "interval")),
        op("equal", col("b", "bool"), lit("maybe", "bool")),
        op("equal", col("n")),
        op("not", col("n"), col("n")),
        op("and"),
        {"op": "equal", "children": "n"},
        {"children": []},
    ]
    for tree in unreadable:
        assert kept(tree) == everything, tree
    depth = 400  # deeper than the evaluator reads: kept, no recursion error
    inner = orjson.dumps(op("equal", col("n"), lit("25"))).decode()
    deep = '{"op":"not","children":[' * depth + inner + "]}" * depth
    assert kept(deep) == everything


def test_column_names_match_case_insensitively() -> None:
    assert kept(op("equal", col("N"), lit("25"))) == ["f1"]


def test_files_without_statistics_are_kept_and_empty_files_dropped() -> None:
    bare = SharedFile("fb", "g1", 0, 3, "data", 5, 10, "0" * 64, {}, WHEN)
    empty = shared(4, table_of([]))
    assert kept(op("equal", col("n"), lit("25")), [bare, empty]) == ["fb"]
    assert kept(None, [bare, empty]) == ["fb", "f4"]  # no predicate: nothing judged


def test_the_limit_stops_once_enough_rows_are_kept() -> None:
    assert kept(None, limit=1) == ["f0"]
    assert kept(None, limit=2) == ["f0"]
    assert kept(None, limit=3) == ["f0", "f1"]
    assert kept(None, limit=100) == ["f0", "f1", "f2"]
    assert kept(None, limit=0) == []
    assert kept(None, limit=-1) == ["f0", "f1", "f2"]  # nonsense: ignored
    # the limit counts only what the predicate keeps
    assert kept(op("greaterThan", col("n"), lit("15")), limit=1) == ["f1"]


# -- against a row-by-row oracle -------------------------------------------------------------

VALUES = {
    "n": st.one_of(st.none(), st.integers(-5, 5)),
    "s": st.one_of(st.none(), st.sampled_from(["a", "ab", "b", "ba", "c", "é", "z" * 40])),
    "d": st.one_of(st.none(), st.dates(dt.date(2024, 1, 1), dt.date(2024, 1, 9))),
}
LITERALS = {
    "n": (st.integers(-6, 6).map(str), "long"),
    "s": (st.sampled_from(["", "a", "ab", "b", "c", "é", "z" * 40, "zz"]), "string"),
    "d": (st.dates(dt.date(2023, 12, 31), dt.date(2024, 1, 10)).map(str), "date"),
}
COMPARISONS = ["equal", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual"]


@st.composite
def leaves(draw) -> dict:
    name = draw(st.sampled_from(sorted(LITERALS)))
    if draw(st.integers(0, 4)) == 0:
        return op("isNull", col(name, LITERALS[name][1]))
    values, value_type = LITERALS[name]
    pair = [col(name, value_type), lit(draw(values), value_type)]
    if draw(st.booleans()):
        pair.reverse()
    return op(draw(st.sampled_from(COMPARISONS)), *pair)


trees = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda c: op("and", *c)),
        st.lists(inner, min_size=2, max_size=3).map(lambda c: op("or", *c)),
        inner.map(lambda c: op("not", c)),
    ),
    max_leaves=6,
)


def truth(tree: dict, rec: dict) -> bool | None:
    """SQL's three-valued truth of ``tree`` for one row (None: unknown)."""
    kind, kids = tree["op"], tree.get("children", [])
    if kind == "and":
        got = [truth(k, rec) for k in kids]
        return False if False in got else (None if None in got else True)
    if kind == "or":
        got = [truth(k, rec) for k in kids]
        return True if True in got else (None if None in got else False)
    if kind == "not":
        got = truth(kids[0], rec)
        return None if got is None else not got
    if kind == "isNull":
        return rec[kids[0]["name"]] is None
    a, b = (value(k, rec) for k in kids)
    if a is None or b is None:
        return None
    return {"equal": a == b, "lessThan": a < b, "lessThanOrEqual": a <= b,
            "greaterThan": a > b, "greaterThanOrEqual": a >= b}[kind]  # fmt: skip


def value(leaf: dict, rec: dict):
    if leaf["op"] == "column":
        return rec[leaf["name"]]
    return {"long": int, "string": str, "date": dt.date.fromisoformat}[leaf["valueType"]](
        leaf["value"]
    )


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.lists(st.fixed_dictionaries(VALUES), min_size=0, max_size=4), min_size=1, max_size=4
    ),
    tree=trees,
)
def test_no_file_with_a_matching_row_is_ever_dropped(parts, tree) -> None:
    files = [shared(i, table_of([row(**r) for r in rows])) for i, rows in enumerate(parts)]
    left = set(kept(tree, files))
    for i, rows in enumerate(parts):
        if any(truth(tree, r) is True for r in rows):
            assert f"f{i}" in left


def test_a_grant_s_materialised_files_are_judged_by_their_own_statistics(service) -> None:
    grant = make_grant(service)
    version = versions.current_version(service, grant, KIND)
    made = files.files_of(service, grant, version, KIND)
    schema = files.schema_of(service, grant, version, KIND)
    first = files.read_table(service, made[0])["followup_id"][0].as_py()
    ids = {"op": "column", "name": "followup_id", "valueType": "string"}

    def judged(tree: dict) -> list[SharedFile]:
        return prune(made, orjson.dumps(tree).decode(), None, schema)

    assert judged(op("equal", ids, lit(first, "string"))) == made
    assert judged(op("lessThan", ids, lit("", "string"))) == []
    assert judged(op("isNull", ids)) == []
    assert judged(op("not", op("isNull", ids))) == made
    assert prune(made, None, 1, schema) == made[:1]
