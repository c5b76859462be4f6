"""Paginated HTTP JSON APIs (social security, the 12345 hotline).

``GET {base}{endpoint}?updated_since=<cursor>&page=<n>&page_size=<k>`` with a
bearer token; the answer is ``{"items": [...], "has_more": bool, ...}`` — the hub's
reference protocol. A department whose API pages otherwise says how in the catalogue
(:class:`Paging`: the parameters' names, the first page's number, where the answer holds
its records, its "more" flag or its total, and its status code), and its base URL and token
may be its own (``STREETHUB_<DEPT>_API_URL``, ``STREETHUB_<DEPT>_API_TOKEN``).

- 429 / 5xx / refused connections / timeouts are retried with exponential
  backoff (``Retry-After`` honoured, capped); a source that stays down fails
  the delivery with a clear reason and nothing of it is loaded.
- Progress is resumable: every page received is written, encrypted like a landed
  file (:func:`~pipelines.connectors.landed.encryptor`), to a page file of its own
  under the state folder, and the next page number saved, so a pull interrupted by a
  crash or an outage continues where it stopped instead of starting again (a page
  written again replaces itself: none is kept twice). Only a complete pull becomes a
  delivery; its page files are removed then.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from catalog.errors import DeliveryError
from catalog.model import Dataset
from catalog.settings import Settings
from pipelines.connectors.landed import encryptor, open_landed
from pipelines.connectors.sql_db import Pulled

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    base_delay_s: float = 0.1
    max_delay_s: float = 5.0
    timeout_s: float = 15.0


def api_token(settings: Settings, dept: str | None = None) -> str:
    """The bearer token from the settings: the department's own
    (``STREETHUB_<DEPT>_API_TOKEN``), else the shared one (``STREETHUB_DEPT_API_TOKEN``)."""
    token = settings.api_token(dept) if dept else settings.dept_api_token
    if not token:
        own = f"STREETHUB_{dept.upper()}_API_TOKEN or " if dept else ""
        raise DeliveryError(f"no API token: set {own}STREETHUB_DEPT_API_TOKEN")
    return token


@dataclass(frozen=True)
class Paging:
    """How a department's API pages, from its delivery in the catalogue (defaults: the
    reference protocol)."""

    page_param: str = "page"
    size_param: str = "page_size"
    first_page: int = 1
    records: tuple[str, ...] = ("items",)
    more: tuple[str, ...] | None = ("has_more",)
    total: tuple[str, ...] | None = None
    status: tuple[str, ...] | None = None
    status_ok: frozenset[str] = frozenset({"0"})
    post: bool = False  # the parameters in a JSON body, not the query

    @classmethod
    def of(cls, d) -> Paging:
        def path(p: str | None) -> tuple[str, ...] | None:
            return tuple(k for k in p.split(".") if k) if p is not None else None

        total = path(d.total_path)
        more = path(d.more_path) or (None if total else ("has_more",))
        return cls(
            page_param=d.page_param or "page",
            size_param=d.page_size_param or "page_size",
            first_page=1 if d.first_page is None else d.first_page,
            records=path(d.records_path) if d.records_path is not None else ("items",),
            more=more,
            total=total,
            status=path(d.status_path),
            status_ok=frozenset(str(v) for v in (d.status_ok or ["0"])),
            post=d.method == "post",
        )


_ABSENT = object()


def at_path(body: object, keys: tuple[str, ...]) -> object:
    """The value at dotted ``keys`` of a JSON answer (``_ABSENT`` where there is none)."""
    for k in keys:
        if not isinstance(body, dict) or k not in body:
            return _ABSENT
        body = body[k]
    return body


class _Progress:
    """The partial pull of one dataset: pages received so far (one encrypted file each)
    and the next page."""

    def __init__(self, settings: Settings, dept: str, dataset: str) -> None:
        self.settings = settings
        self.folder = settings.state_dir
        self.folder.mkdir(parents=True, exist_ok=True)
        self.stem = f"{dept}__{dataset}.pull"
        self.meta = self.folder / f"{self.stem}.json"

    def page_file(self, page: int) -> Path:
        return self.folder / f"{self.stem}.{page:06d}.enc"

    def page_files(self) -> list[Path]:
        return sorted(self.folder.glob(f"{self.stem}.*.enc"))

    def _clear(self) -> None:
        for p in self.page_files():
            p.unlink(missing_ok=True)
        self.folder.joinpath(f"{self.stem}.jsonl").unlink(missing_ok=True)  # before encryption

    def load(self, cursor: str | None) -> tuple[int, str | None]:
        """(next page, max cursor seen) of an unfinished pull for this cursor, else a fresh start."""
        if self.meta.exists():
            state = json.loads(self.meta.read_text(encoding="utf-8"))
            pages = int(state.get("next_page", 1)) - 1
            have = all(self.page_file(p).exists() for p in range(1, pages + 1))
            if state.get("cursor") == cursor and have and state.get("pages") == "encrypted":
                self._received = int(state.get("received", 0))
                return pages + 1, state.get("max_seen")
        self._clear()
        self.meta.unlink(missing_ok=True)
        self._received = 0
        return 1, None

    def received(self) -> int:
        """The records in the pages kept (after :meth:`load`)."""
        return self._received

    def save_page(
        self,
        lines: bytes,
        cursor: str | None,
        next_page: int,
        max_seen: str | None,
        received: int = 0,
    ) -> None:
        target = self.page_file(next_page - 1)
        part = target.with_suffix(".part")
        enc = encryptor(self.settings)
        with open(part, "wb") as fh:
            fh.write(enc.update(lines))
            fh.write(enc.finalize())
            fh.flush()
            os.fsync(fh.fileno())
        part.replace(target)
        tmp = self.meta.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "cursor": cursor,
                    "next_page": next_page,
                    "max_seen": max_seen,
                    "pages": "encrypted",
                    "received": received,
                }
            ),
            encoding="utf-8",
        )
        tmp.replace(self.meta)

    def finish(self, pages: int) -> bytes:
        parts = []
        for page in range(1, pages + 1):
            with open_landed(self.settings, self.page_file(page)) as fh:
                parts.append(fh.read())
        self.meta.unlink(missing_ok=True)
        self._clear()
        return b"".join(parts)


def _scrubbed(text: str) -> str:
    """A source's error text, its personal information masked (errors end up in logs)."""
    from masking.text import scrub

    return scrub(text)[0] or ""


