"""Standardising in batches equals standardising the frame whole, on every dataset of the
gate street (dirt included): the same typed values, the same missing flags, the same repair
counts in the same order."""

from __future__ import annotations

from polars.testing import assert_frame_equal

from quality.standardise import standardise


def test_batches_equal_the_whole_frame(gate_street) -> None:
    compared = 0
    for ref, raw in gate_street.raw.items():
        ds = gate_street.dataset(ref)
        whole = standardise(raw, ds, batch_rows=raw.height + 1)
        batched = standardise(raw, ds, batch_rows=max(37, raw.height // 5))
        assert_frame_equal(batched.frame, whole.frame)
        assert_frame_equal(batched.repairs, whole.repairs)
        compared += raw.height > 37 and whole.repairs.height > 1
    # the comparison covered datasets of several batches with several kinds of repair
    assert compared >= 5
