"""``scan_frames``: several frames scanned together (one vectorised filter over all of them)
give each frame's counts as a scan of that frame alone, its own rules (card and structured
columns) and row numbers kept to it, whatever the other frames hold under the same names."""

from __future__ import annotations

import datetime as dt

import polars as pl

from catalog.identifiers import id_check_char_str
from masking.leaks import FrameScan, LeakCounts, scan_frames
from masking.names import KnownNames

NAMES = KnownNames({"王小明", "李华", "欧阳娜娜"})


def _luhn(body: str) -> str:
    """``body`` and the digit that makes it pass Luhn (an oracle apart from the code)."""
    for d in "0123456789":
        digits = body + d
        total = sum(
            (n - 9 if n > 9 else n)
            for n in (int(c) * (2 if i % 2 else 1) for i, c in enumerate(reversed(digits)))
        )
        if total % 10 == 0:
            return digits
    raise AssertionError(body)


ODD_CARD = _luhn("880012345678901")  # Luhn, no issuer prefix: a card only in a card column


def citizen_id(born: dt.date, seq: str) -> str:
    first17 = f"110105{born:%Y%m%d}{seq}"
    return first17 + id_check_char_str(first17)


def _scans() -> list[FrameScan]:
    ident = citizen_id(dt.date(1949, 12, 31), "002")
    digits = next(
        i for s in range(100) if (i := citizen_id(dt.date(1950, 3, 1), f"{s:03d}")).isdigit()
    )
    return [
        # a card column here; the same name plain in the next frame
        FrameScan(
            pl.DataFrame({"number": [ODD_CARD, "x", None], "note": ["无", "李华来电", "备注"]}),
            card_columns={"number"},
        ),
        FrameScan(pl.DataFrame({"number": [ODD_CARD, ODD_CARD], "note": ["a", "b"]})),
        # a structured column here (a name counts only as the whole value); free text next
        FrameScan(
            pl.DataFrame({"shop": ["王小明便利店", "王小明", "社区"]}),
            whole_name_columns={"shop"},
        ),
        FrameScan(pl.DataFrame({"shop": ["王小明便利店", "店"]}), row_offset=500),
        FrameScan(pl.DataFrame({"shop": []}, schema={"shop": pl.String})),  # no rows
        # numbers, floats, integers, a list and binary: read as their text
        FrameScan(
            pl.DataFrame(
                {
                    "n": [int(digits), 7, None],
                    "f": [13812345678.0, 1.5, None],
                    "tags": [["欧阳娜娜", "x"], [], None],
                    "raw": [b"13912345678", b"", None],
                    "day": [dt.date(2026, 1, 1), None, None],
                }
            ),
            row_offset=10,
        ),
        FrameScan(pl.DataFrame({"day": [dt.date(2026, 1, 1)]})),  # nothing read as text
        FrameScan(
            pl.DataFrame({"note": [f"证件{ident}", "电话 138 1234 5678", f"{ident}01", None]}),
            row_offset=3,
        ),
    ]


def _plain(counts: LeakCounts) -> tuple:
    return (
        dict(counts.by_kind),
        counts.by_column,
        counts.samples,
        counts.cells_scanned,
    )


def test_frames_scanned_together_count_as_each_alone() -> None:
    scans = _scans()
    together = scan_frames(scans, known_names=NAMES, max_samples=100)
    alone = [scan_frames([s], known_names=NAMES, max_samples=100)[0] for s in scans]
    assert [_plain(c) for c in together] == [_plain(c) for c in alone]
    # what each frame holds, by its own rules
    card, plain, whole, free, empty, typed, dates, text = together
    assert card.by_column == {"number": {"bank_card": 1}, "note": {"person_name": 1}}
    assert plain.total == 0  # the same card, in a column that is not one of cards
    assert whole.by_column == {"shop": {"person_name": 1}} and whole.samples == [
        (1, "shop", "person_name")
    ]
    assert free.by_column == {"shop": {"person_name": 1}}
    assert free.samples == [(500, "shop", "person_name")]  # its own row offset
    assert empty.cells_scanned == 0 and empty.total == 0
    assert typed.by_column == {
        "n": {"citizen_id": 1},
        "f": {"mobile": 1},
        "tags": {"person_name": 1},
        "raw": {"mobile": 1},
    }
    assert {row for row, _, _ in typed.samples} == {10}
    assert dates.cells_scanned == 0
    assert text.by_column["note"] == {"citizen_id": 1, "mobile": 1, "citizen_id_embedded": 1}
    assert sorted(row for row, _, _ in text.samples) == [3, 4, 5]
    # every non-null cell read once, in its own frame (an integer of 10 digits or fewer too;
    # dates are not read)
    assert [c.cells_scanned for c in together] == [5, 4, 3, 2, 0, 8, 0, 3]


def test_names_only_and_few_frames() -> None:
    scans = _scans()
    names = scan_frames(scans, known_names=NAMES, names_only=True)
    assert [set(c.by_kind) for c in names if c.total] == [{"person_name"}] * 4
    assert scan_frames([], known_names=NAMES) == []
    assert _plain(scan_frames(scans[4:5])[0]) == _plain(LeakCounts())
