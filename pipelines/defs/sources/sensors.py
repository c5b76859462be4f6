"""A sensor per file-delivering department, watching ``STREETHUB_HOME/inbox/<dept>/``.

The cursor remembers each file's size and modification time; a new or
changed file starts one run of the department's ingest job. Landing is
idempotent on the file's hash, so a sensor firing twice adds nothing.
"""

import hashlib
import json

import dagster as dg

from catalog.loader import get_catalogue
from catalog.model import Department
from catalog.settings import get_settings
from pipelines.defs.sources.jobs import dept_files_job, file_datasets
from pipelines.ingest.landing import inbox_files


def build_inbox_sensor(dept: Department) -> dg.SensorDefinition:
    job = dept_files_job(dept)

    @dg.sensor(
        name=f"inbox_{dept.code}",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"New files from {dept.name_zh} in inbox/{dept.code}/",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        settings = get_settings()
        seen: dict[str, list[int]] = json.loads(context.cursor) if context.cursor else {}
        now: dict[str, list[int]] = {}
        for ds in file_datasets(dept):
            for path in inbox_files(settings, dept.code, ds):
                st = path.stat()
                now[path.name] = [st.st_size, st.st_mtime_ns]
        new = sorted(name for name, sig in now.items() if seen.get(name) != sig)
        if not new:
            return dg.SkipReason(f"no new files in inbox/{dept.code}/")
        run_key = hashlib.sha256(json.dumps([(n, now[n]) for n in new]).encode()).hexdigest()
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=run_key, tags={"files": str(len(new))})],
            cursor=json.dumps(now),
        )

    return _sensor


@dg.definitions
def inbox_sensors() -> dg.Definitions:
    cat = get_catalogue(get_settings().catalog_dir)
    depts = [d for d in cat.departments.values() if file_datasets(d)]
    return dg.Definitions(sensors=[build_inbox_sensor(d) for d in depts])
