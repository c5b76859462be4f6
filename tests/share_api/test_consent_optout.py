"""Must show: a resident opts out of health-data sharing; the next read of a health grant
lacks that resident; other grants still have them.

Over HTTP on a copy of the mart street: a data officer records the resident's refusal at
the counter (by citizen pseudonym), the department's requester reads its two grants — chronic
disease follow-ups (health) and social insurance (social security) — before and after.
Rows are told apart by their plain record numbers (L2), never by a sensitive value.
"""

from __future__ import annotations

import datetime as dt

from lakehouse.lake import open_lake
from share_api import grants

HEALTH = ("wjw.chronic_followups", "followup_id")
OTHER = ("rsj.social_insurance", "record_id")


def staged_ids(service, resource: str, id_column: str, who: str | None = None) -> set[str]:
    dept, _, dataset = resource.partition(".")
    sql = f'SELECT "{id_column}" FROM staged."{dept}__{dataset}"'
    with open_lake(service.settings, read_only=True) as con:
        if who is None:
            return {r[0] for r in con.execute(sql).fetchall()}
        rows = con.execute(sql + ' WHERE "_pid_citizen_id" = ?', [who]).fetchall()
    return {r[0] for r in rows}


def resident_in_both(service) -> str:
    """A resident with health follow-ups and social insurance records."""
    with open_lake(service.settings, read_only=True) as con:
        (who,) = con.execute(
            'SELECT f."_pid_citizen_id" FROM staged."wjw__chronic_followups" f '
            'JOIN staged."rsj__social_insurance" s USING ("_pid_citizen_id") '
            "ORDER BY 1 LIMIT 1"
        ).fetchone()
    return who


def grant(service, org: str, resource: str, id_column: str) -> str:
    return grants.create_grant(
        service,
        grantee_org=org,
        resource=resource,
        columns=[id_column, "citizen_id"],
        row_filter=None,
        masking={"citizen_id": "pseudonymise"},
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
        request_id=None,
    )


def read_ids(api, reader, gid: str, id_column: str) -> set[str]:
    seen: set[str] = set()
    offset = 0
    while True:
        r = api.get(
            f"/grants/{gid}/data",
            params={"format": "json", "offset": offset, "limit": 1000},
            headers=reader.headers,
        )
        assert r.status_code == 200, r.text
        rows = r.json()["rows"]
        seen |= {row[id_column] for row in rows}
        offset += len(rows)
        if not rows or offset >= r.json()["total"]:
            return seen


def test_an_opt_out_of_health_takes_effect_on_the_next_read_of_a_health_grant(service, people, api):
    who = resident_in_both(service)
    theirs = {res: staged_ids(service, res, col, who) for res, col in (HEALTH, OTHER)}
    assert all(theirs.values())
    reader = people.make("mzj", "requester")
    officer = people.make("mzj", "data_officer")
    gids = {res: grant(service, "mzj", res, col) for res, col in (HEALTH, OTHER)}

    before = {res: read_ids(api, reader, gids[res], col) for res, col in (HEALTH, OTHER)}
    for res, col in (HEALTH, OTHER):
        assert before[res] == staged_ids(service, res, col)  # everyone, the resident too

    r = api.post(
        "/consent",
        json={"pseudonym": who, "category": "health", "choice": "declined", "channel": "counter"},
        headers=officer.headers,
    )
    assert r.status_code == 201, r.text

    after = {res: read_ids(api, reader, gids[res], col) for res, col in (HEALTH, OTHER)}
    assert after[HEALTH[0]] == before[HEALTH[0]] - theirs[HEALTH[0]]  # the resident is gone
    assert not after[HEALTH[0]] & theirs[HEALTH[0]]
    assert after[OTHER[0]] == before[OTHER[0]]  # social insurance still has them
    assert theirs[OTHER[0]] <= after[OTHER[0]]

    # withdrawing the refusal brings them back on the next read
    r = api.post(
        "/consent",
        json={"pseudonym": who, "category": "health", "choice": "allowed", "channel": "app"},
        headers=officer.headers,
    )
    assert r.status_code == 201
    assert read_ids(api, reader, gids[HEALTH[0]], HEALTH[1]) == before[HEALTH[0]]