def _get_page(
    client: httpx.Client,
    url: str,
    params: dict[str, str | int],
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    dataset: str,
    paging: Paging = Paging(),
) -> tuple[dict, list]:
    """The answer for one page and its records (retried as the policy says)."""
    page = params[paging.page_param]
    delay = policy.base_delay_s
    last = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            if paging.post:
                resp = client.post(url, json=params, timeout=policy.timeout_s)
            else:
                resp = client.get(url, params=params, timeout=policy.timeout_s)
        except httpx.TransportError as exc:  # refused, reset, timed out
            last = f"{type(exc).__name__}: {exc}"
        else:
            if resp.status_code == 200:
                try:
                    body = resp.json()
                except ValueError:
                    raise DeliveryError(
                        f"page {page} is not JSON", dataset=dataset, file=url
                    ) from None
                return _checked(body, page, paging, dataset, url)
            if resp.status_code not in RETRY_STATUS:
                raise DeliveryError(
                    f"the source answered HTTP {resp.status_code} on page {page}: "
                    f"{_scrubbed(resp.text[:200])}",
                    dataset=dataset,
                    file=url,
                )
            last = f"HTTP {resp.status_code}"
            retry_after = resp.headers.get("Retry-After", "")
            if retry_after.replace(".", "", 1).isdigit():
                delay = max(delay, min(float(retry_after), policy.max_delay_s))
        if attempt < policy.attempts:
            sleep(delay)
            delay = min(delay * 2, policy.max_delay_s)
    raise DeliveryError(
        f"the source stayed unavailable on page {page} after {policy.attempts} "
        f"attempts (last: {last}); the pull will resume from this page next time",
        dataset=dataset,
        file=url,
    )


