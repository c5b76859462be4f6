"""The simulator's dirt of real exports (issue 10, item 7): each kind drawn at its seeded
rate, recorded with its truth, and — where recoverable — repaired to that truth by the
standardiser, an independent implementation (the simulator keeps its own spellings)."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest

from catalog.loader import load_catalogue
from catalog.model import FieldSpec
from departments import dirt
from departments.dirt import Col, Dirtier
from quality.standardise import field_expr

NEW_KINDS = (
    "placeholder", "zero_width", "id_separators", "money_unit", "dmy_date",
    "month_precision", "phone_extension", "unknown_date", "excel_text",
)  # fmt: skip


@pytest.fixture(scope="module")
def cat():
    return load_catalogue()


def only(monkeypatch, kind: str) -> None:
    """Every defect off but ``kind``, which always fires."""
    for k in dirt.RATES:
        monkeypatch.setitem(dirt.RATES, k, 1.0 if k == kind else 0.0)


def draw(kind: str, col: Col, value: object, form: str = "excel", n: int = 40) -> list:
    """``n`` delivered values of one cell with only ``kind`` switched on (see :func:`only`)."""
    d = Dirtier(random.Random(3), form, authoritative=False)
    return [d.cell(col, value, {}) for _ in range(n)]


def standardised(f: FieldSpec, values: list[object], excel: bool = False) -> list:
    frame = pl.DataFrame({f.name: [None if v is None else str(v) for v in values]})
    return frame.select(field_expr(f, excel_serials=excel))[f.name].to_list()


def test_new_kinds_are_rated_and_marked(cat):
    for kind in NEW_KINDS:
        assert 0 < dirt.RATES[kind] <= 0.1
        assert kind in dirt.RECOVERABLE
    assert not dirt.RECOVERABLE["month_precision"] and not dirt.RECOVERABLE["unknown_date"]


@pytest.mark.parametrize(
    ("kind", "ref", "field", "col", "truth"),
    [
        ("id_separators", "mzj.elderly_alone", "citizen_id", Col("身份证号码", "cid", True),
         "11010519491231002X"),
        ("zero_width", "mzj.elderly_alone", "citizen_id", Col("身份证号码", "cid", True),
         "11010519491231002X"),
        ("zero_width", "mzj.elderly_alone", "name", Col("姓名", "name", True), "张三丰"),
        ("money_unit", "mzj.old_age_allowance", "allowance_cny",
         Col("补贴标准（元/月）", "money", True), 2400),
        ("dmy_date", "mzj.elderly_alone", "registered_on", Col("登记日期", "date"),
         "2026-10-07"),
        ("dmy_date", "mzj.elderly_alone", "birth_date", Col("出生日期", "birth", True),
         "1949-12-31"),
        ("phone_extension", "mzj.elderly_alone", "mobile", Col("联系电话", "mobile"),
         "13812345678"),
    ],
)  # fmt: skip
def test_recoverable_kinds_come_back_to_the_truth(monkeypatch, cat, kind, ref, field, col, truth):
    only(monkeypatch, kind)
    got = draw(kind, col, truth)
    assert {k for _, k in got} == {kind}
    delivered = [v for v, _ in got]
    assert all(str(v) != str(truth) for v in delivered)
    assert len(set(delivered)) > 1  # several spellings
    f = cat.dataset(ref)[1].field(field)
    expected = dt.date.fromisoformat(truth) if f.type.value == "date" else truth
    assert standardised(f, delivered) == [expected] * len(delivered)


def test_placeholders_only_in_empty_optional_cells(monkeypatch, cat):
    only(monkeypatch, "placeholder")
    got = draw("placeholder", Col("空腹血糖", "num"), None, form="csv")
    assert {k for _, k in got} == {"placeholder"}
    assert {v for v, _ in got} <= set(dirt.PLACEHOLDERS)
    f = cat.dataset("wjw.chronic_followups")[1].field("fasting_glucose_mmol")
    assert standardised(f, [v for v, _ in got]) == [None] * len(got)
    # a required cell, a value, a typed (Parquet/API) number column: never
    assert {k for _, k in draw("placeholder", Col("x", "str", True), None)} == {None}
    assert {k for _, k in draw("placeholder", Col("x", "str"), "有值")} == {None}
    assert {k for _, k in draw("placeholder", Col("x", "num"), None, form="parquet")} == {None}


def test_month_only_and_unknown_dates_follow_the_catalogue_rules(monkeypatch, cat):
    _, ds = cat.dataset("mzj.elderly_alone")
    only(monkeypatch, "month_precision")
    got = draw("month_precision", Col("登记日期", "date"), "2026-10-17")
    assert {k for _, k in got} == {"month_precision"}
    assert standardised(ds.field("registered_on"), [v for v, _ in got]) == [
        dt.date(2026, 10, 1)
    ] * len(got)
    assert {k for _, k in draw("month_precision", Col("出生日期", "birth"), "1949-12-31")} == {
        None
    }  # never a birth date
    only(monkeypatch, "unknown_date")
    got = draw("unknown_date", Col("出生日期", "birth"), "1949-12-31")
    assert {k for _, k in got} == {"unknown_date"}
    assert standardised(ds.field("birth_date"), [v for v, _ in got]) == [None] * len(got)


def test_excel_text_markers_only_in_a_csv_and_only_on_ids_and_phones(monkeypatch, cat):
    only(monkeypatch, "excel_text")
    ds = cat.dataset("wjw.elderly_health_checks")[1]
    truth = "11010519491231002X"
    got = draw("excel_text", Col("身份证号", "cid", True), truth, form="csv")
    assert {k for _, k in got} == {"excel_text"}
    delivered = {v for v, _ in got}
    assert delivered == {f"'{truth}", f'="{truth}"'}
    assert standardised(ds.field("citizen_id"), sorted(delivered)) == [truth, truth]
    assert {k for _, k in draw("excel_text", Col("x", "cid"), truth, form="excel")} == {None}
    assert {k for _, k in draw("excel_text", Col("姓名", "name"), "张三", form="csv")} == {None}


def test_no_zero_width_character_in_a_csv(monkeypatch):
    only(monkeypatch, "zero_width")
    assert {k for _, k in draw("zero_width", Col("姓名", "name"), "张三", form="csv")} == {None}


def test_seeded_rates(cat):
    """Drawn at the documented rate (binomial, 4 standard deviations) and the same twice."""
    cols = (Col("身份证号码", "cid", True), Col("登记日期", "date"), Col("联系电话", "mobile"),
            Col("补贴", "money", True), Col("备注", "str"))  # fmt: skip
    record = {"身份证号码": "11010519491231002X", "登记日期": "2026-10-17",
              "联系电话": "13812345678", "补贴": 2400, "备注": None}  # fmt: skip
    n = 20_000

    def kinds(seed: int) -> list[str]:
        d = Dirtier(random.Random(seed), "excel", authoritative=True)
        return [x.kind for _ in range(n) for x in d.record(cols, record).defects]

    first = kinds(11)
    assert first == kinds(11)
    for kind, eligible in (("id_separators", n), ("placeholder", n), ("money_unit", n)):
        p = dirt.RATES[kind]
        sd = (eligible * p * (1 - p)) ** 0.5
        assert abs(first.count(kind) - eligible * p) < 4 * sd + 1, kind
    for kind in ("dmy_date", "month_precision", "phone_extension", "zero_width"):
        assert first.count(kind) > 0, kind


@pytest.mark.parametrize(("form", "n"), [("excel", 4), ("excel", 25), ("jsonl", 4), ("jsonl", 25)])
def test_a_delivery_keeps_its_unrecoverable_rows_under_the_cap(monkeypatch, form, n):
    """A few-row delivery cannot fail the row gate on the usual dirt: with every gender cell
    mismatched (and, as JSON Lines, every line broken), at most a tenth of the records,
    rounded down, carry an unrecoverable defect; the rest are delivered true."""
    only(monkeypatch, "gender_mismatch")
    monkeypatch.setitem(dirt.RATES, "broken_line", 1.0)
    cols = (Col("姓名", "name"), Col("性别", "gender"))
    records = [{"姓名": f"张{i}", "性别": "男"} for i in range(n)]
    items = Dirtier(random.Random(5), form, authoritative=False).deliver(cols, records)
    lost = [it for it in items if dirt.unrecoverable(it)]
    assert len(lost) == int(dirt.MAX_UNRECOVERABLE_SHARE * n)
    for it in items:
        if it.clean is not None and not dirt.unrecoverable(it):  # not a stray header
            assert it.cells == it.clean and it.defects == []


def test_a_name_in_parts_is_written_with_a_look_alike_or_a_full_stop(monkeypatch, cat):
    only(monkeypatch, "name_dot")
    truth = "买买提·艾力"
    col = Col("姓名", "name", True)
    got = draw("name_dot", col, truth)
    assert {k for _, k in got} == {"name_dot"}
    delivered = sorted({v for v, _ in got})
    assert len(delivered) > 2 and truth not in delivered
    for ref, field in (("mzj.elderly_alone", "name"), ("jyj.school_enrolment", "student_name")):
        f = cat.dataset(ref)[1].field(field)  # a pupil's name is pii: minor, concept person.name
        assert standardised(f, delivered) == [truth] * len(delivered)
    in_csv = {v for v, _ in draw("name_dot", col, truth, form="csv")}
    assert in_csv <= {"买买提.艾力", "买买提．艾力"}
    for v in in_csv:
        v.encode("gbk")  # a GBK delivery can hold it
    assert {k for _, k in draw("name_dot", col, "张三丰")} == {None}  # one part: nothing to do


def test_about_one_resident_in_a_hundred_has_a_name_in_parts():
    from departments.world import NAME_IN_PARTS_SHARE, build_world

    people = build_world(3_000, 7, dt.date(2026, 11, 20)).people
    in_parts = [p for p in people if "·" in p.name]
    n, share = len(people), NAME_IN_PARTS_SHARE
    assert abs(len(in_parts) - n * share) < 4 * (n * share * (1 - share)) ** 0.5 + 1
    assert all(len(part) >= 2 for p in in_parts for part in p.name.split("·"))


def test_a_two_character_name_is_padded_in_rosters_only(monkeypatch, cat):
    only(monkeypatch, "name_padded")
    col = Col("姓名", "name", True)
    for form in ("excel", "csv"):
        got = draw("name_padded", col, "王芳", form=form)
        assert {k for _, k in got} == {"name_padded"}
        delivered = sorted({v for v, _ in got})
        assert set(delivered) == {"王\u3000芳", "王 芳", "王  芳"}
        for ref, field in (("mzj.elderly_alone", "name"), ("jyj.school_enrolment", "student_name")):
            f = cat.dataset(ref)[1].field(field)
            assert standardised(f, delivered) == ["王芳"] * len(delivered)
    assert {k for _, k in draw("name_padded", col, "欧阳娜娜")} == {None}  # not two characters
    assert {k for _, k in draw("name_padded", col, "王芳", form="http_api")} == {None}


def test_a_ledger_ends_with_its_total_and_footer_in_excel_only(monkeypatch):
    only(monkeypatch, "ledger_row")
    cols = (Col("姓名", "name", True), Col("身份证号码", "cid", True), Col("社区", "str"),
            Col("登记日期", "date"))  # fmt: skip
    records = [{"姓名": f"张{i}", "身份证号码": f"{i:018d}", "社区": "秀水", "登记日期": "2026-11-01"}
               for i in range(25)]  # fmt: skip
    items = Dirtier(random.Random(5), "excel", authoritative=False).deliver(cols, records)
    *rows, total, footer = items  # (a stray header among the rows: one a file at least)
    assert sum(it.clean is not None for it in rows) == 25
    assert [d.kind for it in (total, footer) for d in it.defects] == ["ledger_row"] * 2
    assert total.clean is None and total.cells["姓名"] == "合计" and total.cells["社区"] == "25人"
    assert footer.cells["姓名"].startswith("填表人：") and footer.cells["登记日期"].startswith(
        "填报"
    )
    assert total.cells["身份证号码"] == footer.cells["身份证号码"] == ""  # no holder's key
    for form in ("csv", "jsonl"):
        got = Dirtier(random.Random(5), form, authoritative=False).deliver(cols, records)
        assert not any(d.kind == "ledger_row" for it in got for d in it.defects)


def test_a_gender_is_written_as_the_systems_code_in_every_form(monkeypatch, cat):
    only(monkeypatch, "coded_value")
    col = Col("性别", "gender", True)
    for form in ("excel", "csv", "http_api", "sql_db"):
        for truth, spellings in (("男", {"1", "男性"}), ("女", {"2", "女性"})):
            got = draw("coded_value", col, truth, form=form)
            assert {k for _, k in got} == {"coded_value"}
            delivered = sorted({v for v, _ in got})
            assert set(delivered) == spellings
            for ref in ("mzj.elderly_alone", "gaj.registered_residents", "jyj.school_enrolment"):
                f = cat.dataset(ref)[1].field("gender")
                assert standardised(f, delivered) == [truth] * len(delivered)
    assert {k for _, k in draw("coded_value", Col("姓名", "name", True), "王芳")} == {None}


def test_system_codes_leave_every_earlier_draw_as_it_was(monkeypatch):
    col, rows, rate = Col("性别", "gender", True), ["男", "女"] * 200, dirt.RATES["coded_value"]

    def street(rate: float) -> list:
        monkeypatch.setitem(dirt.RATES, "coded_value", rate)
        d = Dirtier(random.Random(7), "csv", authoritative=False)
        return [
            d.record((col, Col("姓名", "name", True)), {"性别": g, "姓名": "王芳"}) for g in rows
        ]

    before, after = street(0.0), street(rate)
    coded = [
        i for i, item in enumerate(after) if any(x.kind == "coded_value" for x in item.defects)
    ]
    assert 0 < len(coded) < len(rows) // 10
    same = [i for i in range(len(rows)) if i not in coded]
    assert [before[i].cells for i in same] == [after[i].cells for i in same]


def test_a_ledgers_count_is_typed_with_its_unit_in_excel_only(monkeypatch, cat):
    only(monkeypatch, "count_unit")
    for header, ref, name, truth, unit in (
        ("年龄", "mzj.old_age_allowance", "age", 85, "岁"),
        ("家庭人口数", "mzj.minimum_living", "household_size", 3, "人"),
    ):
        col = Col(header, "num", True)
        got = draw("count_unit", col, truth)
        assert {k for _, k in got} == {"count_unit"}
        delivered = sorted({v for v, _ in got})
        assert delivered == [f"{truth} {unit}", f"{truth}{unit}"]
        f = cat.dataset(ref)[1].field(name)
        assert standardised(f, delivered, excel=True) == [truth, truth]
        assert {k for _, k in draw("count_unit", col, truth, form="csv")} == {None}
    assert {k for _, k in draw("count_unit", Col("户数", "num"), 12)} == {None}  # no unit known


def test_a_systems_date_is_written_as_its_stored_midnight(monkeypatch, cat):
    only(monkeypatch, "midnight_timestamp")
    for header, role, ref, name, truth in (
        ("出生日期", "birth", "wjw.elderly_health_checks", "birth_date", dt.date(1949, 12, 31)),
        ("reg_date", "date", "rsj.employment_registration", "reg_date", dt.date(2026, 1, 1)),
    ):
        col = Col(header, role, True)
        for form in ("csv", "http_api", "sql_db"):
            got = draw("midnight_timestamp", col, truth.isoformat(), form=form)
            assert {k for _, k in got} == {"midnight_timestamp"}
            delivered = sorted({v for v, _ in got})
            assert len(delivered) == 3 and truth.isoformat() not in delivered
            f = cat.dataset(ref)[1].field(name)
            assert standardised(f, delivered) == [truth] * 3
        assert {k for _, k in draw("midnight_timestamp", col, truth.isoformat())} == {None}


def test_a_kind_draws_from_its_own_stream_and_no_other() -> None:
    """Every kind moves one stream, one draw: the first set listing it names the stream
    (a kind in two sets, as ``name_dot``, draws from the first), any other kind the
    Dirtier's own; the draw is that stream's next number against the kind's rate."""
    from departments import dirt

    order = (
        (dirt.MIDNIGHT_KINDS, "midnight_rng"), (dirt.UNIT_KINDS, "unit_rng"),
        (dirt.CODED_KINDS, "coded_rng"), (dirt.LEDGER_KINDS, "ledger_rng"),
        (dirt.PADDED_KINDS, "padding_rng"), (dirt.NAME_KINDS, "names_rng"),
        (dirt.EXPORT_KINDS, "export_rng"),
    )  # fmt: skip
    assert "name_dot" in dirt.NAME_KINDS & dirt.EXPORT_KINDS
    seen = set()
    for kind in sorted(dirt.RATES):
        stream = next((name for kinds, name in order if kind in kinds), "rng")
        seen.add(stream)
        d = Dirtier(random.Random(11), "csv", authoritative=False)
        twin = getattr(Dirtier(random.Random(11), "csv", authoritative=False), stream)
        streams = {n: r for n, r in vars(d).items() if isinstance(r, random.Random)}
        before = {n: r.getstate() for n, r in streams.items()}
        d.hit(kind)
        assert {n for n, r in streams.items() if r.getstate() != before[n]} == {stream}, kind
        twin.random()  # the draw that hit made
        assert d.hit(kind) == (twin.random() < dirt.RATES[kind])
    assert seen == {name for _, name in order} | {"rng"}
