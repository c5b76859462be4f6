"""Opt-out at read time (must-show): a resident declines health-data sharing with
departments; the next read of a health grant lacks them, a grant of another category and a
front end's read of the same health data still have them."""

from __future__ import annotations

import datetime as dt

import polars as pl

from lakehouse.lake import open_lake
from masking.pseudonym import pseudonym_key
from share_api import grants
from share_api.consent import record_choice

HEALTH, IDENTITY = "wjw.elderly_health_checks", "gaj.registered_residents"


def test_opt_out_applies_to_the_next_read_of_its_category_only(service, people, api) -> None:
    dept = people.make("mzj", "requester")
    with open_lake(service.settings, read_only=True) as con:
        (pid,) = con.execute(
            'SELECT h."_pid_citizen_id" FROM staged."wjw__elderly_health_checks" h '
            'JOIN staged."gaj__registered_residents" r USING ("_pid_citizen_id") LIMIT 1'
        ).fetchone()
    theirs = pseudonym_key(service.keyring, recipient="mzj").hexdigests(pl.Series([pid]))[0]
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    terms = {"columns": ["citizen_id"], "row_filter": None, "masking": {}, "expires_at": until,
             "request_id": None}  # fmt: skip
    health = grants.create_grant(service, grantee_org="mzj", resource=HEALTH, **terms)
    identity = grants.create_grant(service, grantee_org="mzj", resource=IDENTITY, **terms)

    def ids(gid: str) -> list[str]:
        body = api.get(f"/grants/{gid}/data", params={"limit": 10000}, headers=dept.headers)
        assert body.status_code == 200, body.text
        return [r["citizen_id"] for r in body.json()["rows"]]

    before = ids(health)
    assert theirs in before and theirs in ids(identity)
    record_choice(service, pseudonym=pid, category="health", recipient_kind="department",
                  choice="declined", channel="app", actor="rx/clerk")  # fmt: skip
    after = ids(health)
    assert theirs not in after
    assert len(after) == len(before) - before.count(theirs)
    assert theirs in ids(identity)  # another category: still shared
    record_choice(service, pseudonym=pid, category="health", recipient_kind="department",
                  choice="allowed", channel="app", actor="rx/clerk")  # fmt: skip
    assert ids(health) == before  # withdrawn: back on the next read
