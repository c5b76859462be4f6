"""The share service's fixtures (``tests/share_api/conftest.py``) re-exposed for the
notebooks' test: a copy of the mart street, the service on it, people, a real uvicorn
server, and the analysts' organisation with its grants and its built database."""

from tests.share_api.conftest import (  # noqa: F401 — fixtures, found by name
    analyst_street,
    app,
    people,
    server,
    service,
    share_db_url,
    share_settings,
)
