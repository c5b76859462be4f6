"""The scanner's vectorised pre-filter passes every cell a detector would flag.

``scan_frame`` looks value by value only at cells its pre-filter picks; the oracle here
judges every cell with ``cell_kinds``. Planted values of every kind, in every spelling the
detectors read (full-width, JSON-escaped, grouped, +86, floats …), next to the characters
that decide a detector's look-arounds (letters, digits, a decimal point, a hex word), and
digit runs of every length near the detectors' lengths: the counts must be the same.
"""

from __future__ import annotations

import random

import polars as pl
import pytest

from catalog.identifiers import id_check_char_str
from masking.leaks import FEW_NAMES, cell_kinds, scan_frame
from masking.names import KnownNames
from masking.text import ID_PROVINCES

NAMES = {"欧阳娜娜", "王兴", "李小明"}
FULL = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)} | {" ": "\u3000"})
BEFORE = ["", " ", "a", "Z", "0", "7", ".", "5.", "+", "号", "-", "(", "deadbeef0123456 ", "x "]
AFTER = ["", " ", "a", "X", "x", "0", ".", ".0", "号", "-1", ")", " 9", "-"]


def _luhn_complete(body: str) -> str:
    for d in "0123456789":
        digits = body + d
        total = sum(
            (2 * int(c) - 9 if 2 * int(c) > 9 else 2 * int(c)) if i % 2 else int(c)
            for i, c in enumerate(reversed(digits))
        )
        if total % 10 == 0:
            return digits
    raise AssertionError(body)


def _values(rng: random.Random) -> list[str]:
    provinces = sorted(ID_PROVINCES)
    core: list[str] = []
    for _ in range(12):
        body = (
            rng.choice(provinces) + f"{rng.randrange(10**4):04d}"
            + f"{rng.randrange(1900, 2024)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
            + f"{rng.randrange(1000):03d}"
        )  # fmt: skip
        cid = body + id_check_char_str(body)
        core += [
            cid,
            cid.lower(),
            f"{cid[:6]} {cid[6:14]} {cid[14:]}",
            f"{cid[:6]}-{cid[6:14]}-{cid[14:]}",
        ]
        core += [cid + "12", "123" + cid, f"{int(cid[:17] + '0'):.14E}", f"{cid[:15]}000.0"]
        core += [body[:6] + body[8:14] + body[14:], body[:17] + "7"]  # 15 digits; wrong check
        core.append(
            rng.choice(provinces) + f"{rng.randrange(10**4):04d}20{rng.randrange(10**8):08d}"
        )
        mobile = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
        core += [mobile, "+86" + mobile, "0086 " + mobile, "86-" + mobile, f"{mobile}.0"]
        core += [
            f"{mobile[:3]} {mobile[3:7]} {mobile[7:]}",
            f"{mobile[:3]}.{mobile[3:7]}.{mobile[7:]}",
        ]
        core += [f"010-{rng.randrange(10**8):08d}", f"(0755){rng.randrange(10**7):07d}",
                 f"0571 {rng.randrange(10**7):07d}-12"]  # fmt: skip
        card = _luhn_complete(
            rng.choice("23456") + f"{rng.randrange(10**17):017d}"[: rng.randrange(15, 19)]
        )
        core += [card, " ".join(card[i : i + 4] for i in range(0, len(card), 4))]
        core += ["zhang.san@example.com", "a@b.cn", "京AD12345", "沪B·1234X", "粤Z12345"]
    for n in range(5, 27):  # digit runs near every length a detector reads
        for _ in range(6):
            run = "".join(rng.choice("0123456789") for _ in range(n))
            core += [run, rng.choice("123456789") + run[1:], run[:-1] + "X"]
    values = []
    for v in core:
        values.append(rng.choice(BEFORE) + v + rng.choice(AFTER))
        values.append("联系" + v + "。")
        values.append(v.translate(FULL))
        # as JSON written ASCII-only spells them (a Dagster event): escaped, full-width or not
        values.append(("联系" + v).encode("ascii", "backslashreplace").decode())
        values.append(v.translate(FULL).encode("ascii", "backslashreplace").decode())
    values += [
        v.encode("ascii", "backslashreplace").decode() for v in ["联系人欧阳娜娜", "王兴便利店"]
    ]
    values += ["王兴", " 李小明 ", "王兴便利店", "李小明说", "116.457786", "MJ202611290002813"]
    return values


