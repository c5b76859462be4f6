"""The share loop end to end over HTTP, on a real uvicorn server (issue 14's must-show).

A department requests a conditional dataset with an L3 field → the owner department's
reviewer approves and that is not enough → a data officer (another person) approves → the
grant's data is readable as JSON, Arrow and Parquet, masked by the grant; a resident opts
out and the next reads lack them (and only them) → the grant is revoked → 403. The time
from the second approval to the first byte of data is printed (seconds, not hours).
"""

from __future__ import annotations

import io
import time
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.model import Level, MaskingRule, ShareType
from lakehouse.lake import open_lake
from share_api.consent import resident_columns

# rules whose output never equals a clear value of the field (free-text scrubbing and
# generalisations can: a text without PII, a value already coarse)
HIDING = {
    MaskingRule.pseudonymise,
    MaskingRule.suppress,
    MaskingRule.mask_name,
    MaskingRule.mask_mobile,
    MaskingRule.mask_document,
    MaskingRule.mask_address,
    MaskingRule.mask_bank_card,
}


def conditional_with_l3(service) -> tuple[str, object, str]:
    """The catalogue's first conditional dataset with an L3 field, holding residents (a
    person-key pseudonym column) and staged rows: (resource, dataset, resident column)."""
    with open_lake(service.settings, read_only=True) as con:
        for dept, ds in service.catalogue.datasets():
            resource = f"{dept.code}.{ds.code}"
            if ds.share_type is not ShareType.conditional:
                continue
            if not any(f.level is Level.L3 for f in ds.fields):
                continue
            columns = resident_columns(service, resource)
            if not columns or not ds.consent_category.personal:
                continue
            (rows,) = con.execute(
                f'SELECT count(*) FROM staged."{dept.code}__{ds.code}"'
            ).fetchone()
            if rows:
                return resource, ds, columns[0]
    pytest.fail("the catalogue has no conditional dataset with an L3 field and residents")


def most_mentioned(service, resource: str, column: str) -> str:
    """The hub pseudonym of the resident with the most rows in the dataset."""
    table = resource.replace(".", "__", 1)
    with open_lake(service.settings, read_only=True) as con:
        (who,) = con.execute(
            f'SELECT "{column}" FROM staged."{table}" WHERE "{column}" IS NOT NULL '
            "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
        ).fetchone()
    return who


def read(client, grant_id: str, fmt: str) -> pa.Table:
    r = client.get(f"/grants/{grant_id}/data", params={"format": fmt, "limit": 10**9})
    assert r.status_code == 200, r.text
    if fmt == "json":
        return pa.Table.from_pylist(r.json()["rows"])
    if fmt == "arrow":
        return pa.ipc.open_stream(r.content).read_all()
    return pq.read_table(io.BytesIO(r.content))


def rows_of(table: pa.Table) -> Counter:
    """The table's rows (values as text), counted."""
    return Counter(
        tuple(str(v) for v in row) for row in zip(*table.to_pydict().values(), strict=True)
    )


