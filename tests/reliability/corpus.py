"""Hostile deliveries made from the simulator's own files: the corpus of issue 9.

Each :class:`Variant` is one delivery as a broken export, a careless operator or
a hostile sender would leave it in ``inbox/<dept>/``: nesting bombs, truncated
files, broken lines, bad bytes, oversized fields, empty files, missing or
stray headers, duplicate JSON keys, non-objects, re-deliveries, symbolic links,
a FIFO, a directory, odd file names, corrupt or oversized workbooks, a file
still being written. Each knows the dataset it targets, how to write itself
into the inbox of a copied home, and the outcome expected (:class:`Expect`).

Every hostile row carries marker values (:data:`MARKERS`: a valid but unused
citizen ID per variant, a mobile, two names) that must never leak into a log,
a reason or a report. Variants get fresh key values for their hostile rows, so
a row wrongly loaded cannot disturb the key checks of the other deliveries.

``build_corpus(home, manifest)`` returns the variants; ``plant(home, variants)``
writes them all at once (settled files dated into the past, the one "still
being written" dated now). File names sort after the street's own delivery of
the same dataset, so that delivery is read first.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import polars as pl
import yaml
from openpyxl import load_workbook
from stdnum.cn import ric

from departments.simulate import sim_dir_for

CATALOG_DIR = Path(__file__).resolve().parents[2] / "catalog" / "departments"

# ------------------------------------------------------------------ limits
# small limits so that the corpus stays small and fast (env of the driver's child)
LIMITS = {
    "STREETHUB_SETTLE_SECONDS": "3",
    "STREETHUB_MAX_JSON_DEPTH": "64",
    "STREETHUB_MAX_RECORD_BYTES": str(256 * 1024),
    "STREETHUB_MAX_FILE_BYTES": str(2 * 1024 * 1024),
    "STREETHUB_XLSX_MAX_UNCOMPRESSED_BYTES": str(4 * 1024 * 1024),
    "STREETHUB_XLSX_MAX_MEMBERS": "50",
    "STREETHUB_SIM_API_FAULT_RATE": "0",
}
SETTLE_SECONDS = float(LIMITS["STREETHUB_SETTLE_SECONDS"])
BIG = 300 * 1024  # a field just over max_record_bytes
BOMB_DEPTH = 100_000

# ------------------------------------------------------------------ markers
MARK_NAME = "测试甲乙丙"
MARK_NAME_2 = "测试甲乙丁"
MARK_MOBILE = "19987654321"


def citizen_id(birth: dt.date, seq: str = "987") -> str:
    """A valid GB 11643 citizen ID of 建外街道 (110105) with its check digit."""
    base = f"110105{birth:%Y%m%d}{seq}"
    return base + ric.calc_check_digit(base + "?")  # stdnum drops the last character


def marker_id(index: int) -> str:
    """The marker citizen ID of variant ``index``: valid, and unique to the corpus."""
    return citizen_id(dt.date(1931, 1, 1) + dt.timedelta(days=index))


MAX_VARIANTS = 200
MARKERS: tuple[str, ...] = (
    MARK_NAME,
    MARK_NAME_2,
    MARK_MOBILE,
    *(marker_id(i) for i in range(MAX_VARIANTS)),
)


def marker_needles() -> list[bytes]:
    """Every byte form a marker may take in a log: UTF-8, GBK and JSON ``\\u`` escapes."""
    needles: set[bytes] = set()
    for m in MARKERS:
        needles.add(m.encode("utf-8"))
        needles.add(m.encode("gbk"))
        esc = json.dumps(m)[1:-1]
        needles.add(esc.encode("ascii"))
        needles.add(esc.upper().replace("\\U", "\\u").encode("ascii"))
    return sorted(needles)


# ------------------------------------------------------------------ expectations
@dataclass(frozen=True)
class Expect:
    """What one variant must become.

    - ``status`` 'failed': one account, failed, reason containing one of ``phrases``
      (``refused``: the reason also says "refused");
    - ``status`` 'loaded': one account, loaded, ``quarantined`` rows at raw (exact,
      or at least when ``exact`` is False) whose reasons contain one of ``phrases``,
      ``rows_read`` when known, the rest loaded;
    - ``status`` 'waiting': no account in the first run, loaded in the next;
    - ``redelivery_of``: the staged account skips every row the earlier delivery
      staged, except ``changed`` rows, which replace (upsert) or conflict.
    """

    status: str
    phrases: tuple[str, ...] = ()
    refused: bool = False
    quarantined: int = 0
    exact: bool = True
    rows_read: int | None = None
    at: tuple[int, ...] = ()  # source rows of the quarantined rows, where known
    redelivery_of: str | None = None
    changed: int = 0

    def describe(self) -> str:
        words = " | ".join(self.phrases)
        if self.status == "failed":
            text = f"{'refused' if self.refused else 'fail'}({words})"
        elif self.status == "waiting":
            text = f"waiting, then load({self.rows_read})"
        elif self.redelivery_of:
            text = f"load({self.rows_read}) then skipped_rows(all but {self.changed} changed)"
        elif self.quarantined:
            n = self.quarantined if self.exact else f">={self.quarantined}"
            text = f"quarantine({n}, {words}) of {self.rows_read}"
            if self.at:
                text += f" at {','.join(map(str, self.at))}"
        else:
            text = f"load({self.rows_read})"
        return text


def fail(*phrases: str) -> Expect:
    return Expect("failed", phrases)


def refused(*phrases: str) -> Expect:
    return Expect("failed", phrases or ("refused",), refused=True)


def quarantine(
    n: int, *phrases: str, rows: int | None = None, at: tuple[int, ...] = (), exact: bool = True
) -> Expect:
    """``n`` rows quarantined (at source rows ``at`` when given), the other ``rows - n`` loaded."""
    return Expect("loaded", phrases, quarantined=n, exact=exact, rows_read=rows, at=tuple(at))


def load(rows: int | None = None) -> Expect:
    return Expect("loaded", rows_read=rows)


def waiting(rows: int | None = None) -> Expect:
    return Expect("waiting", rows_read=rows)


def skipped_rows(of: str, raw: Expect, changed: int = 0) -> Expect:
    """A re-delivery of ``of``: read as ``raw`` says, then every unchanged row skipped."""
    return replace(raw, redelivery_of=of, changed=changed)


# ------------------------------------------------------------------ variants
@dataclass
class Variant:
    name: str
    connector: str  # csv-utf8, csv-bom, csv-gbk, jsonl, json, xlsx, parquet
    hostility: str  # the kind of damage
    dept: str
    dataset: str
    file_name: str  # as it lies in inbox/<dept>/ (may hold any character)
    expect: Expect
    write: Callable[[Path], None]  # writes the entry at the given inbox path
    settled: bool = True

    def path(self, home: Path) -> Path:
        return home / "inbox" / self.dept / self.file_name


# ------------------------------------------------------------------ the street's own deliveries
@cache
def _catalogue(dept: str) -> dict:
    return yaml.safe_load((CATALOG_DIR / f"{dept}.yaml").read_text(encoding="utf-8"))


def dataset_spec(dept: str, dataset: str) -> dict:
    return next(d for d in _catalogue(dept)["datasets"] if d["code"] == dataset)


def update_mode(dept: str, dataset: str) -> str | None:
    return dataset_spec(dept, dataset).get("update_mode")


@dataclass(frozen=True)
class Fields:
    """Source names of a dataset's key and of the fields markers go into."""

    key: list[str]
    names: list[str]  # person names
    ids: list[str]  # citizen IDs
    mobiles: list[str]
    text: str | None  # a free-text or string field for big values and fallbacks
    last: str  # the last delivered field


