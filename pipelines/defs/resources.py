"""The resources every asset uses, declared in one place."""

import dagster as dg

from pipelines.resources import LakeResource


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"lake": LakeResource()})
