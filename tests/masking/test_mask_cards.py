"""Bank cards: Luhn plus an issuer prefix or a card cue, one rule for scrubber and scanner."""

from __future__ import annotations

import polars as pl
import pytest

from masking.cards import bank_card_str, card_cue_before, card_spans, issuer_prefix
from masking.leaks import cell_kinds, scan_frame
from masking.text import scrub


def _luhn(body: str) -> str:
    """``body`` and the digit that makes it pass Luhn (an oracle apart from the code)."""
    for d in "0123456789":
        digits = body + d
        total = 0
        for i, c in enumerate(reversed(digits)):
            n = int(c) * (2 if i % 2 else 1)
            total += n - 9 if n > 9 else n
        if total % 10 == 0:
            return digits
    raise AssertionError(body)


UNIONPAY = _luhn("621700123456789012")  # 19 digits, the simulator's 社保卡 prefix
VISA = _luhn("436742123456789")  # 16 digits
ORDER = _luhn("202503081234567890")  # a platform's order number: Luhn by chance
ODD_CARD = _luhn("880012345678901")  # a card on a prefix not listed (16 digits)
NOT_LUHN = ORDER[:-1] + str((int(ORDER[-1]) + 1) % 10)


@pytest.mark.parametrize(
    ("digits", "prefix"),
    [
        (UNIONPAY, True),
        (VISA, True),
        (_luhn("518710123456789"), True),  # Mastercard 51–55, 16 digits
        (_luhn("222100123456789"), False),  # Mastercard 2-series: a year's digits first
        (_luhn("356833123456789"), True),  # JCB
        (_luhn("436742123456789012"), False),  # Visa at 19 digits: read as an order number
        (ORDER, False),
        (_luhn("241130153012345"), False),  # a yymmdd order number of 16 digits
        (_luhn("955880123456789012"), True),  # ICBC's 19-digit 9558 cards
        (_luhn("95588012345678901"), False),  # … at 18 digits
        (ODD_CARD, False),
    ],
)
def test_issuer_prefixes(digits: str, prefix: bool) -> None:
    assert issuer_prefix(digits) is prefix
    assert bank_card_str(digits) is prefix


def test_luhn_is_always_needed() -> None:
    assert not bank_card_str(NOT_LUHN, cued=True)
    assert not bank_card_str(UNIONPAY[:-1] + str((int(UNIONPAY[-1]) + 1) % 10))
    assert bank_card_str(ODD_CARD, cued=True) and bank_card_str(ORDER, cued=True)


@pytest.mark.parametrize(
    ("text", "cued"),
    [
        (f"卡号{ODD_CARD}", True),
        (f"银行卡号是：{ODD_CARD}", True),
        (f"收款账号 {ODD_CARD}", True),
        (f"社保卡（{ODD_CARD}）", True),
        (f"银行卡已挂失。订单{ODD_CARD}", False),  # a sentence ends between
        (f"卡号12，订单{ODD_CARD}", False),  # a digit between
        (f"账号丢了，后来在网上下单的订单{ODD_CARD}", False),  # too far
        (f"订单号{ODD_CARD}", False),
    ],
)
def test_a_cue_counts_close_before_the_number(text: str, cued: bool) -> None:
    start = text.index(ODD_CARD)
    assert card_cue_before(text, start) is cued
    assert (card_spans(text) == [(start, len(text) - (len(text) - start - len(ODD_CARD)))]) is cued


@pytest.mark.parametrize(
    ("text", "card"),
    [
        (f"订单号{ORDER}至今未发货", False),
        (f"外卖订单{ORDER}少送了一份", False),
        (f"工单{_luhn('12345202511240001')}已办结", False),
        (f"卡号{ORDER}", True),  # the cue decides
        (f"转账到{UNIONPAY}", True),  # the prefix decides
        (f"打款到{VISA[:4]} {VISA[4:8]} {VISA[8:12]} {VISA[12:]}", True),
        (f"账号{ODD_CARD}，户名已核实", True),
        (f"单号{ODD_CARD}", False),
    ],
)
def test_scrubber_and_scanner_share_the_rule(text: str, card: bool) -> None:
    masked, findings = scrub(text)
    assert ("bank_card" in {f.kind for f in findings}) is card
    assert ("bank_card" in cell_kinds(text)) is card
    if card:
        assert "bank_card" not in cell_kinds(masked)


def test_a_column_of_cards_needs_no_cue() -> None:
    """A catalogue field of PII kind bank_card: a Luhn-valid run there is a card whatever
    its prefix; the same value in another column is not."""
    frame = pl.DataFrame({"bank_card": [ODD_CARD, NOT_LUHN, None], "order": [ODD_CARD, "x", None]})
    found = scan_frame(frame, card_columns={"bank_card"})
    assert found.by_column == {"bank_card": {"bank_card": 1}}
    assert scan_frame(frame).total == 0
    assert "bank_card" in cell_kinds(ODD_CARD, card_column=True)


def test_the_leak_scan_reads_the_catalogues_card_columns_as_cards() -> None:
    """Every catalogue field of PII kind bank_card, in raw and staged, is a card column
    of the lake scan (``pipelines.leaks.card_columns``), and nothing else is."""
    from catalog.loader import get_catalogue
    from catalog.model import PiiKind
    from pipelines.ingest.raw import raw_table
    from pipelines.leaks import card_columns

    cat = get_catalogue()
    want = {
        (zone, raw_table(dept.code, ds)): {f.name}
        for dept, ds in cat.datasets()
        for f in ds.fields
        if f.pii is PiiKind.bank_card
        for zone in ("raw", "staged")
    }
    assert want  # the catalogue holds card fields (社保卡号)
    assert {k: set(v) for k, v in card_columns(cat).items()} == want