def fields_of(dept: str, dataset: str) -> Fields:
    spec = dataset_spec(dept, dataset)
    fs = spec["fields"]

    def src(f: dict) -> str:
        return f.get("source", f["name"])

    key_names = set(spec["key"])
    key = [src(f) for f in fs if f["name"] in key_names]
    names = [src(f) for f in fs if f.get("pii") == "person_name"]
    ids = [src(f) for f in fs if f.get("pii") == "citizen_id" and f["name"] not in key_names]
    key_ids = [src(f) for f in fs if f.get("pii") == "citizen_id" and f["name"] in key_names]
    mobiles = [src(f) for f in fs if f.get("pii") == "mobile"]
    strings = [
        src(f)
        for f in fs
        if f.get("type") in ("text", "string")
        and f["name"] not in key_names
        and not f.get("allowed_values")
        and not f.get("pattern")
    ]
    texts = [src(f) for f in fs if f.get("type") == "text"]
    text = (texts or names or strings or [None])[0]
    return Fields(key, names, ids + key_ids, mobiles, text, src(fs[-1]))


def fresh_key(value: str, index: int) -> str:
    """A key value no delivery of the street holds (same shape: trailing digits kept)."""
    if re.fullmatch(r"\d{17}[\dXx]", value):
        return marker_id(index)
    m = re.search(r"\d+$", value)
    if not m or len(m.group()) < 3:
        return f"{value}H{index:03d}"
    width = len(m.group())
    return value[: m.start()] + f"9{index:0{width - 1}d}"


def mark(record: dict, f: Fields, index: int, *, fresh: bool = True) -> dict:
    """A copy of ``record`` carrying the markers (and a fresh key) of variant ``index``."""
    out = dict(record)
    if fresh:
        for k in f.key:
            if k in out and out[k] is not None:
                out[k] = fresh_key(str(out[k]), index)
    for k in f.names[:1]:
        out[k] = MARK_NAME
    for k in f.names[1:]:
        out[k] = MARK_NAME_2
    for k in f.ids:
        if k not in f.key:
            out[k] = marker_id(index)
    for k in f.mobiles:
        out[k] = MARK_MOBILE
    if not (f.names or f.mobiles) and f.text and f.text not in f.key:
        out[f.text] = MARK_NAME
    return out


class Street:
    """The simulator's deliveries in a home: read, cleaned of the simulator's own dirt."""

    def __init__(self, home: Path, manifest: dict) -> None:
        self.home = home
        self.manifest = manifest

    def info(self, dept: str, dataset: str) -> dict:
        return self.manifest["departments"][dept][dataset]

    def original(self, dept: str, dataset: str) -> Path:
        """The street's last delivery of the dataset (by name)."""
        return self.home / "inbox" / dept / sorted(self.info(dept, dataset)["files"])[-1]

    def fields(self, dept: str, dataset: str) -> Fields:
        return fields_of(dept, dataset)

    def encoding(self, dept: str, dataset: str) -> str:
        return dataset_spec(dept, dataset)["delivery"].get("encoding") or "utf-8"

    # CSV -----------------------------------------------------------------
    def csv_table(self, dept: str, dataset: str) -> tuple[list[str], list[dict]]:
        """Header and rows (as dicts) of the delivery, without its stray header rows."""
        enc = self.encoding(dept, dataset)
        text = self.original(dept, dataset).read_bytes().decode(enc)
        rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))
        header = rows[0]
        body = [r for r in rows[1:] if r and r != header]
        return header, [dict(zip(header, r, strict=True)) for r in body]

    # JSON Lines / JSON ------------------------------------------------------
    def jsonl_records(self, dept: str, dataset: str) -> list[dict]:
        out = []
        for line in self.original(dept, dataset).read_bytes().split(b"\n"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue  # the simulator's own broken lines stay out of the corpus
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def json_doc(self, dept: str, dataset: str) -> tuple[dict, list[dict]]:
        doc = json.loads(self.original(dept, dataset).read_text(encoding="utf-8"))
        path = dataset_spec(dept, dataset)["delivery"].get("records_path")
        records = doc
        for k in (path or "").split(".") if path else []:
            records = records[k]
        return doc, list(records)

    # Excel / Parquet ---------------------------------------------------------
    def workbook(self, dept: str, dataset: str):
        """(workbook, sheet, header row number, data rows) without stray header rows and
        without the simulator's ledger footer (its totals and who filled it in)."""
        delivery = dataset_spec(dept, dataset)["delivery"]
        wb = load_workbook(self.original(dept, dataset))
        ws = wb[delivery["sheet"]]
        hrow = (delivery.get("header_row") or 0) + 1
        header = [c.value for c in ws[hrow]]
        for r in range(ws.max_row, hrow, -1):
            values = [c.value for c in ws[r]]
            footer = any(v == "合计" or str(v).startswith("填表人：") for v in values)
            if values == header or footer:
                ws.delete_rows(r)
        data = sum(
            1
            for row in ws.iter_rows(min_row=hrow + 1, values_only=True)
            if any(v not in (None, "") for v in row)
        )
        return wb, ws, hrow, data

    def parquet(self, dept: str, dataset: str) -> pl.DataFrame:
        return pl.read_parquet(self.original(dept, dataset))


# ------------------------------------------------------------------ writers
def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def csv_bytes(
    header: list[str] | None,
    rows: list[dict | list],
    encoding: str,
    *,
    cols: list[str] | None = None,
    terminator: str = "\r\n",
    delimiter: str = ",",
) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator=terminator, delimiter=delimiter)
    cols = cols or header
    if header is not None:
        w.writerow(header)
    for r in rows:
        w.writerow([r.get(c, "") for c in cols] if isinstance(r, dict) else r)
    return buf.getvalue().encode(encoding)  # utf-8-sig writes the BOM


def csv_line(values: list[str], encoding: str) -> bytes:
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n").writerow(values)
    return buf.getvalue().encode(encoding.replace("utf-8-sig", "utf-8"))


def jsonl_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def json_doc_bytes(doc: dict, records: list, dept: str, dataset: str) -> bytes:
    return json_doc_text(doc, [json.dumps(r, ensure_ascii=False) for r in records], dept, dataset)


def json_doc_text(doc: dict, record_texts: list[str], dept: str, dataset: str) -> bytes:
    """The document with its records list replaced by the given record texts (verbatim)."""
    path = dataset_spec(dept, dataset)["delivery"].get("records_path")
    placeholder = "__RECORDS__"
    if path:
        doc = json.loads(json.dumps(doc))
        node = doc
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = placeholder
        if "total" in doc:
            doc["total"] = len(record_texts)
        text = json.dumps(doc, ensure_ascii=False, indent=1)
    else:
        text = json.dumps(placeholder)
    body = "[\n" + ",\n".join(record_texts) + "\n]"
    return text.replace(json.dumps(placeholder), body, 1).encode()


def workbook_bytes(wb) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def xls_bytes(wb) -> bytes:
    """The workbook as an Excel 97-2003 .xls (xlwt), as older department systems export
    it: every sheet's values, dates formatted as dates, numbers as numbers."""
    import xlwt

    book = xlwt.Workbook(encoding="utf-8")
    dated = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for ws in wb.worksheets:
        sheet = book.add_sheet(ws.title)
        for r, row in enumerate(ws.iter_rows(values_only=True)):
            for c, v in enumerate(row):
                if isinstance(v, dt.date):
                    sheet.write(r, c, v, dated)
                elif v is not None:
                    sheet.write(r, c, v)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def zip_add(data: bytes, members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_DEFLATED) as z:
        for name, content in members.items():
            z.writestr(name, content)
    return buf.getvalue()


