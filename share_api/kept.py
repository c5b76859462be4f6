"""What the service's hot paths (every sign-in, the Delta Sharing protocol's reads) keep
per process under the revision counters of ``share_api.db``: a row read once is answered from memory while the counter it was read
under stands (one query of the counters a request), and read again once any process moved
it — so a revocation refuses the very next request."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, TypeVar

from share_api.db import current_revisions

if TYPE_CHECKING:
    from share_api.service import Service

T = TypeVar("T")


class NotKept(LookupError):
    """A memory-only lookup (the file route's fast path on the event loop) found nothing
    current in memory: the caller leaves the request to the route, which asks the
    database."""


def kept_under(
    service: Service,
    store: str,
    key: str,
    revision: Hashable,
    read: Callable[[], T | None],
    *,
    kept_only: bool = False,
    most: int = 4_096,
) -> T | None:
    """``key``'s value in the per-process ``store`` when it was kept under ``revision``;
    else ``read()`` now and kept (None, "there is none", is never kept: it is asked again);
    ``kept_only``: :class:`NotKept` instead of reading. A store past ``most`` entries is
    emptied."""
    kept = service.kept(store, dict)
    held = kept.get(key)
    if held is not None and held[0] == revision:
        return held[1]
    if kept_only:
        raise NotKept(key)
    found = read()
    if found is not None:
        if len(kept) >= most:
            kept.clear()
        kept[key] = (revision, found)
    return found


def content_revision(service: Service) -> tuple[int, int]:
    """What a grant's versions, files and their bytes are kept under: the ``grants`` and
    ``consent`` revision counters as the request under way reads them (a grant made,
    changed or revoked, an opt-out: what a grant shows may have changed)."""
    revs = current_revisions(service)
    return revs.grants, revs.consent


def forget(service: Service, store: str, keys: list[str]) -> None:
    """Drop ``keys`` from the per-process ``store``."""
    kept = service.kept(store, dict)
    for key in keys:
        kept.pop(key, None)
