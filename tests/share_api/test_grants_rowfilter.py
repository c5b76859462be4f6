"""The row filter: a structured filter compiled to a sqlglot AST — fields checked against the
resource's columns, values literals (never pasted), errors naming positions, never values."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
import sqlglot

from share_api.rowfilter import RowFilterError, compile_filter, filter_fields, to_sql

FIELDS = ["community_code", "birth_date", "gender", "name"]
ROWS = [
    ("110105001001", "1950-03-01", "男", "张三"),
    ("110105001002", "1990-07-15", "女", "x' OR 1=1 --"),
    ("110105002001", None, "女", "李四"),
]


def run(row_filter: dict, rows: list[tuple] = ROWS, **kw) -> list[tuple]:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (community_code TEXT, birth_date TEXT, gender TEXT, name TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    where = to_sql(compile_filter(row_filter, FIELDS, **kw))
    return con.execute(f"SELECT * FROM t WHERE {where}").fetchall()


def test_comparisons_lists_prefix_and_logic() -> None:
    assert run({"field": "gender", "op": "eq", "value": "女"}) == ROWS[1:]
    assert run({"field": "community_code", "op": "prefix", "value": "1101050010"}) == ROWS[:2]
    assert run({"field": "gender", "op": "in", "value": ["男", "x"]}) == ROWS[:1]
    assert run({"field": "birth_date", "op": "is_null"}) == ROWS[2:]
    either = {"or": [{"field": "gender", "op": "eq", "value": "男"},
                     {"field": "birth_date", "op": "is_null"}]}  # fmt: skip
    assert run(either) == [ROWS[0], ROWS[2]]
    assert run({"not": either}) == [ROWS[1]]
    assert run({"field": "community_code", "op": "between",
                "value": ["110105001001", "110105001001"]}) == ROWS[:1]  # fmt: skip


def test_age_on_the_day_of_the_read() -> None:
    today = dt.date.today()
    assert run({"field": "birth_date", "op": "age_ge", "value": 60}) == ROWS[:1]
    young = run({"field": "birth_date", "op": "age_lt", "value": 60})
    assert young == [ROWS[1]]  # a null birth date is neither
    assert today.year - 1990 < 60


def test_an_age_is_counted_on_the_day_given_not_the_sessions_date() -> None:
    """Someone born 1966-12-04 turns 60 on 2026-12-04: in an "aged 60 and over" filter on
    that day, out of it the day before (the view's day is its snapshot's, in Beijing; the
    SQL session's current_date is UTC's and would be a day behind from 00:00 to 08:00)."""
    rows = [
        ("110105001001", "1966-12-04", "女", "王五"),
        ("110105001001", "1966-12-05", "男", "赵六"),
    ]
    sixty = {"field": "birth_date", "op": "age_ge", "value": 60}
    assert run(sixty, rows, today=dt.date(2026, 12, 4)) == rows[:1]
    assert run(sixty, rows, today=dt.date(2026, 12, 3)) == []
    assert run(sixty, rows, today=dt.date(2026, 12, 5)) == rows
    younger = {"field": "birth_date", "op": "age_lt", "value": 60}
    assert run(younger, rows, today=dt.date(2026, 12, 4)) == rows[1:]
    asked: list[int] = []

    def day() -> dt.date:
        asked.append(1)
        return dt.date(2026, 12, 4)

    assert run({"and": [sixty, {"not": sixty}]}, rows, today=day) == []
    assert run({"field": "gender", "op": "eq", "value": "女"}, rows, today=day) == rows[:1]
    assert asked == [1]  # once for the filter on ages, never for one without


@pytest.mark.parametrize(
    "evil",
    ["x' OR 1=1 --", "'; DROP TABLE t; --", '" OR ""="', "\\'; SELECT 1; --", "1) OR (1=1"],
)
def test_injection_is_a_value_compared_as_itself(evil: str) -> None:
    rows = run({"field": "name", "op": "eq", "value": evil})
    assert rows == [r for r in ROWS if r[3] == evil]
    sql = to_sql(compile_filter({"field": "name", "op": "in", "value": [evil]}, FIELDS))
    parsed = sqlglot.parse_one(sql, read="duckdb")
    assert [lit.this for lit in parsed.find_all(sqlglot.exp.Literal)] == [evil]


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ({"field": "secret_col", "op": "eq", "value": "v"}, "field"),
        ({"field": 'name"; --', "op": "eq", "value": "v"}, "field"),
        ({"field": "name", "op": "like", "value": "v"}, "op"),
        ({"field": "name", "op": "eq", "value": {"sql": "1=1"}}, "value"),
        ({"field": "name", "op": "in", "value": []}, "value"),
        ({"field": "birth_date", "op": "age_ge", "value": "60 OR 1=1"}, "value"),
        ({"and": [{"field": "name", "op": "eq", "value": "a"}, {"sql": "1=1"}]}, "and[1]"),
        ({"field": "name", "op": "is_null", "value": "x"}, "value"),
        ({"field": "name", "op": "eq", "value": "v", "extra": 1}, ""),
    ],
)
def test_refused_naming_the_place_never_the_value(bad: dict, where: str) -> None:
    with pytest.raises(RowFilterError) as caught:
        compile_filter(bad, FIELDS)
    message = str(caught.value)
    assert where in caught.value.at
    for text in ("1=1", "secret", "60 OR"):
        assert text not in message


def test_depth_and_size_bounded() -> None:
    deep: dict = {"field": "name", "op": "eq", "value": "a"}
    for _ in range(20):
        deep = {"not": deep}
    with pytest.raises(RowFilterError, match="deeper"):
        compile_filter(deep, FIELDS)
    wide = {"or": [{"field": "name", "op": "eq", "value": str(i)} for i in range(300)]}
    with pytest.raises(RowFilterError, match="nodes"):
        compile_filter(wide, FIELDS)


def test_fields_read() -> None:
    f = {"and": [{"field": "gender", "op": "eq", "value": "男"},
                 {"not": {"field": "birth_date", "op": "age_ge", "value": 3}}]}  # fmt: skip
    assert filter_fields(f, FIELDS) == {"gender", "birth_date"}
    assert compile_filter(None, FIELDS) is None


TYPES = {"age": "integer", "born": "date", "flag": "boolean", "name": "string"}


@pytest.mark.parametrize(
    "bad",
    [
        {"field": "age", "op": "ge", "value": "60 OR 1=1"},
        {"field": "age", "op": "in", "value": [1, "2"]},
        {"field": "born", "op": "eq", "value": 5},
        {"field": "born", "op": "between", "value": ["1950-01-01", "not a date"]},
        {"field": "name", "op": "eq", "value": 5},
        {"field": "flag", "op": "eq", "value": "true"},
        {"field": "age", "op": "prefix", "value": "6"},
        {"field": "age", "op": "age_ge", "value": 60},
    ],
)
def test_values_checked_against_the_catalogue_type(bad: dict) -> None:
    with pytest.raises(RowFilterError) as caught:
        compile_filter(bad, TYPES)
    assert "OR 1=1" not in str(caught.value) and "not a date" not in str(caught.value)


def test_typed_values_accepted() -> None:
    ok = {"and": [{"field": "age", "op": "ge", "value": 60},
                  {"field": "born", "op": "between", "value": ["1950-01-01", "1960-12-31"]},
                  {"field": "born", "op": "age_lt", "value": 90},
                  {"field": "flag", "op": "eq", "value": True},
                  {"field": "name", "op": "prefix", "value": "张"}]}  # fmt: skip
    assert compile_filter(ok, TYPES) is not None
