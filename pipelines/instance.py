"""The Dagster instance of the embedded default: DAGSTER_HOME under STREETHUB_HOME."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from catalog.settings import Settings

REPO_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"
FALLBACK = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"


def prepare_dagster_home(settings: Settings) -> Path:
    """Create DAGSTER_HOME with streethub's dagster.yaml, export it, return it."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if REPO_DAGSTER_YAML.exists():
        shutil.copyfile(REPO_DAGSTER_YAML, target)
    elif not target.exists():
        target.write_text(FALLBACK, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home
