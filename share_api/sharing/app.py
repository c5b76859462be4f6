"""The Delta Sharing REST surface, mounted at ``/delta-sharing`` (PROTOCOL fills this in)."""

from __future__ import annotations

from fastapi import FastAPI

PREFIX = "/delta-sharing"


def mount(app: FastAPI) -> None:
    """Mount the protocol's routes on the share service's app (not yet)."""
