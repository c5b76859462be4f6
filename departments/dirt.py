"""How real deliveries go wrong: every kind of defect and its seeded rate, in one place.

Rates are per eligible cell (cell kinds) or per record (row kinds). Each cell gets
at most one defect; the first kind that fires wins, in the order of ``CELL_KINDS``.
``recoverable`` says whether a correct standardiser can get the truth back from the
delivered value alone.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from departments import ids

RATES: dict[str, float] = {
    # citizen ID cells
    "id_15_digit": 0.03,  # of IDs of people born before 1999: old 15-digit number
    "bad_check_digit": 0.004,  # wrong check character (not recoverable)
    "fullwidth_digits": 0.006,  # ０１２… instead of 012…
    "lowercase_x": 0.25,  # of IDs ending in X: written x
    # dates and times
    "date_spelling": 0.03,  # one of DATE_SPELLINGS instead of YYYY-MM-DD
    "excel_serial": 0.02,  # Excel only: the date as a serial number cell
    "datetime_spelling": 0.02,  # one of DATETIME_SPELLINGS instead of YYYY-MM-DD HH:MM:SS
    # phones
    "phone_format": 0.04,  # +86, spaces, dashes
    # values valid in form but disagreeing with the authoritative department (not gaj itself)
    "wrong_value": 0.006,
    "gender_mismatch": 0.004,  # gender disagrees with the citizen ID
    "blank_required": 0.004,  # a required cell left empty
    "whitespace": 0.005,  # leading / trailing spaces
    # row kinds
    "mojibake": 0.001,  # one text cell garbled (UTF-8 bytes read as GBK)
    "duplicate_row": 0.004,  # exact copy of a record delivered again
    "stray_header": 0.002,  # CSV / Excel: the header row repeated inside the data (≥1 a file)
    "broken_line": 0.0005,  # JSON Lines: an unparseable, cut-off line
    # IoT platform (vectorised)
    "null_value": 0.003,  # a reading without its value
    "sentinel_value": 0.001,  # a reading of -999 (sensor fault code)
    "epoch_millis": 0.002,  # a timestamp as Unix epoch milliseconds instead of ISO text
    # what real exports write besides (issue 10, item 7)
    "placeholder": 0.05,  # of empty optional cells: 无, 不详, NULL, -, / … for "no value"
    "zero_width": 0.002,  # a zero-width character inside an ID, name or phone (not in CSV)
    "id_separators": 0.003,  # a citizen ID written 110105-19491231-0021
    "money_unit": 0.08,  # an amount typed 2400元, ￥2400, ￥2,400.00 (hand-kept Excel sheets)
    "dmy_date": 0.005,  # a date written 31/10/2026 (day first)
    "month_precision": 0.005,  # a (non-birth) date written to the month only: 2026年10月
    "phone_extension": 0.004,  # a mobile with an extension: 13812345678转8001
    "unknown_date": 0.002,  # a birth date written 1900-01-01, meaning "unknown"
    "excel_text": 0.004,  # CSV: an ID or phone kept as text for Excel: '1101… or ="1101…"
    "name_dot": 0.3,  # a name in parts joined by a look-alike of ·, or a full stop
    "name_padded": 0.05,  # a two-character name padded to a roster's width: 王　芳
    "ledger_row": 0.5,  # of Excel ledgers: a totals row and a footer (填表人：…) under the data
    "coded_value": 0.03,  # a gender written as the system stores it: GB/T 2261.1's 1/2, 男性/女性
    "count_unit": 0.08,  # a hand-kept ledger's count typed with its unit: 85岁, 3人
    "midnight_timestamp": 0.02,  # a system's date as its stored midnight: 2026-10-31 00:00:00.000
}

RECOVERABLE = {
    "id_15_digit": True, "bad_check_digit": False, "fullwidth_digits": True,
    "lowercase_x": True, "date_spelling": True, "excel_serial": True,
    "datetime_spelling": True, "phone_format": True, "wrong_value": False,
    "gender_mismatch": False, "blank_required": False, "whitespace": True, "mojibake": False,
    "duplicate_row": True, "stray_header": True, "broken_line": False,
    "null_value": False, "sentinel_value": False, "epoch_millis": True,
    "placeholder": True, "zero_width": True, "id_separators": True, "money_unit": True,
    "dmy_date": True, "phone_extension": True, "excel_text": True, "name_dot": True,
    "name_padded": True, "ledger_row": True, "coded_value": True,
    "count_unit": True, "midnight_timestamp": True,
    # the day (the birth date) is lost: the right outcome is the catalogue's documented policy
    # (first of the month, or quarantined; null), which the evaluation checks instead
    "month_precision": False, "unknown_date": False,
}  # fmt: skip

DATE_SPELLINGS: tuple[Callable[[dt.date], str], ...] = (
    lambda d: f"{d.year}/{d.month}/{d.day}",
    lambda d: f"{d.year}年{d.month}月{d.day}日",
    lambda d: f"{d:%Y%m%d}",
    lambda d: f"{d.year}.{d.month}.{d.day}",
    lambda d: f"{d.year}-{d.month}-{d.day} 00:00:00",
    lambda d: f"{d:%Y/%m/%d}",
    lambda d: f"{d.year}-{d.month}-{d.day}",
    lambda d: f"{d:%Y年%m月%d日}",
    lambda d: f"{d:%Y.%m.%d}",
    lambda d: f"{d:%Y-%m-%d}T00:00:00",
    lambda d: ids.fullwidth(f"{d:%Y-%m-%d}"),
    lambda d: f"{d:%Y-%m-%d 00:00:00}",
)
DATETIME_SPELLINGS: tuple[Callable[[dt.datetime], str], ...] = (
    lambda t: f"{t.year}/{t.month}/{t.day} {t:%H:%M:%S}",
    lambda t: f"{t:%Y-%m-%dT%H:%M:%S}",
    lambda t: f"{t.year}年{t.month}月{t.day}日 {t:%H:%M:%S}",
    lambda t: f"{t:%Y%m%d%H%M%S}",
    lambda t: f"{t:%Y-%m-%dT%H:%M:%S}+08:00",
)
PHONE_SPELLINGS: tuple[Callable[[str], str], ...] = (
    lambda m: f"+86 {m[:3]} {m[3:7]} {m[7:]}",
    lambda m: f"+86{m}",
    lambda m: f"{m[:3]}-{m[3:7]}-{m[7:]}",
    lambda m: f"{m[:3]} {m[3:7]} {m[7:]}",
    lambda m: f"86-{m}",
)
EXCEL_EPOCH = dt.date(1899, 12, 30)
# the simulator's own copies (an oracle independent of the standardiser's rules)
PLACEHOLDERS = ("无", "不详", "NULL", "-", "/", "暂无", "null", "N/A")
ZERO_WIDTH = ("\u200b", "\ufeff", "\u200c", "\u2060")
# a name in parts: the ID card's interpunct, and how exports write it instead (the simulator
# keeps its own copy; the hub's is catalog.identifiers)
NAME_DOT = "\u00b7"
NAME_STOPS = (".", "\uff0e")
NAME_LOOKALIKES = ("\u2022", "\u30fb", "\u2027")
ID_SEPARATED: tuple[Callable[[str], str], ...] = (
    lambda s: f"{s[:6]}-{s[6:14]}-{s[14:]}",
    lambda s: f"{s[:6]}–{s[6:14]}–{s[14:]}",
    lambda s: f"{s[:6]}-{s[6:]}",
)
MONEY_SPELLINGS: tuple[Callable[[int], str], ...] = (
    lambda v: f"{v}元",
    lambda v: f"￥{v}",
    lambda v: f"￥{v:,.2f}",
    lambda v: f"{v:,}.00",
    lambda v: f"RMB {v}",
    lambda v: f"{v} 元",
)
DMY_SPELLINGS: tuple[Callable[[dt.date], str], ...] = (
    lambda d: f"{d:%d/%m/%Y}",
    lambda d: f"{d.day}/{d.month}/{d.year}",
    lambda d: f"{d:%d.%m.%Y}",
)
MONTH_SPELLINGS: tuple[Callable[[dt.date], str], ...] = (
    lambda d: f"{d.year}年{d.month}月",
    lambda d: f"{d:%Y-%m}",
)
EXTENSION_SPELLINGS: tuple[Callable[[str, int], str], ...] = (
    lambda m, e: f"{m}转{e}",
    lambda m, e: f"{m} 转 {e}",
    lambda m, e: f"{m}ext.{e}",
    lambda m, e: f"{m}-分机{e}",
)
UNKNOWN_BIRTH = ("1900-01-01", "1900/1/1", "19000101")
EXCEL_TEXT: tuple[Callable[[str], str], ...] = (lambda s: f"'{s}", lambda s: f'="{s}"')
MAX_UNRECOVERABLE_SHARE = 0.1
"""At most this share of a delivery's records (rounded down) carry an unrecoverable defect
(the kinds a standardiser cannot undo: a delivery's gate quarantines them): the usual rates
give a few per cent on a delivery of hundreds of rows, where the cap never binds, but on a
few-row register one draw is a quarter of it — a tiny street's delivery of 4 rows failed the
hub's row gate on one gender mismatch. The records past the cap are delivered without their
unrecoverable defects (the cells as they are true; their recoverable defects kept); the truth
records only the defects delivered."""
# forms whose columns are typed: a number column cannot hold 无
TYPED_FORMS = ("parquet", "http_api")
EXPORT_KINDS = frozenset(
    {"placeholder", "zero_width", "id_separators", "money_unit", "dmy_date",
     "month_precision", "phone_extension", "unknown_date", "excel_text", "name_dot",
     "name_padded"}
)  # fmt: skip

NAME_KINDS = frozenset({"name_dot"})  # drawn from a stream of their own (Dirtier)
PADDED_KINDS = frozenset({"name_padded"})  # and these from a fourth
LEDGER_KINDS = frozenset({"ledger_row"})  # and a ledger's footer from a fifth
CODED_KINDS = frozenset({"coded_value"})  # and a system's codes from a sixth
# how systems store a gender (GB/T 2261.1-2003 人的性别代码: the code, or the standard's
# name for it); the simulator's own copy, independent of the catalogue's table
GENDER_CODES = {"男": ("1", "男性"), "女": ("2", "女性")}
UNIT_KINDS = frozenset({"count_unit"})  # and a ledger's units from a seventh
# the counts hand-kept ledgers type with their unit, by the column's header
COUNT_UNITS = {"年龄": "岁", "家庭人口数": "人"}
MIDNIGHT_KINDS = frozenset({"midnight_timestamp"})  # and a system's midnights from an eighth
# a date as a system stores and writes it: SQL Server's datetime, JDBC's Timestamp, and a
# serialiser set to UTC writing Beijing's midnight (the day before, 16:00 Z)
MIDNIGHT_SPELLINGS: tuple[Callable[[dt.date], str], ...] = (
    lambda d: f"{d:%Y-%m-%d} 00:00:00.000",
    lambda d: f"{d:%Y-%m-%d} 00:00:00.0",
    lambda d: f"{d - dt.timedelta(days=1):%Y-%m-%d}T16:00:00.000Z",
)
SYSTEM_FORMS = ("http_api", "sql_db", "json", "jsonl", "csv")  # exported by a system
# who fills a ledger in: the footer names them (a clerk's name is personal information too)
CLERKS = ("钱晓东", "孙丽华", "周建国", "吴秀英")
# hand-kept rosters and the exports made from them pad a two-character name to the width
# of a three-character one: a full-width space (a form's cell), or one or two spaces
NAME_PADDINGS = ("\u3000", " ", "  ")
PADDED_FORMS = ("excel", "csv")

# Column roles: what a column holds decides which defects it can get.
ROLES = (
    "cid",  # citizen ID
    "name",  # person name
    "gender",  # 男/女, checked against the ID
    "birth",  # birth date of the record's person (person.birth_date)
    "date",  # other dates
    "datetime",  # other timestamps
    "mobile",  # the record's person's mobile (person.mobile)
    "phone",  # other phone numbers
    "text",  # free text
    "str",  # other strings
    "num",  # numbers (only blanks)
    "money",  # amounts in yuan (blanks, a unit or a currency sign)
    "fixed",  # ids, codes, cursors: never dirtied
)


@dataclass(frozen=True)
class Col:
    source: str  # column header / key as delivered
    role: str
    required: bool = False


@dataclass
class Defect:
    field: str
    kind: str
    delivered: str
    truth: str

    @property
    def recoverable(self) -> bool:
        return RECOVERABLE[self.kind]


@dataclass
class Item:
    """One delivered row: a record (maybe defective), a stray header or a broken line."""

    cells: dict[str, object]
    clean: dict[str, object] | None
    defects: list[Defect] = field(default_factory=list)
    raw: str | None = None  # JSON Lines: the line as written, when broken


def _s(v: object) -> str:
    return "" if v is None else str(v)


def _mojibake(text: str) -> str:
    return text.encode("utf-8").decode("gbk", errors="replace").replace("\ufffd", "?")


def unrecoverable(item: Item) -> bool:
    """Whether the delivered row carries a defect no standardiser can undo."""
    return any(not d.recoverable for d in item.defects)


def repaired(cols: tuple[Col, ...], item: Item) -> Item:
    """``item`` without its unrecoverable defects: those cells as they are true."""
    assert item.clean is not None
    lost = {d.field for d in item.defects if not d.recoverable}
    cells = {c.source: item.clean.get(c.source) if c.source in lost else item.cells[c.source]
             for c in cols}  # fmt: skip
    return Item(cells, item.clean, [d for d in item.defects if d.recoverable])


class Dirtier:
    """Applies the defects of RATES to clean records, recording each one.

    The kinds of real exports (:data:`EXPORT_KINDS`) are drawn from a second random stream
    (seeded from the first without consuming it), and only for a cell the other kinds left
    alone: adding them left every earlier draw, and so every earlier street, as it was.
    """

    def __init__(self, rng: random.Random, form: str, authoritative: bool) -> None:
        self.rng, self.form, self.authoritative = rng, form, authoritative
        words = ",".join(map(str, rng.getstate()[1][:16]))  # the Mersenne state, no draw
        self.export_rng = random.Random("export:" + words)
        # names in parts (NAME_KINDS), a third stream: the export kinds drawn as before them
        self.names_rng = random.Random("names in parts:" + words)
        # padded names (PADDED_KINDS), a fourth: every earlier kind drawn as before them
        self.padding_rng = random.Random("padded names:" + words)
        self.ledger_rng = random.Random("ledger footers:" + words)  # LEDGER_KINDS, a fifth
        self.coded_rng = random.Random("system codes:" + words)  # CODED_KINDS, a sixth
        self.unit_rng = random.Random("count units:" + words)  # UNIT_KINDS, a seventh
        self.midnight_rng = random.Random("midnights:" + words)  # MIDNIGHT_KINDS, an eighth
        streams = (
            (MIDNIGHT_KINDS, self.midnight_rng), (UNIT_KINDS, self.unit_rng),
            (CODED_KINDS, self.coded_rng), (LEDGER_KINDS, self.ledger_rng),
            (PADDED_KINDS, self.padding_rng), (NAME_KINDS, self.names_rng),
            (EXPORT_KINDS, self.export_rng),
        )  # fmt: skip
        # each kind's stream, looked up once a draw (a cell draws several kinds: the scan of
        # the streams a draw was ~15 % of a simulation); a kind in two sets: the first wins
        self._stream: dict[str, random.Random] = {}
        for kinds, stream in streams:
            for kind in kinds:
                self._stream.setdefault(kind, stream)

    def hit(self, kind: str) -> bool:
        return self._stream.get(kind, self.rng).random() < RATES[kind]

    def cell(self, col: Col, value: object, record: dict) -> tuple[object, str | None]:
        """The delivered value and the defect kind, if any."""
        delivered, kind = self._classic_cell(col, value)
        if kind is None:
            return self._export_cell(col, value)
        return delivered, kind

    def _classic_cell(self, col: Col, value: object) -> tuple[object, str | None]:
        if value is None or value == "":
            return value, None
        role, v = col.role, value
        if col.required and role != "fixed" and self.hit("blank_required"):
            return None, "blank_required"
        if role == "cid":
            s = str(v)
            if s[6:8] == "19" and int(s[6:10]) < 1999 and self.hit("id_15_digit"):
                return ids.to_15_digit(s), "id_15_digit"
            if self.hit("bad_check_digit"):
                return ids.wrong_check_char(s), "bad_check_digit"
            if self.hit("fullwidth_digits"):
                return ids.fullwidth(s), "fullwidth_digits"
            if s.endswith("X") and self.hit("lowercase_x"):
                return s[:-1] + "x", "lowercase_x"
        elif role == "gender":
            if self.hit("gender_mismatch"):
                return ("女" if v == "男" else "男"), "gender_mismatch"
        elif role in ("birth", "date"):
            d = dt.date.fromisoformat(str(v))
            if role == "birth" and not self.authoritative and self.hit("wrong_value"):
                return (d + dt.timedelta(days=self.rng.choice((-1, 1)) * self.rng.randint(
                    1, 400))).isoformat(), "wrong_value"  # fmt: skip
            if self.form == "excel" and self.hit("excel_serial"):
                return (d - EXCEL_EPOCH).days, "excel_serial"
            if self.hit("date_spelling"):
                return self.rng.choice(DATE_SPELLINGS)(d), "date_spelling"
        elif role == "datetime":
            if self.hit("datetime_spelling"):
                t = dt.datetime.fromisoformat(str(v))
                return self.rng.choice(DATETIME_SPELLINGS)(t), "datetime_spelling"
        elif role in ("mobile", "phone"):
            s = str(v)
            if role == "mobile" and not self.authoritative and self.hit("wrong_value"):
                other = s[:3] + f"{self.rng.randrange(10**8):08d}"
                if other != s:
                    return other, "wrong_value"
            if len(s) == 11 and self.hit("phone_format"):
                return self.rng.choice(PHONE_SPELLINGS)(s), "phone_format"
        if role in ("cid", "name", "str", "text", "mobile", "phone") and self.hit("whitespace"):
            return self.rng.choice((" ", "  ", "\u3000")) + str(v) + self.rng.choice(("", " ")), (
                "whitespace"
            )
        return value, None

    def _ledger_footer(self, cols: tuple[Col, ...], records: int) -> list[Item]:
        """A hand-kept ledger's last rows: its total, and who filled it in and when, in
        whatever cells were at hand (never a key's: those rows hold no holder)."""
        blank = dict.fromkeys((c.source for c in cols), "")
        free = [c.source for c in cols if c.role not in ("cid", "fixed")]
        rng = self.ledger_rng
        total = {**blank, free[0]: "合计", free[1]: f"{records}人"}
        footer = {**blank, free[0]: f"填表人：{rng.choice(CLERKS)}",
                  free[-1]: f"填报日期：{rng.randint(1, 28)}日"}  # fmt: skip
        return [Item(row, None, [Defect("*", "ledger_row", "", "")]) for row in (total, footer)]

    def _export_cell(self, col: Col, value: object) -> tuple[object, str | None]:
        """The kinds of real exports, on a cell the classic kinds left alone."""
        role, rng = col.role, self.export_rng
        if value is None or value == "":
            typed = role in ("num", "money") and self.form in TYPED_FORMS
            if not col.required and role != "fixed" and not typed and self.hit("placeholder"):
                return rng.choice(PLACEHOLDERS), "placeholder"
            return value, None
        s = str(value)
        if role == "gender" and s in GENDER_CODES and self.hit("coded_value"):
            return self.coded_rng.choice(GENDER_CODES[s]), "coded_value"
        two = role == "name" and len(s) == 2 and self.form in PADDED_FORMS
        if two and self.hit("name_padded"):
            return s[0] + self.padding_rng.choice(NAME_PADDINGS) + s[1], "name_padded"
        if role == "name" and NAME_DOT in s and self.hit("name_dot"):
            # a GBK file holds no • or ・: its exports join the parts with full stops
            joins = NAME_STOPS if self.form == "csv" else NAME_STOPS + NAME_LOOKALIKES
            return s.replace(NAME_DOT, self.names_rng.choice(joins)), "name_dot"
        if role == "cid" and self.hit("id_separators"):
            return rng.choice(ID_SEPARATED)(s), "id_separators"
        if role in ("birth", "date"):
            d = dt.date.fromisoformat(s)
            if role == "birth" and self.hit("unknown_date"):
                return rng.choice(UNKNOWN_BIRTH), "unknown_date"
            if role == "date" and self.hit("month_precision"):
                return rng.choice(MONTH_SPELLINGS)(d), "month_precision"
            if self.hit("dmy_date"):
                return rng.choice(DMY_SPELLINGS)(d), "dmy_date"
            if self.form in SYSTEM_FORMS and self.hit("midnight_timestamp"):
                return self.midnight_rng.choice(MIDNIGHT_SPELLINGS)(d), "midnight_timestamp"
        if role in ("mobile", "phone") and len(s) == 11 and self.hit("phone_extension"):
            return rng.choice(EXTENSION_SPELLINGS)(s, rng.randint(1, 9999)), "phone_extension"
        typed = self.form in TYPED_FORMS
        if role == "money" and isinstance(value, int) and not typed and self.hit("money_unit"):
            return rng.choice(MONEY_SPELLINGS)(value), "money_unit"
        unit = COUNT_UNITS.get(col.source) if self.form == "excel" else None
        if role == "num" and unit and isinstance(value, int) and self.hit("count_unit"):
            return f"{value}{self.unit_rng.choice(('', ' '))}{unit}", "count_unit"
        zero_width_ok = self.form != "csv"  # a GBK file cannot hold one: no CSV gets one
        if role in ("cid", "name", "mobile", "phone") and zero_width_ok and self.hit("zero_width"):
            at = rng.randint(1, len(s) - 1) if len(s) > 1 else 0
            return s[:at] + rng.choice(ZERO_WIDTH) + s[at:], "zero_width"
        # a CSV meant for Excel: a long number marked as text (an xlsx cell holds the text)
        excel_text_ok = self.form == "csv" and role in ("cid", "mobile", "phone")
        if excel_text_ok and self.hit("excel_text"):
            return rng.choice(EXCEL_TEXT)(s), "excel_text"
        return value, None

    def record(self, cols: tuple[Col, ...], clean: dict) -> Item:
        cells: dict[str, object] = {}
        defects: list[Defect] = []
        for col in cols:
            value = clean.get(col.source)
            delivered, kind = self.cell(col, value, clean)
            cells[col.source] = delivered
            if kind:
                defects.append(Defect(col.source, kind, _s(delivered), _s(value)))
        if self.hit("mojibake"):
            texts = [
                c for c in cols if c.role in ("name", "text") and isinstance(cells[c.source], str)
            ]
            texts = [c for c in texts if not any(d.field == c.source for d in defects)]
            if texts:
                col = self.rng.choice(texts)
                garbled = _mojibake(str(cells[col.source]))
                if garbled != cells[col.source]:
                    cells[col.source] = garbled
                    defects.append(Defect(col.source, "mojibake", garbled, _s(clean[col.source])))
        return Item(cells, clean, defects)

    def deliver(self, cols: tuple[Col, ...], records: list[dict]) -> list[Item]:
        """Dirty records plus duplicates, stray headers (CSV/Excel) and broken lines (JSONL)."""
        items: list[Item] = []
        allowed = int(MAX_UNRECOVERABLE_SHARE * len(records))
        for rec in records:
            item = self.record(cols, rec)
            if unrecoverable(item):
                item = item if allowed > 0 else repaired(cols, item)
                allowed -= 1
            items.append(item)
            if self.hit("duplicate_row"):
                dup = Item(
                    dict(item.cells), rec, [*item.defects, Defect("*", "duplicate_row", "", "")]
                )
                items.append(dup)
        if self.form in ("csv", "excel") and len(items) >= 20:
            n = max(1, round(len(items) * RATES["stray_header"]))
            for pos in sorted(self.rng.sample(range(5, len(items)), n), reverse=True):
                header = {c.source: c.source for c in cols}
                items.insert(pos, Item(header, None, [Defect("*", "stray_header", "", "")]))
        if self.form == "excel" and len(items) >= 20 and self.hit("ledger_row"):
            items += self._ledger_footer(cols, sum(1 for i in items if i.clean is not None))
        if self.form == "jsonl":
            for item in items:
                if item.clean is None or not self.hit("broken_line"):
                    continue
                if unrecoverable(item) or allowed > 0:  # a row lost once counts once
                    allowed -= not unrecoverable(item)
                    line = json.dumps(item.cells, ensure_ascii=False)
                    item.raw = line[: len(line) // 2]
                    # the cells are lost with the line: only the broken line is observable
                    item.defects = [Defect("*", "broken_line", item.raw, line)]
        return items
