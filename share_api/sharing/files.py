"""Grant versions materialised as Parquet files (FILES fills this in)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from share_api.service import Service


def start_preparer(service: Service) -> Callable[[], None]:
    """Start materialising live grants' files in the background; returns ``stop`` (not yet:
    nothing is started)."""
    return lambda: None
