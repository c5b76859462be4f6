"""A department API that pages otherwise than the hub's reference protocol, onboarded by its
catalogue entry alone: its parameters' names, its first page 0, its records and total inside
an envelope with a status code, its own base URL and token. A real HTTP server serves it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog.errors import DeliveryError
from catalog.loader import get_catalogue
from catalog.model import Dataset, Delivery
from catalog.settings import Settings, api_tokens_in, api_urls_in
from pipelines.connectors.http_api import RetryPolicy, pull_http
from tests.page_helper_api import PageHelperApi, served

RECORDS = [{"id": i, "update_time": f"2026-11-{i + 1:02d} 08:00:00"} for i in range(8)]
TOKEN = "cl-token"
FAST = RetryPolicy(attempts=1)


@pytest.fixture
def server() -> Iterator[PageHelperApi]:
    with served(PageHelperApi(RECORDS, TOKEN, cap=3)) as api:
        yield api


def dataset(**paging) -> Dataset:
    _, ds = get_catalogue().dataset("rx.appeals")
    delivery = Delivery.model_validate(
        {"kind": "http_api", "endpoint": "/api/v1/cases", "page_size": 5,
         "cursor_param": "gxsj", "cursor_field": "update_time", **paging}
    )  # fmt: skip
    return ds.model_copy(update={"delivery": delivery})


PAGE_HELPER = {
    "page_param": "pageNum",
    "page_size_param": "pageSize",
    "first_page": 0,
    "records_path": "data.list",
    "total_path": "data.total",
    "status_path": "code",
    "status_ok": [200],
}


def settings_for(tmp_path: Path, url: str, token: str = TOKEN) -> Settings:
    env = {"STREETHUB_RX_API_URL": url, "STREETHUB_RX_API_TOKEN": token}
    return Settings(
        home=tmp_path, dept_api_url="http://127.0.0.1:9", dept_api_token="shared",
        api_urls=api_urls_in(env), api_tokens=api_tokens_in(env),
    ).ensure_dirs()  # fmt: skip


def records(data: bytes) -> list[int]:
    return [json.loads(line)["id"] for line in data.splitlines()]


def test_a_page_helper_api_is_pulled_whole_by_its_catalogue_entry(
    tmp_path: Path, server: PageHelperApi
):
    pulled = pull_http(settings_for(tmp_path, server.url), "rx", dataset(**PAGE_HELPER), None,
                       policy=FAST)  # fmt: skip
    assert records(pulled.data) == list(range(8)) and pulled.rows == 8
    # pages 0, 1, 2 of the server's 3 (it caps the 5 asked for): the total ends the pull
    asked = [(q["pageNum"], q["pageSize"]) for q in server.asked]
    assert asked == [("0", "5"), ("1", "5"), ("2", "5")]
    assert pulled.cursor_end == RECORDS[-1]["update_time"]
    again = pull_http(settings_for(tmp_path, server.url), "rx", dataset(**PAGE_HELPER),
                      RECORDS[5]["update_time"], policy=FAST)  # fmt: skip
    assert records(again.data) == [6, 7] and server.asked[-1]["gxsj"] == RECORDS[5]["update_time"]


def test_an_interrupted_pull_resumes_and_ends_at_the_total(tmp_path: Path, server: PageHelperApi):
    settings, ds = settings_for(tmp_path, server.url), dataset(**PAGE_HELPER)
    with pytest.raises(DeliveryError, match="resumes there"):
        pull_http(settings, "rx", ds, None, policy=FAST, max_pages=2)
    pulled = pull_http(settings, "rx", ds, None, policy=FAST)
    assert records(pulled.data) == list(range(8))
    assert [q["pageNum"] for q in server.asked] == ["0", "1", "2"]  # none asked twice


def test_an_error_inside_a_200_answer_fails_the_pull(tmp_path: Path, server: PageHelperApi):
    with pytest.raises(DeliveryError) as err:
        pull_http(settings_for(tmp_path, server.url, token="expired"), "rx", dataset(**PAGE_HELPER),
                  None, policy=FAST)  # fmt: skip
    assert "the source answered status 401 at code on page 0 (success is 200)" in str(err.value)
    assert not list(tmp_path.glob("**/rx__appeals.pull.*.enc"))  # nothing of it kept


def test_a_query_interface_taking_a_json_body_and_its_own_token_header(tmp_path: Path):
    # data-sharing platforms' query interfaces: POST {"pageNum": 0, "pageSize": 5, …} with
    # the token in a header of their own
    paging = {**PAGE_HELPER, "method": "post", "token_header": "X-Access-Token"}
    with served(PageHelperApi(RECORDS, TOKEN, cap=3, token_header="X-Access-Token")) as api:
        pulled = pull_http(settings_for(tmp_path, api.url), "rx", dataset(**paging),
                           RECORDS[1]["update_time"], policy=FAST)  # fmt: skip
    assert records(pulled.data) == list(range(2, 8))
    assert set(api.methods) == {"POST"} and api.asked[0] == {
        "pageNum": "0", "pageSize": "5", "gxsj": RECORDS[1]["update_time"]
    }  # fmt: skip


def test_without_total_or_flag_a_short_page_is_the_last(tmp_path: Path, server: PageHelperApi):
    paging = {**PAGE_HELPER, "total_path": None, "more_path": "data.has_next"}  # absent
    pulled = pull_http(
        settings_for(tmp_path, server.url), "rx", dataset(**paging), None, policy=FAST
    )
    # every page is short of the 5 asked for (the server gives 3): the first ends the pull
    assert records(pulled.data) == [0, 1, 2]
    paging["page_size"] = 3
    server.asked.clear()
    pulled = pull_http(settings_for(tmp_path / "b", server.url), "rx", dataset(**paging), None,
                       policy=FAST)  # fmt: skip
    assert records(pulled.data) == list(range(8)) and len(server.asked) == 3


def test_a_departments_own_url_and_token_come_before_the_shared_ones():
    # tokens no path in the settings' repr can hold by chance (a temporary folder's random
    # name once held "t1"); neither token is in it (the shared one was, until 2026-12-05)
    own, shared = "cl-own-token-Q7", "shared-token-Q7"
    env = {
        "STREETHUB_DEPT_API_URL": "http://shared",
        "STREETHUB_CL_API_URL": "http://cl",
        "STREETHUB_CL_API_TOKEN": own,
        "STREETHUB_RX_DB_URL": "sqlite:///x",
    }
    settings = Settings(dept_api_url="http://shared", dept_api_token=shared,
                        api_urls=api_urls_in(env), api_tokens=api_tokens_in(env))  # fmt: skip
    assert settings.api_url("cl") == "http://cl" and settings.api_token("cl") == own
    assert settings.api_url("rx") == "http://shared" and settings.api_token("rx") == shared
    assert own not in repr(settings) and shared not in repr(settings)


@pytest.mark.parametrize(
    ("delivery", "message"),
    [
        ({"kind": "csv", "pattern": "*.csv", "encoding": "gbk", "page_param": "p"},
         "page_param: for an http_api delivery only"),
        ({"kind": "http_api", "endpoint": "/x", "page_size": 5, "status_ok": [0]},
         "status_ok needs status_path"),
        ({"kind": "http_api", "endpoint": "/x", "page_size": 5, "first_page": 2},
         "first_page"),
        ({"kind": "json", "pattern": "*.json", "method": "post"},
         "method: for an http_api delivery only"),
        ({"kind": "http_api", "endpoint": "/x", "page_size": 5, "token_header": "X Token"},
         "token_header"),
    ],
)  # fmt: skip
def test_the_catalogue_refuses_paging_where_it_cannot_apply(delivery: dict, message: str):
    with pytest.raises(ValueError, match=message):
        Delivery.model_validate(delivery)