def zip_flip(data: bytes, member_suffix: str) -> bytes:
    """Flip bytes inside one member, stored uncompressed: the archive fails its CRC check.

    (Flipping deflated bytes would fail inflation first; a stored member reads
    "fine" and only its CRC-32 tells the damage.)
    """
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            stored = info.filename.endswith(member_suffix)
            out.writestr(
                info.filename,
                src.read(info),
                compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
            )
    raw = bytearray(buf.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(member_suffix))
    # local header: 30 bytes + name + extra, then the member's bytes
    name_len = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    mid = start + info.compress_size // 2
    for i in range(mid, mid + 8):
        raw[i] ^= 0x01  # letters stay letters: only the CRC can tell
    return bytes(raw)


def ascii_cut(line: bytes, at: float = 0.5) -> bytes:
    """``line`` cut near ``at`` of its length, on an ASCII byte (not inside a character)."""
    cut = line[: int(len(line) * at)]
    while cut and cut[-1] >= 0x80:
        cut = cut[:-1]
    return cut


def writes(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(data)

    return write


def bomb_array(depth: int = BOMB_DEPTH) -> str:
    return "[" * depth + "]" * depth


def bomb_object(depth: int = 40_000) -> str:
    """Nested objects; 40,000 deep stays under max_record_bytes (so it is 'too deep')."""
    return '{"a":' * depth + "1" + "}" * depth


# ------------------------------------------------------------------ the corpus
class CorpusBuilder:
    def __init__(self, street: Street) -> None:
        self.s = street
        self.variants: list[Variant] = []

    def add(
        self,
        name: str,
        connector: str,
        hostility: str,
        dept: str,
        dataset: str,
        tag: str,
        expect: Expect,
        write: Callable[[Path], None] | bytes,
        *,
        ext: str | None = None,
        file_name: str | None = None,
        settled: bool = True,
    ) -> None:
        if isinstance(write, bytes):
            write = writes(write)
        original = self.s.original(dept, dataset)
        if file_name is None:
            stem = original.name.rsplit(".", 1)[0]
            file_name = f"{stem}_h{len(self.variants):02d}_{tag}.{ext or original.suffix[1:]}"
        self.variants.append(
            Variant(name, connector, hostility, dept, dataset, file_name, expect, write, settled)
        )

    @property
    def index(self) -> int:
        """Index of the next variant (its marker ID, its fresh keys)."""
        return len(self.variants)

    # CSV ---------------------------------------------------------------------
    def csv_variants(self, dept: str, dataset: str, connector: str) -> dict:
        s = self.s
        enc = s.encoding(dept, dataset)
        header, rows = s.csv_table(dept, dataset)
        f = s.fields(dept, dataset)
        n = len(rows)
        return {"enc": enc, "header": header, "rows": rows, "f": f, "n": n, "c": connector}

    def csv_cut_last_cell(self, dept: str, dataset: str, connector: str) -> None:
        t = self.csv_variants(dept, dataset, connector)
        row = mark(t["rows"][0], t["f"], self.index)
        last = t["header"][-1]
        row[last] = "2026-03-31 22:57:33"
        data = csv_bytes(t["header"], [*t["rows"], row], t["enc"])
        data = data[: -len("7:33\r\n")]  # the time becomes "2026-03-31 22:5", no terminator
        self.add(
            f"{connector}: cut inside the last cell",
            connector,
            "truncated",
            dept,
            dataset,
            "cutcell",
            quarantine(1, "truncated", rows=t["n"] + 1, at=(t["n"] + 2,)),
            data,
        )

    def csv_cut_mid_line(self, dept: str, dataset: str, connector: str) -> None:
        t = self.csv_variants(dept, dataset, connector)
        row = mark(t["rows"][1], t["f"], self.index)
        # end on an ASCII byte: this is not the multibyte cut
        cut = ascii_cut(csv_line([row[c] for c in t["header"]], t["enc"]))
        data = csv_bytes(t["header"], t["rows"], t["enc"]) + cut
        self.add(
            f"{connector}: cut in the middle of the last line",
            connector,
            "truncated",
            dept,
            dataset,
            "cutline",
            quarantine(1, "truncated", rows=t["n"] + 1, at=(t["n"] + 2,)),
            data,
        )

    def csv_cut_multibyte(self, dept: str, dataset: str, connector: str) -> None:
        t = self.csv_variants(dept, dataset, connector)
        row = mark(t["rows"][2], t["f"], self.index)
        enc = t["enc"].replace("utf-8-sig", "utf-8")
        # the last cell holding a multibyte character, after the markers
        cells = [row[c] for c in t["header"]]
        pos = max(i for i, v in enumerate(cells) if any(ord(ch) > 0x7F for ch in v))
        cells = cells[: pos + 1]
        head = csv_line([*cells[:pos], ""], enc)[:-2]  # everything up to the cell
        first = next(ch for ch in cells[pos] if ord(ch) > 0x7F)
        prefix = cells[pos][: cells[pos].index(first)]
        cut = head + prefix.encode(enc) + first.encode(enc)[:1]
        data = csv_bytes(t["header"], t["rows"], t["enc"]) + cut
        self.add(
            f"{connector}: cut inside a multibyte character",
            connector,
            "truncated",
            dept,
            dataset,
            "cutchar",
            quarantine(1, "truncated", rows=t["n"] + 1, at=(t["n"] + 2,)),
            data,
        )

    def csv_bad_bytes(self, dept: str, dataset: str, connector: str) -> None:
        t = self.csv_variants(dept, dataset, connector)
        enc = t["enc"]
        row = mark(t["rows"][3], t["f"], self.index)
        bad = b"\xff\xfe" if enc == "gbk" else b"\xc3\x28\xff"
        line = csv_line([row[c] for c in t["header"]], enc)
        # the bytes go inside the marked name's cell (or the text cell)
        cell = (t["f"].names or [t["f"].text])[0]
        needle = row[cell].encode(enc.replace("utf-8-sig", "utf-8"))
        line = line.replace(needle, needle[:3] + bad + needle[3:], 1)
        mid = t["n"] // 2
        data = (
            csv_bytes(t["header"], t["rows"][:mid], enc)
            + line
            + csv_bytes(None, t["rows"][mid:], enc, cols=t["header"]).removeprefix(b"\xef\xbb\xbf")
        )
        self.add(
            f"{connector}: a bad byte sequence in one line",
            connector,
            "wrong encoding in one line",
            dept,
            dataset,
            "badbytes",
            quarantine(1, "wrong encoding", rows=t["n"] + 1, at=(mid + 2,)),
            data,
        )

    def csv_oversized(self, dept: str, dataset: str, connector: str) -> None:
        t = self.csv_variants(dept, dataset, connector)
        f = t["f"]
        row = mark(t["rows"][4], f, self.index)
        cell = f.text or f.names[0]
        row[cell] = (row[cell] or MARK_NAME) + "A" * BIG
        mid = t["n"] // 2
        data = csv_bytes(t["header"], [*t["rows"][:mid], row, *t["rows"][mid:]], t["enc"])
        self.add(
            f"{connector}: a field over max_record_bytes",
            connector,
            "oversized field",
            dept,
            dataset,
            "bigfield",
            quarantine(1, "too large", rows=t["n"] + 1, at=(mid + 2,)),
            data,
        )

    def csv_empty(self, dept: str, dataset: str, connector: str, how: str) -> None:
        t = self.csv_variants(dept, dataset, connector)
        enc = t["enc"]
        if how == "zero":
            data, expect, what = b"", fail("empty"), "0 bytes"
        elif how == "bom":
            data, expect, what = b"\xef\xbb\xbf", fail("empty"), "only a BOM"
        else:
            data = csv_bytes(t["header"], [], enc)
            expect = load(0)  # a department with nothing to report this time: 0 rows loaded
            what = "only a header"
        self.add(
            f"{connector}: empty file ({what})",
            connector,
            "empty",
            dept,
            dataset,
            f"empty{how}",
            expect,
            data,
        )

    def csv_missing_header(self, dept: str, dataset: str, connector: str) -> None:
        t = self.csv_variants(dept, dataset, connector)
        first = mark(t["rows"][0], t["f"], self.index)
        data = csv_bytes(None, [first, *t["rows"][1:]], t["enc"], cols=t["header"])
        self.add(
            f"{connector}: header missing (first line is data)",
            connector,
            "missing header",
            dept,
            dataset,
            "noheader",
            fail("missing column"),
            data,
        )

    def csv_cell_count(self, dept: str, dataset: str, connector: str, bad_rows: int) -> None:
        t = self.csv_variants(dept, dataset, connector)
        h = t["header"]
        wrong = []
        for k in range(bad_rows):
            row = mark(t["rows"][5 + k], t["f"], self.index)
            cells = [row[c] for c in h]
            wrong.append([*cells, MARK_NAME] if k % 2 == 0 else cells[:-2])
        mid = t["n"] // 2
        data = csv_bytes(h, [*t["rows"][:mid], *wrong, *t["rows"][mid:]], t["enc"], cols=h)
        self.add(
            f"{connector}: {bad_rows} row(s) with the wrong number of cells",
            connector,
            "wrong number of cells",
            dept,
            dataset,
            "cells",
            quarantine(
                bad_rows,
                "cell count",
                rows=t["n"] + bad_rows,
                at=tuple(range(mid + 2, mid + 2 + bad_rows)),
            ),
            data,
        )

    def csv_stray_headers(self, dept: str, dataset: str, connector: str, count: int) -> None:
        t = self.csv_variants(dept, dataset, connector)
        h = t["header"]
        rows: list = list(t["rows"])
        for k in range(count):
            rows.insert((k + 1) * len(rows) // (count + 1), list(h))
        data = csv_bytes(h, rows, t["enc"], cols=h)
        self.add(
            f"{connector}: {count} stray header row(s)",
            connector,
            "stray header",
            dept,
            dataset,
            "stray",
            quarantine(
                count,
                "stray header",
                rows=t["n"] + count,
                at=tuple(i + 2 for i, r in enumerate(rows) if r == h),
            ),
            data,
        )

    def csv_copy(self, dept: str, dataset: str, connector: str, name: str, tag: str) -> None:
        """A good delivery (one row fewer than the street's) under an odd name."""
        t = self.csv_variants(dept, dataset, connector)
        drop = self.index % t["n"]
        rows = t["rows"][:drop] + t["rows"][drop + 1 :]
        data = csv_bytes(t["header"], rows, t["enc"])
        return self._copy(name, connector, dept, dataset, tag, data, t["n"] - 1)

    def _copy(self, name, connector, dept, dataset, tag, data, rows, **kw) -> None:
        self.add(name, connector, "odd file name", dept, dataset, tag, load(rows), data, **kw)

    def csv_redelivery(self, dept: str, dataset: str, connector: str, change: bool) -> None:
        """The street's delivery again: one trailing CRLF more, or one row changed."""
        s = self.s
        original = s.original(dept, dataset)
        data = original.read_bytes()
        info = s.info(dept, dataset)
        rows = info["rows"][original.name]
        stray = rows - info["records"][original.name]
        changed = 0
        if change:
            enc = s.encoding(dept, dataset).replace("utf-8-sig", "utf-8")
            f = s.fields(dept, dataset)
            header, body = s.csv_table(dept, dataset)
            victim = self._clean_row(dept, dataset, original.name, body, f)
            old = csv_line([victim[c] for c in header], enc)
            new_row = dict(victim)
            new_row[f.names[0]] = MARK_NAME
            new = csv_line([new_row[c] for c in header], enc)
            assert data.count(old) == 1, "the changed row must be unique in the delivery"
            data = data.replace(old, new)
            changed = 1
            what, tag = "one row changed", "resent1"
        else:
            data += b"\r\n"
            what, tag = "one trailing CRLF more", "resentcrlf"
        raw = quarantine(stray, "stray header", rows=rows) if stray else load(rows)
        self.add(
            f"{connector}: re-delivery with {what}",
            connector,
            "re-delivery",
            dept,
            dataset,
            tag,
            skipped_rows(original.name, raw, changed),
            data,
        )

    def redelivery(self, name: str, connector: str, dept: str, dataset: str, data: bytes) -> None:
        """The street's delivery again, every record the same, in other bytes."""
        original = self.s.original(dept, dataset)
        info = self.s.info(dept, dataset)
        rows = info["rows"][original.name]
        bad = rows - info["records"][original.name]  # stray header rows
        bad += self._defects(dept, dataset, original.name, "broken_line")
        raw = quarantine(bad, "stray header", "not json", rows=rows) if bad else load(rows)
        self.add(
            name,
            connector,
            "re-delivery",
            dept,
            dataset,
            "resent",
            skipped_rows(original.name, raw),
            data,
        )

    def _clean_row(self, dept, dataset, file_name, body, f: Fields) -> dict:
        """A row of the delivery without any defect (it passes the gate), key unique."""
        truth = sim_dir_for(self.s.home) / "truth" / dept / dataset
        defects = pl.read_parquet(truth / "defects.parquet").filter(pl.col("_file") == file_name)
        clean = pl.read_parquet(truth / "clean.parquet").filter(pl.col("_file") == file_name)
        bad_rows = set(defects["_source_row"].to_list())
        keys = [tuple(r[k] for k in f.key) for r in body]
        ok_rows = [r for r in clean.iter_rows(named=True) if r["_source_row"] not in bad_rows]
        for r in ok_rows:
            cand = [b for b in body if all(b[k] == r[k] for k in f.key if k in r)]
            if len(cand) == 1 and keys.count(tuple(cand[0][k] for k in f.key)) == 1:
                return cand[0]
        raise AssertionError(f"no defect-free row in {file_name}")

    # JSON Lines -----------------------------------------------------------------
    def jsonl(self, dept: str, dataset: str) -> tuple[list[dict], Fields]:
        return self.s.jsonl_records(dept, dataset), self.s.fields(dept, dataset)

    def jsonl_insert(self, dept, dataset, lines: list[bytes], at: float = 0.5) -> bytes:
        recs, _ = self.jsonl(dept, dataset)
        mid = int(len(recs) * at)
        return (
            jsonl_bytes(recs[:mid]) + b"".join(ln + b"\n" for ln in lines) + jsonl_bytes(recs[mid:])
        )

    def jsonl_variant(self, name, hostility, dept, dataset, tag, expect, lines, **kw) -> None:
        """Good lines with ``lines`` in the middle (at lines mid+1 …, for ``expect.at``)."""
        data = self.jsonl_insert(dept, dataset, lines)
        if expect.quarantined and not expect.at:
            mid = len(self.s.jsonl_records(dept, dataset)) // 2
            expect = replace(expect, at=tuple(range(mid + 1, mid + 1 + len(lines))))
        self.add(name, "jsonl", hostility, dept, dataset, tag, expect, data, **kw)

    def marked_json(self, dept: str, dataset: str, k: int = 0) -> dict:
        """Record ``k`` of a JSON (Lines) delivery with this variant's markers."""
        if dataset_spec(dept, dataset)["delivery"]["kind"] == "json":
            recs = self.s.json_doc(dept, dataset)[1]
        else:
            recs = self.s.jsonl_records(dept, dataset)
        return mark(recs[k], self.s.fields(dept, dataset), self.index)

    def with_raw_value(self, rec: dict, field_name: str, raw_json: str) -> str:
        """The record's JSON text with one field's value replaced by raw JSON text."""
        placeholder = "__RAW_VALUE__"
        text = json.dumps({**rec, field_name: placeholder}, ensure_ascii=False)
        return text.replace(json.dumps(placeholder), raw_json, 1)

    def with_duplicate_key(self, rec: dict, field_name: str, first: str) -> str:
        """The record's JSON text with ``field_name`` given twice (first ``first``)."""
        text = json.dumps(rec, ensure_ascii=False)
        return (
            "{" + f"{json.dumps(field_name)}: {json.dumps(first, ensure_ascii=False)}, " + text[1:]
        )

    # the catalogue ------------------------------------------------------------------
    def build(self) -> list[Variant]:
        s = self.s
        # ---------------- CSV, UTF-8 with BOM (cgj) --------------------------------
        B, C, G = "csv-bom", "csv-utf8", "csv-gbk"
        self.csv_cut_last_cell("cgj", "violation_cases", B)
        self.csv_cut_multibyte("cgj", "violation_cases", B)
        self.csv_bad_bytes("cgj", "violation_cases", B)
        self.csv_cell_count("cgj", "violation_cases", B, 2)
        self.csv_empty("cgj", "violation_cases", B, "zero")
        self.csv_empty("cgj", "violation_cases", B, "bom")
        self.csv_copy("cgj", "violation_cases", B, "csv-bom: ESC codes in the name", "\x1b[2J")
        self.csv_redelivery("cgj", "violation_cases", B, change=False)
        self._symlink_outside("cgj", "violation_cases", B)
        self._waiting("cgj", "violation_cases", B)
        # ---------------- CSV, UTF-8 (wg) -------------------------------------------
        self.csv_cut_mid_line("wg", "grid_events", C)
        self.csv_oversized("wg", "grid_events", C)
        self.csv_missing_header("wg", "grid_events", C)
        self.csv_redelivery("wg", "grid_events", C, change=True)
        self._symlink_odd_name("wg", "grid_events", C)
        t = self.csv_variants("wg", "grid_events", C)
        drop = self.index % t["n"]
        self.add(
            "csv-utf8: upper-case *.CSV",
            C,
            "upper-case extension",
            "wg",
            "grid_events",
            "upper",
            load(t["n"] - 1),
            csv_bytes(t["header"], t["rows"][:drop] + t["rows"][drop + 1 :], t["enc"]),
            ext="CSV",
        )
        self.csv_bad_bytes("wg", "grid_cells", C)
        self.csv_empty("wg", "grid_cells", C, "header")
        self.csv_stray_headers("wg", "grid_cells", C, 2)
        self.csv_copy("wg", "grid_cells", C, "csv-utf8: a newline in the name", "\nFORGED LOG LINE")
        self._symlink_inside("wg", "grid_cells", C)
        # ---------------- CSV, GBK (wjw) --------------------------------------------
        self.csv_cut_multibyte("wjw", "elderly_health_checks", G)
        self.csv_empty("wjw", "elderly_health_checks", G, "header")
        self.csv_stray_headers("wjw", "elderly_health_checks", G, 1)
        self._fifo("wjw", "elderly_health_checks", G)
        self.csv_bad_bytes("wjw", "chronic_followups", G)
        self.csv_missing_header("wjw", "chronic_followups", G)
        self.csv_copy("wjw", "chronic_followups", G, "csv-gbk: Chinese in the name", "补报数据")
        self.csv_oversized("wjw", "family_doctor_contracts", G)
        self.csv_cell_count("wjw", "family_doctor_contracts", G, 1)
        # ---------------- JSON Lines (yjj, iot) -------------------------------------
        J = "jsonl"
        recs, f = self.jsonl("yjj", "incidents")
        n = len(recs)
        self.jsonl_variant(
            "jsonl: a line that is a 100,000-deep array",
            "nesting bomb",
            "yjj",
            "incidents",
            "bombline",
            quarantine(1, "too deep", rows=n + 1),
            [bomb_array().encode()],
        )
        rec = self.marked_json("yjj", "incidents", 1)
        cut = ascii_cut(json.dumps(rec, ensure_ascii=False).encode())
        self.add(
            "jsonl: the last line cut in the middle",
            J,
            "truncated",
            "yjj",
            "incidents",
            "cutline",
            quarantine(1, "truncated", rows=n + 1, at=(n + 1,)),
            jsonl_bytes(recs) + cut,
        )
        rec = self.marked_json("yjj", "incidents", 2)
        self.jsonl_variant(
            "jsonl: a record with a duplicate key",
            "duplicate key",
            "yjj",
            "incidents",
            "dupkey",
            quarantine(1, "duplicate key", rows=n + 1),
            [self.with_duplicate_key(rec, f.names[0], MARK_NAME_2).encode()],
        )
        self.add(
            "jsonl: empty file (0 bytes)",
            J,
            "empty",
            "yjj",
            "incidents",
            "empty0",
            fail("empty"),
            b"",
        )
        self._directory("yjj", "incidents", J)

        recs, f = self.jsonl("yjj", "hazard_points")
        n = len(recs)
        rec = self.marked_json("yjj", "hazard_points", 0)
        self.jsonl_variant(
            "jsonl: a record holding a 100,000-deep array",
            "nesting bomb",
            "yjj",
            "hazard_points",
            "bombrecord",
            quarantine(1, "too deep", rows=n + 1),
            [self.with_raw_value(rec, f.text or "description", bomb_array()).encode()],
        )
        rec = self.marked_json("yjj", "hazard_points", 1)
        line = json.dumps(rec, ensure_ascii=False).encode()
        name_bytes = MARK_NAME.encode()
        line = line.replace(name_bytes, name_bytes[:4] + b"\xff\xfe" + name_bytes[4:], 1)
        self.jsonl_variant(
            "jsonl: a bad byte sequence in one line",
            "wrong encoding in one line",
            "yjj",
            "hazard_points",
            "badbytes",
            quarantine(1, "wrong encoding", rows=n + 1),
            [line],
        )
        drop = self.index % n
        self._copy(
            "jsonl: a bidi override (U+202E) in the name",
            J,
            "yjj",
            "hazard_points",
            "\u202elmsj",
            jsonl_bytes(recs[:drop] + recs[drop + 1 :]),
            n - 1,
        )
        line = json.dumps(self.marked_json("yjj", "hazard_points", 2), ensure_ascii=False).encode()
        at = next(i for i in range(len(line) * 2 // 3, len(line)) if line[i] >= 0xC0)
        self.add(
            "jsonl: the last line cut inside a multibyte character",
            J,
            "truncated",
            "yjj",
            "hazard_points",
            "cutchar",
            quarantine(1, "truncated", rows=n + 1, at=(n + 1,)),
            jsonl_bytes(recs) + line[: at + 1],
        )

        recs, f = self.jsonl("iot", "devices")
        n = len(recs)
        self.jsonl_variant(
            "jsonl: a line of objects nested 40,000 deep",
            "nesting bomb",
            "iot",
            "devices",
            "bombobject",
            quarantine(1, "too deep", rows=n + 1),
            [bomb_object().encode()],
        )
        rec = self.marked_json("iot", "devices", 1)
        rec["location"] = MARK_NAME + "A" * BIG
        self.jsonl_variant(
            "jsonl: a line over max_record_bytes",
            "oversized field",
            "iot",
            "devices",
            "bigline",
            quarantine(1, "too large", rows=n + 1),
            [json.dumps(rec, ensure_ascii=False).encode()],
        )
        self.add(
            "jsonl: empty file (blank lines only)",
            J,
            "empty",
            "iot",
            "devices",
            "blank",
            fail("empty"),
            b"\n\r\n\n",
        )
        drop = self.index % n
        self._copy(
            "jsonl: spaces and brackets in the name",
            J,
            "iot",
            "devices",
            "copy (2) final",
            jsonl_bytes(recs[:drop] + recs[drop + 1 :]),
            n - 1,
        )

        recs, f = self.jsonl("iot", "door_access_events")
        n = len(recs)
        rec = self.marked_json("iot", "door_access_events", 3)
        line = json.dumps(rec, ensure_ascii=False).encode()
        self.jsonl_variant(
            "jsonl: one broken line in the middle",
            "broken line",
            "iot",
            "door_access_events",
            "brokenline",
            quarantine(1, "not json", rows=n + 1),
            [ascii_cut(line)],
        )
        self.jsonl_variant(
            "jsonl: lines that are JSON but not objects",
            "not an object",
            "iot",
            "door_access_events",
            "notobject",
            quarantine(4, "not an object", rows=n + 4),
            [
                json.dumps([MARK_NAME, marker_id(self.index)], ensure_ascii=False).encode(),
                json.dumps(MARK_NAME, ensure_ascii=False).encode(),
                MARK_MOBILE.encode(),
                b"null",
            ],
        )
        drop = self.index % n
        self.add(
            "jsonl: upper-case *.JSONL",
            J,
            "upper-case extension",
            "iot",
            "door_access_events",
            "upper",
            load(n - 1),
            jsonl_bytes(recs[:drop] + recs[drop + 1 :]),
            ext="JSONL",
        )
        original = s.original("iot", "door_access_events")
        info = s.info("iot", "door_access_events")
        rows = info["rows"][original.name]
        broken = self._defects("iot", "door_access_events", original.name, "broken_line")
        raw = quarantine(broken, "not json", rows=rows) if broken else load(rows)
        self.add(
            "jsonl: re-delivery with one trailing CRLF more",
            J,
            "re-delivery",
            "iot",
            "door_access_events",
            "resentcrlf",
            skipped_rows(original.name, raw),
            original.read_bytes() + b"\r\n",
        )
        readings = s.original("iot", "sensor_readings").read_bytes()
        self.add(
            "jsonl: a file over max_file_bytes",
            J,
            "file too large",
            "iot",
            "sensor_readings",
            "huge",
            refused("too large"),
            readings * (LIMIT_FILE // len(readings) + 2),
        )
        t = self.csv_variants("wjw", "family_doctor_contracts", G)
        marked = mark(t["rows"][7], t["f"], self.index)
        self.add(  # the header reads as UTF-8 and names the columns: read so (a note says)
            "csv-gbk: the whole file in UTF-8 (GBK declared)",
            G,
            "other encoding",
            "wjw",
            "family_doctor_contracts",
            "utf8",
            load(t["n"] + 1),
            csv_bytes(t["header"], [*t["rows"], marked], "utf-8"),
        )
        self.add(  # Excel's "Unicode text": UTF-16 with its mark, cells between tabs (notes say)
            "csv-gbk: Excel's Unicode text, UTF-16 and tabs (GBK declared)",
            G,
            "other encoding",
            "wjw",
            "family_doctor_contracts",
            "utf16",
            load(t["n"] + 1),
            csv_bytes(t["header"], [*t["rows"], marked], "utf-16", delimiter="\t"),
        )
        self.add(  # bcp -w: UTF-16 without a mark says nothing of itself, neither encoding reads it
            "csv-gbk: the whole file in UTF-16 without its byte-order mark (GBK declared)",
            G,
            "wrong encoding",
            "wjw",
            "family_doctor_contracts",
            "utf16nobom",
            fail("wrong encoding"),
            csv_bytes(t["header"], [*t["rows"], marked], "utf-16-le"),
        )
        self.add(  # Excel for Mac's "CSV (Macintosh)": read with each CR a line end (a note)
            "csv-gbk: lines ended by a carriage return alone",
            G,
            "line ends",
            "wjw",
            "family_doctor_contracts",
            "cronly",
            load(t["n"] + 1),
            csv_bytes(t["header"], [*t["rows"], marked], "gbk", terminator="\r"),
        )
        wide = [*t["header"], "", ""]  # a spreadsheet's used range: two empty columns more
        padded = [
            [r.get(c, "") for c in t["header"]] + [""] * (i % 4)
            for i, r in enumerate([*t["rows"], marked])
        ]  # rows with none, one, two or three empty cells beyond the table
        self.add(  # each row fitted to the header (a note says)
            "csv-gbk: lines padded with empty cells beyond the table",
            G,
            "used range",
            "wjw",
            "family_doctor_contracts",
            "usedrange",
            load(t["n"] + 1),
            csv_bytes(wide, padded, "gbk"),
        )
        plain = csv_bytes(t["header"], [*t["rows"], marked], "gbk")
        self.add(  # sent compressed: read unpacked (a note says)
            "csv-gbk: the file gzip-compressed (.csv.gz)",
            G,
            "compressed",
            "wjw",
            "family_doctor_contracts",
            "gz",
            load(t["n"] + 1),
            gzip.compress(plain, mtime=0),
            ext="csv.gz",
        )
        self.add(
            "csv-gbk: a zip archive of two files (.csv.zip)",
            G,
            "compressed",
            "wjw",
            "family_doctor_contracts",
            "zip2",
            fail("the zip archive holds 2 files"),
            zipped({"a.csv": plain, "b.csv": plain}),
            ext="csv.zip",
        )
        self.add(  # a few kB that unpack past max_file_bytes: stopped there, nothing loaded
            "csv-gbk: a gzip bomb (unpacks past max_file_bytes)",
            G,
            "file too large",
            "wjw",
            "family_doctor_contracts",
            "bomb",
            fail("too large", "unpacks to more than"),
            gzip.compress(plain * (LIMIT_FILE // len(plain) + 2), mtime=0),
            ext="csv.gz",
        )
        t = self.csv_variants("wjw", "elderly_health_checks", G)
        rare = mark(t["rows"][5], t["f"], self.index)
        rare[t["f"].names[0]] = "刘䶮"  # 䶮 is no GBK character: GB18030 writes it in 4 bytes
        self.add(
            "csv-gbk: a name with a 生僻字 outside GBK (GB18030's four bytes)",
            G,
            "rare character",
            "wjw",
            "elderly_health_checks",
            "rare",
            load(t["n"] + 1),
            csv_bytes(t["header"], [*t["rows"], rare], "gb18030"),
        )
        # ---------------- JSON documents (scjg) --------------------------------------
        self._json_variants()
        doc, _ = s.json_doc("scjg", "service_points")
        self.redelivery(
            "json: re-delivery, the same document indented otherwise",
            "json",
            "scjg",
            "service_points",
            json.dumps(doc, ensure_ascii=False, indent=2).encode(),
        )
        # ---------------- Excel (jyj, mzj) -------------------------------------------
        self._xlsx_variants()
        book = load_workbook(s.original("mzj", "minimum_living"))
        book.properties.title = "re-sent"
        self.redelivery(
            "xlsx: re-delivery, the same workbook saved again",
            "xlsx",
            "mzj",
            "minimum_living",
            workbook_bytes(book),
        )
        # ---------------- Parquet (zjj) ----------------------------------------------
        self._parquet_variants()
        buf = io.BytesIO()
        s.parquet("zjj", "buildings").write_parquet(buf, compression="gzip")
        self.redelivery(
            "parquet: re-delivery, the same rows compressed otherwise",
            "parquet",
            "zjj",
            "buildings",
            buf.getvalue(),
        )
        assert len(self.variants) <= MAX_VARIANTS
        return self.variants

    def _defects(self, dept: str, dataset: str, file_name: str, kind: str) -> int:
        path = sim_dir_for(self.s.home) / "truth" / dept / dataset / "defects.parquet"
        d = pl.read_parquet(path)
        return d.filter((pl.col("_file") == file_name) & (pl.col("kind") == kind)).height

    def _json_variants(self) -> None:
        J = "json"
        s = self.s
        doc, recs = s.json_doc("scjg", "merchants")
        f = s.fields("scjg", "merchants")
        n = len(recs)
        texts = [json.dumps(r, ensure_ascii=False) for r in recs]

        def doc_with(extra: list[str], at: int | None = None) -> bytes:
            at = n // 2 if at is None else at
            return json_doc_text(doc, texts[:at] + extra + texts[at:], "scjg", "merchants")

        self.add(
            "json: the document is a 100,000-deep array",
            J,
            "nesting bomb",
            "scjg",
            "merchants",
            "bombdoc",
            fail("too deep"),
            bomb_array().encode(),
        )
        rec = self.marked_json("scjg", "merchants", 0)
        rec[f.text or "address"] = MARK_NAME + "A" * BIG
        self.add(
            "json: a record over max_record_bytes",
            J,
            "oversized field",
            "scjg",
            "merchants",
            "bigrecord",
            # settings: a record (CSV row, JSON line or object) over the limit is quarantined
            quarantine(1, "too large", rows=n + 1, at=(n // 2 + 1,)),
            doc_with([json.dumps(rec, ensure_ascii=False)]),
        )
        self.add(
            "json: empty records list",
            J,
            "empty",
            "scjg",
            "merchants",
            "emptylist",
            load(0),  # a well-formed document with no records: nothing to load, not broken
            json_doc_text(doc, [], "scjg", "merchants"),
        )
        rec = self.marked_json("scjg", "merchants", 1)
        self.add(
            "json: a record with a duplicate key",
            J,
            "duplicate key",
            "scjg",
            "merchants",
            "dupkey",
            quarantine(1, "duplicate key", rows=n + 1, at=(n // 2 + 1,)),
            doc_with([self.with_duplicate_key(rec, f.names[0], MARK_NAME_2)]),
        )
        self.add(
            "json: the document is a string, not an object",
            J,
            "not an object",
            "scjg",
            "merchants",
            "scalar",
            fail("not an object"),
            json.dumps(MARK_NAME + marker_id(self.index), ensure_ascii=False).encode(),
        )
        drop = self.index % n
        self._copy(
            "json: a very long name (230 bytes)",
            J,
            "scjg",
            "merchants",
            "long_" + "x" * 200,
            json_doc_bytes(doc, recs[:drop] + recs[drop + 1 :], "scjg", "merchants"),
            n - 1,
        )
        # a failure whose reason must name the file escaped: no forged line, no colour
        whole = doc_with([json.dumps(self.marked_json("scjg", "merchants", 2), ensure_ascii=False)])
        self.add(
            "json: cut short, a newline and ESC codes in the name",
            J,
            "odd file name",
            "scjg",
            "merchants",
            "\nFORGED LOG LINE \x1b[31mred",
            fail("truncated"),
            whole[: len(whole) * 2 // 3],
        )

        doc, recs = s.json_doc("scjg", "service_points")
        f = s.fields("scjg", "service_points")
        n = len(recs)
        texts = [json.dumps(r, ensure_ascii=False) for r in recs]
        rec = self.marked_json("scjg", "service_points", 0)
        bomb_field = f.text or next(k for k in rec if k not in f.key)
        self.add(
            "json: a record holding a 100,000-deep array",
            J,
            "nesting bomb",
            "scjg",
            "service_points",
            "bombrecord",
            # a JSON document is one value: its depth is bounded before any parser sees it,
            # so a bomb in one record fails the document (JSON Lines keeps it to its line)
            fail("too deep"),
            json_doc_text(
                doc,
                [*texts[:2], self.with_raw_value(rec, bomb_field, bomb_array()), *texts[2:]],
                "scjg",
                "service_points",
            ),
        )
        rec = self.marked_json("scjg", "service_points", 1)
        whole = json_doc_text(
            doc, [*texts, json.dumps(rec, ensure_ascii=False)], "scjg", "service_points"
        )
        self.add(
            "json: the document cut short",
            J,
            "truncated",
            "scjg",
            "service_points",
            "cut",
            fail("truncated"),
            whole[: len(whole) - 200],
        )
        self.add(
            "json: empty file (0 bytes)",
            J,
            "empty",
            "scjg",
            "service_points",
            "empty0",
            fail("empty"),
            b"",
        )
        self.add(
            "json: records that are not objects",
            J,
            "not an object",
            "scjg",
            "service_points",
            "notobject",
            quarantine(2, "not an object", rows=n + 2, at=(4, 5)),
            json_doc_text(
                doc,
                [*texts[:3], json.dumps(MARK_NAME, ensure_ascii=False), MARK_MOBILE, *texts[3:]],
                "scjg",
                "service_points",
            ),
        )

    def _xlsx_variants(self) -> None:
        X = "xlsx"
        s = self.s

        def marked_book(dept: str, dataset: str):
            wb, ws, hrow, n = s.workbook(dept, dataset)
            header = [c.value for c in ws[hrow]]
            first = {h: c.value for h, c in zip(header, ws[hrow + 1], strict=True)}
            row = mark(first, s.fields(dept, dataset), self.index)
            ws.append([row[h] for h in header])
            return wb, n + 1

        # jyj
        self.add(
            "xlsx: empty file (0 bytes)",
            X,
            "empty",
            "jyj",
            "school_enrolment",
            "empty0",
            fail("empty"),
            b"",
        )
        wb, _ = marked_book("jyj", "school_enrolment")
        self.add(
            "xlsx: a member declaring more than xlsx_max_uncompressed_bytes",
            X,
            "oversized member",
            "jyj",
            "school_enrolment",
            "bigmember",
            fail("too large"),
            zip_add(workbook_bytes(wb), {"xl/media/zeros.bin": bytes(5 * 1024 * 1024)}),
        )
        wb, ws, hrow, n = s.workbook("jyj", "school_enrolment")
        ws.delete_rows(hrow + 1 + self.index % n)
        self.add(
            "xlsx: upper-case *.XLSX",
            X,
            "upper-case extension",
            "jyj",
            "school_enrolment",
            "upper",
            load(n - 1),
            workbook_bytes(wb),
            ext="XLSX",
        )
        # mzj
        wb, _ = marked_book("mzj", "elderly_alone")
        data = workbook_bytes(wb)
        self.add(
            "xlsx: archive cut short",
            X,
            "truncated",
            "mzj",
            "elderly_alone",
            "cut",
            fail("corrupt archive", "truncated"),
            data[: int(len(data) * 0.6)],
        )
        wb, n = marked_book("mzj", "elderly_alone")
        self.add(
            "xls: an Excel 97-2003 workbook (an older system's export), named .xlsx",
            X,
            "legacy format",
            "mzj",
            "elderly_alone",
            "xls",
            load(n),
            xls_bytes(wb),
        )
        wb, _ = marked_book("mzj", "minimum_living")
        data = xls_bytes(wb)
        self.add(
            "xls: compound document cut short",
            X,
            "truncated",
            "mzj",
            "minimum_living",
            "xlscut",
            fail("corrupt workbook", "truncated"),
            data[: len(data) - 700],
        )
        wb, _ = marked_book("mzj", "minimum_living")
        self.add(
            "xlsx: bytes flipped inside a member (CRC error)",
            X,
            "corrupt archive",
            "mzj",
            "minimum_living",
            "crc",
            fail("corrupt archive"),
            zip_flip(workbook_bytes(wb), "sheet1.xml"),
        )
        header, rows = s.csv_table("wjw", "elderly_health_checks")
        row = mark(rows[0], s.fields("wjw", "elderly_health_checks"), self.index)
        self.add(
            "xlsx: not a zip at all (a CSV named .xlsx)",
            X,
            "corrupt archive",
            "mzj",
            "disability_allowance",
            "notzip",
            fail("corrupt archive", "not a workbook"),  # no zip at all: either says it
            csv_bytes(header, [row], "utf-8"),
        )
        wb, ws, hrow, n = s.workbook("mzj", "old_age_allowance")
        header = [c.value for c in ws[hrow]]
        at = hrow + 1 + n // 2
        ws.insert_rows(at)
        for col, value in enumerate(header, start=1):
            ws.cell(row=at, column=col, value=value)
        self.add(
            "xlsx: a stray header row",
            X,
            "stray header",
            "mzj",
            "old_age_allowance",
            "stray",
            quarantine(1, "stray header", rows=n + 1, at=(at,)),
            workbook_bytes(wb),
        )
        wb, _ = marked_book("mzj", "old_age_allowance")
        members = {f"customXml/item{i}.xml": b"<a/>" for i in range(60)}
        self.add(
            "xlsx: more members than xlsx_max_members",
            X,
            "too many members",
            "mzj",
            "old_age_allowance",
            "members",
            fail("too large", "too many"),
            zip_add(workbook_bytes(wb), members),
        )

    def _parquet_variants(self) -> None:
        P = "parquet"
        s = self.s
        bad_parquet = ("not a readable parquet", "not parquet", "corrupt", "truncated")
        frame = s.parquet("zjj", "buildings")
        buf = io.BytesIO()
        frame.write_parquet(buf)
        data = buf.getvalue()
        self.add(
            "parquet: cut short",
            P,
            "truncated",
            "zjj",
            "buildings",
            "cut",
            fail(*bad_parquet),
            data[: len(data) // 2],
        )
        frame = s.parquet("zjj", "housing_units")
        f = s.fields("zjj", "housing_units")
        rows = frame.to_dicts()
        header = frame.columns
        marked = mark(rows[0], f, self.index)
        self.add(
            "parquet: not Parquet at all (CSV text)",
            P,
            "not parquet",
            "zjj",
            "housing_units",
            "notparquet",
            fail(*bad_parquet),
            csv_bytes(header, [{k: str(v) for k, v in marked.items()}], "utf-8"),
        )
        self.add(
            "parquet: empty file (0 bytes)",
            P,
            "empty",
            "zjj",
            "housing_units",
            "empty0",
            fail("empty"),
            b"",
        )
        drop = self.index % frame.height
        buf = io.BytesIO()
        pl.concat([frame[:drop], frame[drop + 1 :]]).write_parquet(buf)
        self._copy(
            "parquet: a good copy (one row fewer)",
            P,
            "zjj",
            "housing_units",
            "copy",
            buf.getvalue(),
            frame.height - 1,
        )

    # entries that are not regular files --------------------------------------------
    def _symlink_outside(self, dept: str, dataset: str, connector: str) -> None:
        t = self.csv_variants(dept, dataset, connector)
        secret = [mark(r, t["f"], self.index) for r in t["rows"][:3]]
        data = csv_bytes(t["header"], secret, t["enc"])
        home = self.s.home

        def write(path: Path) -> None:
            outside = home / "outside"
            outside.mkdir(exist_ok=True)
            target = outside / f"secret_{path.name}"
            target.write_bytes(data)
            path.symlink_to(target)

        self.add(
            f"{connector}: a symbolic link to a file outside the inbox",
            connector,
            "symlink",
            dept,
            dataset,
            "linkout",
            refused("symbolic link"),
            write,
        )

    def _symlink_inside(self, dept: str, dataset: str, connector: str) -> None:
        target = self.s.original(dept, dataset).name

        def write(path: Path) -> None:
            path.symlink_to(target)  # relative: the street's own delivery next to it

        self.add(
            f"{connector}: a symbolic link to a delivery inside the inbox",
            connector,
            "symlink",
            dept,
            dataset,
            "linkin",
            refused("symbolic link"),
            write,
        )

    def _symlink_odd_name(self, dept: str, dataset: str, connector: str) -> None:
        target = self.s.original(dept, dataset).name

        def write(path: Path) -> None:
            path.symlink_to(target)

        self.add(
            f"{connector}: a symbolic link named with a bidi override and a newline",
            connector,
            "odd file name",
            dept,
            dataset,
            "\u202elink\nFORGED LOG LINE",
            refused("symbolic link"),
            write,
        )

    def _fifo(self, dept: str, dataset: str, connector: str) -> None:
        self.add(
            f"{connector}: a FIFO named like a delivery",
            connector,
            "device",
            dept,
            dataset,
            "fifo",
            refused("not a regular file"),
            lambda path: os.mkfifo(path),
        )

    def _directory(self, dept: str, dataset: str, connector: str) -> None:
        def write(path: Path) -> None:
            path.mkdir()
            (path / "inside.jsonl").write_bytes(b'{"a": 1}\n')

        self.add(
            f"{connector}: a directory named like a delivery",
            connector,
            "directory",
            dept,
            dataset,
            "dir",
            refused("not a regular file"),
            write,
        )

    def _waiting(self, dept: str, dataset: str, connector: str) -> None:
        t = self.csv_variants(dept, dataset, connector)
        drop = (self.index + 1) % t["n"]
        rows = t["rows"][:drop] + t["rows"][drop + 1 :]
        self.add(
            f"{connector}: still being written (mtime now)",
            connector,
            "still being written",
            dept,
            dataset,
            "late",
            waiting(t["n"] - 1),
            csv_bytes(t["header"], rows, t["enc"]),
            settled=False,
        )


LIMIT_FILE = int(LIMITS["STREETHUB_MAX_FILE_BYTES"])


def build_corpus(home: Path, manifest: dict) -> list[Variant]:
    """The hostile variants of the street in ``home`` (its inbox as the simulator left it)."""
    variants = CorpusBuilder(Street(home, manifest)).build()
    names = [(v.dept, v.file_name) for v in variants]
    assert len(set(names)) == len(names), "variant file names must be distinct"
    return variants


def plant(home: Path, variants: list[Variant], *, settled_age_s: float = 3600) -> float:
    """Write every variant into ``home``'s inbox; returns the time the unsettled ones got.

    The street's own deliveries are dated two ages back and the settled variants
    one: arrival order is the street's delivery first, then the variants.
    """
    import time

    inbox = home / "inbox"
    now = time.time()
    for path in inbox.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.utime(path, (now - 2 * settled_age_s, now - 2 * settled_age_s))
    seen = {(p.parent.name, p.read_bytes()) for p in inbox.rglob("*") if p.is_file()}
    for v in variants:
        path = v.path(home)
        path.parent.mkdir(parents=True, exist_ok=True)
        v.write(path)
        if path.is_file() and not path.is_symlink():
            # landing skips a file whose bytes it has landed: every variant must differ
            data = (v.dept, path.read_bytes())
            assert data not in seen, f"{v.name}: same bytes as another delivery"
            seen.add(data)
    for v in variants:
        path = v.path(home)
        stamp = now - settled_age_s if v.settled else time.time()
        os.utime(path, (stamp, stamp), follow_symlinks=False)
    return time.time()


class StillWriting:
    """Keeps a file growing (its size and mtime change every 0.2 s) until ``stop``.

    An exporter still writing the file: landing must leave it for a later run.
    ``stop`` then writes the complete file, as the exporter would finish it.
    """

    def __init__(self, path: Path, interval_s: float = 0.2) -> None:
        import threading

        self.path = path
        self.data = path.read_bytes()
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._grow, daemon=True)

    def _grow(self) -> None:
        half = len(self.data) // 2
        size = half
        self.path.write_bytes(self.data[:size])
        while not self._stop.wait(self.interval_s):
            if size + 64 >= len(self.data):
                size = half
                os.truncate(self.path, size)
            with open(self.path, "ab") as fh:
                fh.write(self.data[size : size + 64])
            size += 64

    def start(self) -> StillWriting:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.path.write_bytes(self.data)


def clean_markers_absent(home: Path) -> list[str]:
    """Markers that already occur in the street's own deliveries (must be none)."""
    needles = marker_needles()
    found = []
    for path in (home / "inbox").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [n.decode("utf-8", "replace") for n in needles if n in data]
    return found


def copy_street(src: Path, target: Path) -> None:
    """The street's home and the simulator's folder beside it."""
    shutil.copytree(src, target, symlinks=True)
    shutil.copytree(sim_dir_for(src), sim_dir_for(target), symlinks=True)