@pytest.mark.timeout(600)
def test_request_review_read_opt_out_revoke(service, people, server, mart_street) -> None:
    resource, ds, resident_col = conditional_with_l3(service)
    owner = resource.split(".")[0]
    asker_org = next(c for c in service.catalogue.departments if c != owner)
    asker = people.make(asker_org, "requester")
    reviewer = people.make(owner, "reviewer")
    officer = people.make("street_office", "data_officer")
    fields = [f.name for f in ds.fields]
    l3 = [f for f in ds.fields if f.level is Level.L3]

    with server.client(asker) as me:
        asked = me.post(
            "/requests",
            json={
                "resource": resource,
                "columns": fields,
                "purpose": "核对辖区对象的服务台账",
                "legal_basis": "履职事项：街道基层治理",
            },
        )
        assert asked.status_code == 201, asked.text
        req = asked.json()
        assert req["status"] == "pending" and len(req["needs"]) == 2, req

        # the owner department's reviewer approves: not enough for an L3 field
        with server.client(reviewer) as rv:
            first = rv.post(f"/requests/{req['id']}/reviews", json={"decision": "approve"})
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "pending" and first.json()["grant_id"] is None
        assert len(first.json()["awaiting"]) == 1
        # nor may the same person approve twice in another capacity
        with server.client(reviewer) as rv:
            again = rv.post(f"/requests/{req['id']}/reviews", json={"decision": "approve"})
        assert again.status_code == 409, again.text  # already reviewed by this person
        assert me.get(f"/requests/{req['id']}").json()["grant_id"] is None

        # a data officer, another person, approves: the grant is made
        with server.client(officer) as of:
            started = time.perf_counter()
            second = of.post(f"/requests/{req['id']}/reviews", json={"decision": "approve"})
            assert second.status_code == 200, second.text
            approved_s = time.perf_counter() - started
            grant_id = second.json()["grant_id"]
            assert second.json()["status"] == "granted" and grant_id
            with me.stream("GET", f"/grants/{grant_id}/data", params={"format": "json"}) as r:
                assert r.status_code == 200
                next(r.iter_raw())
                first_byte_s = time.perf_counter() - started
        print(
            f"\n{resource}: from the second approval to the first byte {first_byte_s:.3f} s "
            f"(the approval answered, grant made, after {approved_s:.3f} s)"
        )
        assert first_byte_s < 60  # seconds, not hours

        # masked by the grant: the profile the catalogue sets, no clear value of a hidden field
        shown = me.get(f"/grants/{grant_id}").json()
        profile = {c: MaskingRule(r) for c, r in shown["masking"].items()}
        assert all(profile[f.name] is not MaskingRule.none for f in l3)
        before = read(me, grant_id, "arrow")
        truth = mart_street.truth(*resource.split("."))
        hidden = [f for f in ds.fields if f.level.sensitive and profile.get(f.name) in HIDING]
        assert hidden
        for f in hidden:
            clear = {str(v) for v in truth[f.source_name].drop_nulls().to_list()}
            served = {str(v) for v in before[f.name].to_pylist() if v is not None}
            assert not clear & served, f"{f.name} carries clear values"

        # a resident opts out of this category: the next reads lack them, and only them
        who = most_mentioned(service, resource, resident_col)
        with server.client(officer) as of:
            opted = of.post(
                "/consent",
                json={
                    "pseudonym": who,
                    "category": str(ds.consent_category),
                    "recipient_kinds": ["department"],
                    "choice": "declined",
                    "channel": "counter",
                },
            )
        assert opted.status_code == 201, opted.text
        person = resident_col.removeprefix("_pid_")  # the field its pseudonym is of
        tables = {fmt: read(me, grant_id, fmt) for fmt in ("json", "arrow", "parquet")}
        assert rows_of(tables["arrow"]) == rows_of(tables["parquet"])
        assert tables["json"].num_rows == tables["arrow"].num_rows
        assert sorted(map(str, tables["json"][person].to_pylist())) == sorted(
            map(str, tables["arrow"][person].to_pylist())
        )
        after, earlier = rows_of(tables["arrow"]), rows_of(before)
        gone = earlier - after
        assert gone and not after - earlier  # rows left out, none added
        assert after.total() + gone.total() == before.num_rows
        index = before.column_names.index(person)
        theirs = {row[index] for row in gone} - {"None"}  # rows linked without an ID: no key
        assert len(theirs) == 1  # one resident's rows …
        assert not theirs & {row[index] for row in after}  # … all of them

        # revoked: the next read is refused
        with server.client(reviewer) as rv:
            revoked = rv.post(f"/grants/{grant_id}/revoke", json={"reason": "项目结束"})
        assert revoked.status_code == 200, revoked.text
        refused = me.get(f"/grants/{grant_id}/data", params={"format": "json"})
        assert refused.status_code == 403
