"""Paginated HTTP JSON APIs (social security, the 12345 hotline).

``GET {base}{endpoint}?updated_since=<cursor>&page=<n>&page_size=<k>`` with a
bearer token; the answer is ``{"items": [...], "has_more": bool, ...}``.

- 429 / 5xx / refused connections / timeouts are retried with exponential
  backoff (``Retry-After`` honoured, capped); a source that stays down fails
  the delivery with a clear reason and nothing of it is loaded.
- Progress is resumable: every page received is appended to a partial file
  and the next page number saved, so a pull interrupted by a crash or an
  outage continues where it stopped instead of starting again. Only a
  complete pull becomes a delivery.
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
    """The partial pull of one dataset: pages received so far and the next page."""

    def __init__(self, state_dir: Path, dept: str, dataset: str) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.meta = state_dir / f"{dept}__{dataset}.pull.json"
        self.part = state_dir / f"{dept}__{dataset}.pull.jsonl"

    def load(self, cursor: str | None) -> tuple[int, str | None]:
        """(next page, max cursor seen) of an unfinished pull for this cursor, else a fresh start."""
        if self.meta.exists() and self.part.exists():
            state = json.loads(self.meta.read_text(encoding="utf-8"))
            if state.get("cursor") == cursor:
                return int(state["next_page"]), state.get("max_seen")
        self.part.write_bytes(b"")
        return 1, None

    def save_page(self, lines: bytes, cursor: str | None, next_page: int, max_seen: str | None):
        with open(self.part, "ab") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())
        tmp = self.meta.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"cursor": cursor, "next_page": next_page, "max_seen": max_seen}),
            encoding="utf-8",
        )
        tmp.replace(self.meta)

    def finish(self) -> bytes:
        data = self.part.read_bytes()
        self.meta.unlink(missing_ok=True)
        self.part.unlink(missing_ok=True)
        return data


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
    progress = _Progress(settings.state_dir, dept, dataset.code)
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
    data = progress.finish()
    rows = data.count(b"\n")
    return Pulled(data=data, rows=rows, cursor_end=max_seen or cursor, source=url)
