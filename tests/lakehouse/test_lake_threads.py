"""The lake's DuckDB runs the threads the settings name (one by default: a run is thousands
of small statements, and idle workers woken by each spin before they sleep)."""

from __future__ import annotations

from catalog.settings import Settings
from lakehouse.lake import close_idle, open_lake


def _threads(settings: Settings, *, read_only: bool = False) -> int:
    with open_lake(settings, read_only=read_only) as con:
        return int(con.execute("SELECT current_setting('threads')").fetchone()[0])


def test_one_thread_by_default_and_the_setting_is_followed(settings: Settings) -> None:
    close_idle()  # an instance kept from another test was made with its own settings
    assert settings.lake_threads == 1
    assert _threads(settings) == 1
    assert _threads(settings, read_only=True) == 1  # the kept instance, attached again
    close_idle()
    assert _threads(settings.model_copy(update={"lake_threads": 2})) == 2
    close_idle()
