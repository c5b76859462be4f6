"""Correction requests (校核纠错) from the share service taken into the correction loop.

A grantee files a correction on a record's field of a department dataset
(``share_api.feedback``); the share records copied into the lake carry it
(``landing.share_corrections``: resource, field, the record as the grantee named it, the
owner's decision). Here each becomes a consumer dispute of ``quarantine.issues``
(``quality.corrections.open_dispute``): the issue is resolved when the owner's next delivery
changes the disputed field of that record, and the quality report counts open and resolved
disputes per dataset.

Taken in: corrections on a department's dataset (not a mart's) whose record was found in
the staged table (``keys``: correction id → the record's key pseudonym) and that the owner
did not reject. A correction is taken once: its dispute's id is fixed by the correction (the
requester, the record, the field and the time it was filed), so a dispute already among the
issues is not opened again.
"""

from __future__ import annotations

import polars as pl

from quality.corrections import ISSUE_SCHEMA, empty_issues, open_dispute

REJECTED = "rejected"


def disputes_from_corrections(
    corrections: pl.DataFrame, keys: pl.DataFrame, issues: pl.DataFrame | None
) -> pl.DataFrame:
    """New dispute rows for ``corrections`` (``landing.share_corrections``' columns);
    ``keys``: ``correction_id``, ``dept``, ``dataset``, ``key_pid`` of the records found;
    ``issues``: the issues already held (None: none)."""
    if corrections.is_empty() or keys.is_empty():
        return empty_issues()
    taken = corrections.filter(pl.col("decision").ne_missing(REJECTED)).join(
        keys, on="correction_id", how="inner"
    )
    held = set() if issues is None or issues.is_empty() else set(issues["issue_id"].to_list())
    rows = [
        open_dispute(
            c["dept"],
            c["dataset"],
            c["key_pid"],
            c["field"],
            reason=f"share correction {c['correction_id']}: {c['problem']}",
            by=c["requester_org"],
            now=c["filed_at"],
        )
        for c in taken.iter_rows(named=True)
    ]
    new = [r for r in rows if r["issue_id"][0] not in held]
    if not new:
        return empty_issues()
    return pl.concat(new).unique("issue_id", keep="first").cast(ISSUE_SCHEMA)