def _oracle(frame: pl.DataFrame, names: KnownNames, whole: set[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for column in frame.columns:
        counts: dict[str, int] = {}
        for v in frame[column].drop_nulls():
            for kind in cell_kinds(v, names, whole_names=column in whole):
                counts[kind] = counts.get(kind, 0) + 1
        if counts:
            out[column] = counts
    return out


@pytest.mark.parametrize("registry", [0, FEW_NAMES + 1])  # polars' automaton, or Python's
def test_the_prefilter_passes_every_cell_a_detector_flags(registry: int) -> None:
    rng = random.Random(11)
    values = _values(rng)
    frame = pl.DataFrame({"free": values, "shop": list(reversed(values))})
    names = KnownNames(NAMES | {f"钱{chr(0x4E00 + i)}{chr(0x4E00 + i)}" for i in range(registry)})
    expected = _oracle(frame, names, {"shop"})
    found = scan_frame(frame, known_names=names, whole_name_columns={"shop"})
    assert found.by_column == expected
    kinds = {k for per in expected.values() for k in per}
    assert kinds == {
        "citizen_id", "citizen_id_embedded", "residence_permit", "mobile", "landline",
        "bank_card", "email", "plate", "person_name",
    }  # fmt: skip


def test_integer_columns_are_read_as_their_digits() -> None:
    rng = random.Random(5)
    numbers = [
        rng.randrange(10**k, min(10 ** (k + 1), 2**63)) for k in range(19) for _ in range(40)
    ]
    numbers += [int(f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}") for _ in range(20)]
    ids = [v for v in _values(rng) if v.isdigit() and len(v) in (15, 18) and int(v) < 2**63]
    numbers += [int(v) for v in ids] + [-n for n in numbers[::7]]
    frame = pl.DataFrame({"n": [*numbers, None]}, schema={"n": pl.Int64})
    expected: dict[str, int] = {}
    for n in numbers:
        for kind in cell_kinds(str(n)):
            expected[kind] = expected.get(kind, 0) + 1
    found = scan_frame(frame)
    assert found.by_column.get("n", {}) == expected and expected.get("mobile", 0) >= 20
    assert found.cells_scanned == len(numbers)
    rows = [row for row, _, _ in scan_frame(frame, max_samples=10**6).samples]
    assert all(cell_kinds(str(numbers[r])) for r in rows)


def test_names_are_found_beside_ascii_and_with_ascii_in_them() -> None:
    han = KnownNames({"欧阳娜娜"})
    assert "person_name" in cell_kinds('{"m": "id=7欧阳娜娜,"}', han)
    assert not cell_kinds("欧阳 娜娜", han)  # split by an ASCII space: no name
    mixed = KnownNames({"欧阳娜娜", "李A"})  # a name holding an ASCII letter
    assert "person_name" in cell_kinds("联系人李A到场", mixed)


def test_names_only_finds_registry_names_and_nothing_else() -> None:
    escaped = "欧阳娜娜".encode("ascii", "backslashreplace").decode()
    frame = pl.DataFrame(
        {
            "shop": ["欧阳娜娜", escaped, "欧阳娜娜便利店"],
            "note": [f"电话{'13812345678'}", "联系欧阳娜娜", escaped],
        }
    )
    found = scan_frame(
        frame, known_names={"欧阳娜娜"}, whole_name_columns={"shop"}, names_only=True
    )
    assert found.by_column == {"shop": {"person_name": 2}, "note": {"person_name": 2}}


def test_escaped_texts_with_nothing_but_names_are_read_for_names_alone() -> None:
    """A JSON text written ASCII-only (every Chinese character escaped) is picked by the
    pre-filter for its escapes; unescaped, half-width, the pre-filter's other forms decide
    whether the detectors read it (``names_alone``): a planted number — plain, full-width
    or escaped full-width — is still found, a name is found in either case."""
    from masking.leaks import names_alone

    def escaped(text: str) -> str:
        return text.encode("ascii", "backslashreplace").decode()

    body = '{"description": "街道数据中心 资源目录", "rows": 1204, "run": "deadbeef01234567"}'
    texts = [
        escaped(body),
        escaped(body.replace("资源目录", "联系人欧阳娜娜")),
        escaped(body.replace("资源目录", "电话13812345678")),
        escaped(body.replace("资源目录", "电话" + "13812345678".translate(FULL))),
        escaped(body.replace("资源目录", "京AD12345")),
    ]
    frame = pl.DataFrame({"event": texts})
    names = KnownNames(NAMES)
    assert names_alone(frame["event"]) == set(texts[:2])
    found = scan_frame(frame, known_names=names)
    assert found.by_column == _oracle(frame, names, set())
    assert found.by_kind == {"person_name": 1, "mobile": 2, "plate": 1}


def test_a_frame_is_judged_column_by_column_in_one_pass(monkeypatch) -> None:
    """``scan_frame`` decides in one pass over the whole frame which columns hold a
    candidate; a column's own rules (card numbers, whole-cell names) still decide its
    values, the others' values are counted without being read one by one, and the cells
    scanned are those a scan column by column counts."""
    import masking.leaks as leaks

    card = _luhn_complete("880012345678901")  # no issuer prefix: a card only in a card column
    names = KnownNames(NAMES)
    frame = pl.DataFrame(
        {
            "code": ["A-1", "A-1", "B-2", None],
            "cards": [card, "n/a", None, card],
            "no_cards": [card, "n/a", "x", card],
            "shop": ["王兴", "王兴便利店", None, "李小明"],
            "note": ["王兴便利店", "联系李小明", "-", None],
            "small": pl.Series([1, 2, None, 3], dtype=pl.Int64),
            "big": pl.Series([13812345678, 7, None, 10**10], dtype=pl.Int64),
            "amount": [1.5, 2.0, None, 13812345678.0],
            "digest": ["deadbeef" * 2, "0123456789abcdef", None, "c" * 16],
            "blob": pl.Series([b"11010519491231002X", None, b"x", b"y"], dtype=pl.Binary),
            "ok": [True, False, None, True],
        }
    )
    read: list[str] = []
    real = leaks.cell_kinds

    def watched(text: str, *args, **kwargs):
        read.append(text)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(leaks, "cell_kinds", watched)
    found = scan_frame(
        frame, known_names=names, whole_name_columns={"shop"}, card_columns={"cards"}
    )
    assert found.by_column == {
        "cards": {"bank_card": 2},
        "shop": {"person_name": 2},
        "note": {"person_name": 2},
        "big": {"mobile": 1},
        "amount": {"mobile": 1},
        "blob": {"citizen_id": 1},
    }
    assert not {"A-1", "B-2", "1.5", "2.0", "n/a"} & set(read)  # no candidate: never read
    # every non-null cell but the digests' and the booleans'
    assert found.cells_scanned == 3 + 3 + 4 + 3 + 3 + 3 + 3 + 3 + 3


def _numbers_text(rng: random.Random, planted: list[str], sep: str) -> str:
    """A long text of numbers as a model file or a JSON event writes them (floats at full
    precision, their fractions' long digit runs, exponents, hex words), ``planted`` among
    them."""

    def number() -> str:
        kind = rng.randrange(5)
        if kind == 0:
            return repr(rng.uniform(-100, 100))
        if kind == 1:
            return repr(rng.random() / 10 ** rng.randrange(1, 40))
        if kind == 2:
            return str(rng.randrange(10 ** rng.randrange(1, 12)))
        if kind == 3:
            return f'"{rng.randrange(16**16):016x}"'
        return f"0.{rng.randrange(10**17):017d}"

    def fill(n: int) -> list[str]:
        return [number() for _ in range(n)]

    items = fill(1_000)
    for value in planted:  # far enough apart for each to stand in a piece of its own
        items += [value, *fill(30)]
    return sep.join(items)


@pytest.mark.parametrize("sep", [", ", '", "', " "])
def test_a_long_text_read_in_pieces_finds_what_it_read_whole_finds(monkeypatch, sep) -> None:
    """A text of :data:`LONG_TEXT` characters or more is read for digits in pieces cut at
    commas, each read only where the pre-filter picks it: the kinds are those the detectors
    find in the text read whole (``LONG_TEXT`` out of reach), planted values of every kind
    beside the characters that decide the detectors' look-arounds, among numbers whose
    fractions hold digit runs of every detector's length."""
    import masking.leaks as leaks

    rng = random.Random(23)
    values = [v for v in _values(rng) if any(c.isdigit() for c in v)]
    texts = []
    for start in range(0, len(values), 40):
        texts.append(_numbers_text(rng, values[start : start + 40], sep))
    texts.append(_numbers_text(rng, [], sep))  # nothing planted: most pieces pass unread
    assert all(len(t) >= leaks.LONG_TEXT for t in texts)
    read: list[int] = []
    whole_read = leaks._digit_kinds

    def counted(half: str, *args) -> set[str]:
        read.append(len(half))
        return whole_read(half, *args)

    monkeypatch.setattr(leaks, "_digit_kinds", counted)
    in_pieces = [cell_kinds(t) for t in texts[:-1]]
    pieces_read = sum(read)
    read.clear()
    in_pieces.append(cell_kinds(texts[-1]))
    plain_read = sum(read)  # of the text with nothing planted
    pieces_read += plain_read
    monkeypatch.setattr(leaks, "LONG_TEXT", 10**9)
    read.clear()
    whole = [cell_kinds(t) for t in texts]
    assert in_pieces == whole
    kinds = set().union(*whole)
    assert {"citizen_id", "citizen_id_embedded", "mobile", "landline", "bank_card"} <= kinds
    if "," in sep:  # cut: less of the text read value by value, little of a plain one
        assert pieces_read < sum(read) / 2 and plain_read < len(texts[-1]) / 10
    else:  # no comma to cut at: read whole
        assert pieces_read == sum(read)


def test_each_value_in_a_long_text_is_found_as_on_its_own(monkeypatch) -> None:
    """Each planted value alone in a long text of numbers that hold nothing: the kinds read
    in pieces are the value's own, as the detectors read it between the commas (pieces and
    texts made short here, so that every value is tried: the pre-filter's forms for pieces
    must pick every piece a detector flags, whatever stands before the value, a piece's
    start included)."""
    import masking.leaks as leaks

    monkeypatch.setattr(leaks, "LONG_TEXT", 300)
    monkeypatch.setattr(leaks, "PIECE", 48)
    rng = random.Random(29)
    filler = _numbers_text(rng, [], ",")[:400].rpartition(",")[0]  # blanked hex words: ≥ 300
    no_cut = " ".join(str(rng.randrange(10**3)) for _ in range(leaks.PIECE))  # no comma
    assert not cell_kinds(filler + "," + filler) and not cell_kinds(no_cut)
    tried = found = 0
    for value in _values(rng):
        if not any(c.isdigit() for c in value) or "," in value:
            continue
        expected = cell_kinds("," + value + ",")
        texts = [filler + "," + value + "," + filler]
        if value.startswith("."):  # a piece that begins with a decimal point
            texts.append(no_cut + "," + value + "," + filler)
        for text in texts:
            assert len(text) >= 1.5 * leaks.LONG_TEXT  # its hex words blanked: still long
            assert cell_kinds(text) == expected, value
        tried, found = tried + 1, found + bool(expected)
    assert tried > 3_000 and found > 1_000


def test_a_card_cue_before_a_comma_keeps_a_long_text_whole() -> None:
    """A card's cue word may stand before a comma and the number after it: a long text
    with a cue anywhere is read whole, so a number that is a card only for its cue (no
    issuer prefix) is found, as in a short text; in a card column, with no cue."""
    import masking.leaks as leaks

    card = _luhn_complete("880012345678901")
    rng = random.Random(3)
    short = f"卡号, {card}"
    assert "bank_card" in cell_kinds(short)
    # the cue's comma is the first after a piece's length: a cut between cue and number
    before = " ".join(str(rng.randrange(10**6)) for _ in range(leaks.PIECE))[: leaks.PIECE + 1]
    long = before + short + ", " + _numbers_text(rng, [], ", ")
    assert long.index(",") > leaks.PIECE and len(long) >= leaks.LONG_TEXT
    assert "bank_card" in cell_kinds(long)
    plain = before + card + ", " + _numbers_text(rng, [], ", ")
    assert "bank_card" not in cell_kinds(plain)
    # in a column of card numbers it is one: such a column's long text is read whole too
    assert "bank_card" in cell_kinds(plain, card_column=True)


def test_long_values_are_read_for_names_alone_only_where_nothing_else_can_be_found() -> None:
    """A value of ``ALONE_CHARS`` characters or more is read again as the detectors read it,
    and for names alone when none of their forms picks it there: a long text of numbers
    whose only candidates are floats' fractions is; each planted value in it keeps the
    value's kinds (the scan's counts are the oracle's, value by value)."""
    from masking.leaks import ALONE_CHARS, names_alone

    rng = random.Random(31)
    filler = _numbers_text(rng, [], ", ")[: ALONE_CHARS + 200].rpartition(",")[0]
    assert len(filler) >= ALONE_CHARS and not cell_kinds(filler)
    planted = [v for v in _values(rng)[::4] if "," not in v]
    values = [filler + ", " + v + ", " + filler for v in planted]
    values += [filler, filler + ', "王兴"']
    frame = pl.DataFrame({"event": values})
    names = KnownNames(NAMES)
    expected = _oracle(frame, names, set())
    assert scan_frame(frame, known_names=names).by_column == expected
    assert expected["event"]["citizen_id"] > 10 and expected["event"]["person_name"] > 1
    alone = names_alone(frame["event"])
    assert {filler, filler + ', "王兴"'} <= alone
    assert all(not cell_kinds(v) for v in alone)  # without a registry, nothing to find
