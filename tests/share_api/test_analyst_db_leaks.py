"""``streethub leaks scan`` over the analyst databases (issue 17, must-show): every table of
a built analyst database and of its notebook workspace's copy holds 0 unmasked values; a
value planted in the clear in such a file is found."""

from __future__ import annotations

import duckdb

from catalog.loader import load_catalogue
from lakehouse.lake import open_lake
from masking.names import KnownNames
from pipelines.leak_analysts import AREA, scan_analyst_dbs
from pipelines.leaks import registry_names
from pipelines.protection import Protection
from share_api.analysts.notebook import prepare_workspace
from tests.share_api.conftest import ANALYST_MARTS

CITIZEN_ID, MOBILE = "11010519491231002X", "13812345678"  # GB 11643's example; a mobile


def test_the_analyst_databases_hold_no_unmasked_value(analyst_street) -> None:
    settings, cat = analyst_street.service.settings, load_catalogue()
    with open_lake(settings, read_only=True) as con:
        names = KnownNames(registry_names(con, cat, Protection.from_settings(settings)))
    assert names  # the registers' names are looked for
    prepare_workspace(settings.notebook_dir_abs, analyst_street.org, analyst_street.path)
    found = scan_analyst_dbs(settings, cat, names)
    places = {f.place for f in found}
    for mart in ANALYST_MARTS:
        assert f"analysts/{analyst_street.path.name}:{mart}" in places
        assert f"notebooks/{analyst_street.org}/{analyst_street.path.name}:{mart}" in places
    assert all(f.area == AREA and f.problem is None for f in found)
    assert sum(f.cells for f in found) > 1_000
    assert sum(f.leaks for f in found) == 0

    # the same scan finds a value in the clear in a file there
    planted = settings.analyst_dir_abs / "planted.duckdb"
    con = duckdb.connect(str(planted))
    con.execute("CREATE TABLE t (note VARCHAR)")
    con.execute("INSERT INTO t VALUES (?), (?)", [f"身份证号{CITIZEN_ID}", f"电话{MOBILE}"])
    con.close()
    (broken := settings.analyst_dir_abs / "broken.duckdb").write_bytes(b"not a database")
    again = {f.place: f for f in scan_analyst_dbs(settings, cat, names)}
    assert again["analysts/planted.duckdb:t"].leaks == 2
    assert again[f"analysts/{broken.name}"].problem
