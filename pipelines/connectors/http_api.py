"""Paginated HTTP JSON APIs (social security, the 12345 hotline).

``GET {base}{endpoint}?updated_since=<cursor>&page=<n>&page_size=<k>`` with a
bearer token; the answer is ``{"items": [...], "has_more": bool, ...}``.

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

import json
import os
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


def api_token(settings: Settings) -> str:
    """The bearer token from the settings (``STREETHUB_DEPT_API_TOKEN``)."""
    if not settings.dept_api_token:
        raise DeliveryError("no API token: set STREETHUB_DEPT_API_TOKEN")
    return settings.dept_api_token


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
                return pages + 1, state.get("max_seen")
        self._clear()
        self.meta.unlink(missing_ok=True)
        return 1, None

    def save_page(self, lines: bytes, cursor: str | None, next_page: int, max_seen: str | None):
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
) -> dict:
    delay = policy.base_delay_s
    last = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            resp = client.get(url, params=params, timeout=policy.timeout_s)
        except httpx.TransportError as exc:  # refused, reset, timed out
            last = f"{type(exc).__name__}: {exc}"
        else:
            if resp.status_code == 200:
                try:
                    body = resp.json()
                except ValueError:
                    raise DeliveryError(
                        f"page {params['page']} is not JSON", dataset=dataset, file=url
                    ) from None
                if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                    raise DeliveryError(
                        f"page {params['page']} has no 'items' list", dataset=dataset, file=url
                    )
                return body
            if resp.status_code not in RETRY_STATUS:
                raise DeliveryError(
                    f"the source answered HTTP {resp.status_code} on page {params['page']}: "
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
        f"the source stayed unavailable on page {params['page']} after {policy.attempts} "
        f"attempts (last: {last}); the pull will resume from this page next time",
        dataset=dataset,
        file=url,
    )


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
    url = settings.dept_api_url.rstrip("/") + (d.endpoint or "")
    progress = _Progress(settings, dept, dataset.code)
    page, max_seen = progress.load(cursor)
    headers = {"Authorization": f"Bearer {api_token(settings)}", "Accept": "application/json"}
    pages_this_call = 0
    with httpx.Client(headers=headers) as client:
        while True:
            if max_pages is not None and pages_this_call >= max_pages:
                raise DeliveryError(
                    f"pull interrupted before page {page}; it resumes there next time",
                    dataset=dataset.code,
                    file=url,
                )
            params: dict[str, str | int] = {"page": page, "page_size": d.page_size or 500}
            if cursor is not None:
                params[d.cursor_param or "updated_since"] = cursor
            body = _get_page(client, url, params, policy, sleep, dataset.code)
            items = body["items"]
            if d.cursor_field:
                seen = [str(i[d.cursor_field]) for i in items if i.get(d.cursor_field) is not None]
                if seen:
                    max_seen = max([*seen, max_seen] if max_seen else seen)
            lines = b"".join(json.dumps(i, ensure_ascii=False).encode() + b"\n" for i in items)
            progress.save_page(lines, cursor, page + 1, max_seen)
            pages_this_call += 1
            if not body.get("has_more") or not items:
                break
            page += 1
    data = progress.finish(page)
    rows = data.count(b"\n")
    return Pulled(data=data, rows=rows, cursor_end=max_seen or cursor, source=url)
