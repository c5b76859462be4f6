"""What the AUDIT role's share tests share: a mart the street built and a standing grant on
it (a live grant with no request behind it, so a test needs no review to read)."""

from __future__ import annotations

from share_api import grants
from share_api.service import Service
from share_api.views import resolve


def built_mart(mart_street) -> str:
    """A mart the session street built (the first by name): ``marts.<name>``."""
    built = sorted(mart_street.builds)
    assert built, mart_street.errors
    return f"marts.{built[0]}"


def standing_grant(service: Service, org: str, mart: str, columns: int = 2) -> str:
    """A live standing grant of ``org`` on ``mart``'s first ``columns`` columns; its id."""
    return grants.create_grant(
        service,
        grantee_org=org,
        resource=mart,
        columns=list(resolve(service.catalogue, mart).columns)[:columns],
        row_filter=None,
        masking={},
        expires_at=None,
        request_id=None,
        standing=True,
    )
