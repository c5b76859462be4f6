"""The police registry that 残联's holders are scored against: 公安's own system.

Public security (``gaj``) is the catalogue's authority for ``person.*`` (its household
registry is keyed by ``person.citizen_id``). Here its database is a SQLite file with the
catalogue's source columns, holding the 残联 holders as they really are — except one who is
not registered in this district, and one whose registered name differs from the name 残联
delivered. The hub reaches it as it reaches any department database: ``STREETHUB_GAJ_DB_URL``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from catalog.authority import authority, person_key
from catalog.model import Catalogue, ConnectorKind
from catalog.street import Street
from tests.onboarding.delivery import Delivery


def registry_dept(cat: Catalogue) -> str:
    """The department the catalogue makes the authority for the person key (公安, gaj)."""
    key = person_key(cat)
    assert key is not None, "the shipped catalogue declares the person key's authority"
    return authority(cat, key).dept


def write_registry(
    path: Path,
    cat: Catalogue,
    street: Street,
    delivery: Delivery,
    *,
    unregistered: int,
    renamed: int,
) -> str:
    """Write the registry database; ``unregistered``/``renamed`` are source rows of the
    delivery. Returns the database URL."""
    registry = authority(cat, person_key(cat)).dataset  # keyed by the person key
    tables = [
        ds
        for ds in cat.departments[registry_dept(cat)].datasets
        if ds.delivery.kind is ConnectorKind.sql_db
    ]
    assert registry in tables
    gone = delivery.truth[unregistered]["身份证号"]
    renamed_id = delivery.truth[renamed]["身份证号"]
    people: dict[str, dict[str, str]] = {}
    for row, holder in sorted(delivery.truth.items()):
        cid = holder["身份证号"]
        if cid == gone or cid in people:
            continue
        community = street.communities[row % len(street.communities)]
        name = holder["姓名"]
        people[cid] = {
            "citizen_id": cid,
            "name": name[0] + "某某" if cid == renamed_id else name,
            "gender": holder["性别"],
            "birth_date": holder["出生日期"],
            "address": f"{street.district}{street.name}{community.name}社区{row}号楼",
            "community_code": community.code,
            "mobile": holder["联系电话"],
            "household_id": f"H{row:06d}",
            "relation_to_head": "户主",
            "updated_at": "2026-11-01 08:00:00",
        }
    con = sqlite3.connect(path)
    try:
        for ds in tables:  # the registry filled, the department's other tables empty
            rows = list(people.values()) if ds is registry else []
            columns = [f.source_name for f in ds.fields]
            typed = ", ".join(f'"{c}" TEXT' for c in columns)
            con.execute(f'CREATE TABLE "{ds.delivery.table}" ({typed})')
            values = [[r.get(f.name) for f in ds.fields] for r in rows]
            marks = ", ".join("?" * len(columns))
            con.executemany(f'INSERT INTO "{ds.delivery.table}" VALUES ({marks})', values)
        con.commit()
    finally:
        con.close()
    return f"sqlite:{path}"
