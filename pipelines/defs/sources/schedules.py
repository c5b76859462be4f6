"""Schedules for the pulled sources (databases, HTTP APIs), from each update cycle."""

import dagster as dg

from catalog.loader import get_catalogue
from catalog.settings import get_settings
from pipelines.defs.sources.jobs import pull_job, pulled_datasets

PULL_TIMEZONE = "Asia/Shanghai"  # the street's clock: a daily pull runs at 01:30 there


@dg.definitions
def pull_schedules() -> dg.Definitions:
    cat = get_catalogue(get_settings().catalog_dir)
    schedules = [
        dg.ScheduleDefinition(
            name=f"pull_{dept.code}__{ds.code}_{ds.update_cycle.value}",
            job=pull_job(dept, ds),
            cron_schedule=ds.update_cycle.cron,
            execution_timezone=PULL_TIMEZONE,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"Pull {ds.name_zh} ({ds.update_cycle.value}).",
        )
        for dept in cat.departments.values()
        for ds in pulled_datasets(dept)
    ]
    return dg.Definitions(schedules=schedules)