def _checked(body: object, page: object, paging: Paging, dataset: str, url: str) -> tuple:
    """A page's answer and its records, or the reason it holds none."""
    if paging.status is not None:
        status = at_path(body, paging.status)
        if status is _ABSENT or str(status) not in paging.status_ok:
            said = "no status" if status is _ABSENT else f"status {str(status)[:20]}"
            raise DeliveryError(
                f"the source answered {said} at {'.'.join(paging.status)} on page {page} "
                f"(success is {', '.join(sorted(paging.status_ok))})",
                dataset=dataset,
                file=url,
            )
    items = at_path(body, paging.records) if paging.records else body
    if not isinstance(body, dict | list) or not isinstance(items, list):
        where = ".".join(paging.records) or "the answer"
        raise DeliveryError(f"page {page} has no '{where}' list", dataset=dataset, file=url)
    return (body if isinstance(body, dict) else {}), items


def _last_page(body: dict, items: list, received: int, size: int, paging: Paging) -> bool:
    """Whether the page just received is the last: none came, the answer's total is
    reached, its "more" flag is false, or (it has neither) the page was short."""
    if not items:
        return True
    if paging.total is not None:
        total = at_path(body, paging.total)
        if isinstance(total, int | str) and str(total).isdigit():
            return received >= int(total)
    if paging.more is not None:
        more = at_path(body, paging.more)
        if more is not _ABSENT:
            return not more
    return len(items) < size


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context of every pull in this process: httpx's default (certifi's
    roots, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` as set when the first pull made it),
    made once. A client made without one makes its own, loading the roots anew: 29-35 ms
    of CPU a pull, under 1 ms with this one (2026-12-07)."""
    return httpx.create_ssl_context()


def pull_http(
    settings: Settings,
    dept: str,
    dataset: Dataset,
    cursor: str | None,
    *,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_pages: int | None = None,
) -> Pulled:
    """Pull every record newer than ``cursor``; resume an interrupted pull.

    ``max_pages`` stops after that many pages in this call (as an interruption
    would), leaving the pull resumable: it raises DeliveryError saying so.
    """
    d = dataset.delivery
    policy = policy or RetryPolicy()
    paging = Paging.of(d)
    url = settings.api_url(dept).rstrip("/") + (d.endpoint or "")
    progress = _Progress(settings, dept, dataset.code)
    page, max_seen = progress.load(cursor)  # pages counted from 1 here, whatever the API's
    token = api_token(settings, dept)
    headers = {"Accept": "application/json"}
    if d.token_header:  # the token as it is, in the department's own header
        headers[d.token_header] = token
    else:
        headers["Authorization"] = f"Bearer {token}"
    size = d.page_size or 500
    received = progress.received()
    pages_this_call = 0
    with httpx.Client(headers=headers, verify=tls_context()) as client:
        while True:
            if max_pages is not None and pages_this_call >= max_pages:
                raise DeliveryError(
                    f"pull interrupted before page {page}; it resumes there next time",
                    dataset=dataset.code,
                    file=url,
                )
            params: dict[str, str | int] = {
                paging.page_param: page - 1 + paging.first_page,
                paging.size_param: size,
            }
            if cursor is not None:
                params[d.cursor_param or "updated_since"] = cursor
            body, items = _get_page(client, url, params, policy, sleep, dataset.code, paging)
            received += len(items)
            if d.cursor_field:
                seen = [str(i[d.cursor_field]) for i in items if i.get(d.cursor_field) is not None]
                if seen:
                    max_seen = max([*seen, max_seen] if max_seen else seen)
            lines = b"".join(json.dumps(i, ensure_ascii=False).encode() + b"\n" for i in items)
            progress.save_page(lines, cursor, page + 1, max_seen, received)
            pages_this_call += 1
            if _last_page(body, items, received, size, paging):
                break
            page += 1
    data = progress.finish(page)
    rows = data.count(b"\n")
    return Pulled(data=data, rows=rows, cursor_end=max_seen or cursor, source=url)
