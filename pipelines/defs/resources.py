"""The resources every asset uses, and the executor of every run, declared in one place.

Runs execute in one process (``in_process_executor``): lake writes are serialised in
the ``lake`` pool anyway, so a process per step would only pay for opening the lake
(loading its extensions, ~0.25 s) again in every step; in one process the lake's
DuckDB is loaded once per run (``lakehouse.lake``).
"""

import dagster as dg

from pipelines.resources import LakeResource


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"lake": LakeResource()}, executor=dg.in_process_executor)
