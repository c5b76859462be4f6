"""The automation sensors of the curated, quality and marts assets: one policy for all.

Each zone's declarative automation is evaluated by a sensor of its own, running from the
start (a hub's assets refresh without an officer switching anything on) and every minute.
"""

import dagster as dg


def automation_sensor(
    name: str, target: dg.AssetSelection, description: str
) -> dg.AutomationConditionSensorDefinition:
    """A sensor evaluating ``target``'s automation conditions, running, every 60 s."""
    return dg.AutomationConditionSensorDefinition(
        name,
        target=target,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        description=description,
    )
