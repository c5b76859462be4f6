"""The dialects the simulated departments' HTTP APIs speak (``departments.server``): each
API dataset's path in each, and the catalogue's delivery options that pull it in each. Data
only, so that the simulator's manifest can name every path its systems serve a dataset at
without importing the web server."""

from __future__ import annotations

# the catalogue's delivery options for a dataset pulled in each dialect (its endpoint apart)
REFERENCE = {"cursor_param": "updated_since"}
PLATFORM = {
    "method": "post",
    "token_header": "X-Access-Token",
    "page_param": "pageNum",
    "page_size_param": "pageSize",
    "records_path": "data.list",
    "total_path": "data.total",
    "status_path": "code",
    "status_ok": [200],
    "cursor_param": "updatedSince",
}


def endpoints(dept: str, dataset: str) -> dict[str, str]:
    """A dataset's path in each dialect: ``reference``, ``platform``."""
    return {"reference": f"/api/{dept}/{dataset}", "platform": f"/open/{dept}/{dataset}/query"}
