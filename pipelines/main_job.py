"""The main job on the embedded default: catalogue → lake, with a summary.

Later issues extend it: simulated departments → landing → raw → staged →
marts → model.
"""

from __future__ import annotations

from rich.console import Console

from catalog.loader import load_catalogue
from catalog.settings import Settings
from lakehouse.lake import init_lake
from pipelines.summary import print_lake


def run_main(settings: Settings, console: Console) -> None:
    cat = load_catalogue(settings.catalog_dir)
    console.print(
        f"catalogue OK: {len(cat.departments)} departments, {len(cat.datasets())} datasets"
    )
    init_lake(settings)
    print_lake(console, settings)
