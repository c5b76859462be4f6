"""Catalogue browsing and Chinese full-text search (jieba) over names, summaries and field
labels: share type, fields, levels, update cycle, quality score — never the data."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from catalog.consent import ConsentCategory
from catalog.model import ShareType
from catalog.settings import Settings
from share_api import catalogue as cat
from share_api.app import create_app
from share_api.db import create_schema, engine_for
from share_api.deps import Principal, current_principal
from share_api.service import Service


class Recorder:
    """Stands in for the audit log."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict]] = []

    def record(self, action: str, actor: str, **details):
        self.records.append((action, actor, details))
        return {"seq": len(self.records)}

    def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Service:
    settings = Settings(home=tmp_path_factory.mktemp("cat") / "home").ensure_dirs()
    engine = engine_for(settings)
    create_schema(engine)
    svc = Service(settings=settings, engine=engine)
    svc.__dict__["audit"] = Recorder()
    yield svc
    engine.dispose()


def refs(hits: list[cat.Hit]) -> list[str]:
    return [h.entry.resource for h in hits]


def test_every_dataset_and_mart_is_an_entry(service):
    entries = cat.entries(service)
    datasets = [f"{d.code}.{ds.code}" for d, ds in service.catalogue.datasets()]
    marts = [f"marts.{m}" for m in cat.marts_of(service)]
    assert [e.resource for e in entries] == datasets + marts
    e = cat.lookup(service, "wjw.elderly_health_checks")
    assert (e.kind, e.owner_org, e.share_type, e.consent_category, e.level.value) == (
        "dataset", "wjw", ShareType.conditional, ConsentCategory.health, "L4",
    )  # fmt: skip
    assert (
        cat.lookup(service, "JD-WJW-001") is e
        and cat.lookup(service, "wjw/elderly_health_checks") is e
    )
    with pytest.raises(KeyError):
        cat.lookup(service, "marts.nothing")


def test_an_entry_describes_and_never_holds_data(service):
    """Only catalogue attributes: each field's name, label, type, level and masking rule."""
    for e in cat.entries(service):
        for f in e.fields:
            assert set(dataclasses.asdict(f)) == {"name", "label_zh", "type", "level", "masking"}


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("老年人体检", "wjw.elderly_health_checks"),  # name words
        ("高龄津贴", "mzj.old_age_allowance"),  # a catalogue word kept whole
        ("收养", "mzj.adoption_registrations"),
        ("独居老人 体检", "marts.elderly_care"),  # two words, both must match
        ("12345 诉求", "rx.appeals"),
    ],
)
def test_search_finds_by_name(service, query, first):
    assert refs(cat.search(service, query))[0] == first


def test_search_finds_by_field_label_and_says_which(service):
    hits = cat.search(service, "空腹血糖")
    labelled = {  # the entries a field of which is labelled so, counted from the catalogue
        e.resource for e in cat.entries(service) if any("空腹血糖" in f.label_zh for f in e.fields)
    }
    assert {"wjw.elderly_health_checks", "wjw.chronic_followups"} <= labelled
    assert {h.entry.resource for h in hits if h.matched_fields} == labelled
    assert all(
        h.matched_fields == ("fasting_glucose_mmol",) for h in hits if h.entry.resource in labelled
    )


def test_search_finds_by_summary(service):
    hits = cat.search(service, "国家基本公共卫生服务")  # only in the health checks' summary
    assert refs(hits) == ["wjw.elderly_health_checks"]


def test_every_word_must_match(service):
    assert cat.search(service, "收养 门禁") == []
    assert cat.search(service, "量子计算") == []
    assert cat.search(service, "  的 ， ") == []


def test_names_weigh_more_than_field_labels(service):
    hits = cat.search(service, "低保")
    assert refs(hits)[0] == "mzj.minimum_living"
    assert {"marts.elderly_care", "marts.resident_profile"} <= set(
        refs(hits)
    )  # low_income 低保家庭


def test_jieba_keeps_the_catalogue_words_whole(service):
    index = cat.search_index(service)
    assert index.words("高龄津贴发放花名册", search_mode=False) == ["高龄津贴发放花名册"]
    assert {"高龄", "津贴", "高龄津贴发放花名册"} <= set(index.words("高龄津贴发放花名册"))
    assert index.words("收缩压（mmHg）", search_mode=False) == ["收缩压", "mmhg"]


# --- over HTTP ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(service) -> TestClient:
    app = create_app(service=service)
    app.dependency_overrides[current_principal] = lambda: Principal(
        "alice", "mzj", "department", frozenset({"requester"}), "tok-alice"
    )
    return TestClient(app)


def test_the_list_filters_and_pages(client, service):
    page = client.get("/catalogue", params={"share_type": "not_shareable"}).json()
    assert [i["resource"] for i in page["items"]] == ["mzj.adoption_registrations"]
    item = page["items"][0]
    assert item["share_type_zh"] == "不予共享" and "民法典" in item["legal_basis"]
    assert (item["consent_category"], item["consent_category_zh"]) == (
        "family",
        "婚姻家庭与收养信息",
    )
    health = client.get("/catalogue", params={"consent_category": "health", "limit": 2}).json()
    in_health = [e for e in cat.entries(service) if e.consent_category == "health"]
    assert health["total"] == len(in_health) > 2 and len(health["items"]) == 2
    marts = client.get("/catalogue", params={"kind": "mart", "max_level": "L2"}).json()
    assert marts["total"] > 0 and all(i["level"] in ("L1", "L2") for i in marts["items"])


def test_search_over_http_is_audited_without_the_query(client, service):
    before = len(service.audit.records)
    hits = client.get("/catalogue", params={"q": "空腹血糖"}).json()
    assert hits["items"][0]["matched_fields"] == ["fasting_glucose_mmol"]
    action, actor, details = service.audit.records[before]
    assert (action, actor, details["view"], details["results"]) == (
        "catalogue.read",
        "mzj/alice",
        "search",
        hits["total"],
    )
    assert hits["total"] == len(cat.search(service, "空腹血糖")) >= 2
    assert "空腹血糖" not in str(details)


def test_one_entry_with_its_fields(client):
    e = client.get("/catalogue/wjw.elderly_health_checks").json()
    assert e["update_cycle"] == "monthly" and e["level"] == "L4"
    f = {x["name"]: x for x in e["fields"]}
    assert f["citizen_id"] == {"name": "citizen_id", "label_zh": "身份证号", "type": "string",
                               "level": "L4", "masking": "pseudonymise"}  # fmt: skip
    assert (
        client.get("/catalogue/marts.elderly_care").json()["consent_category"]
        == "social_assistance"
    )
    assert client.get("/catalogue/nothing.here").status_code == 404


def test_the_consent_categories_are_listed(client):
    cats = client.get("/catalogue/consent-categories").json()
    assert [c["code"] for c in cats] == [c.value for c in ConsentCategory]
    assert {c["code"]: c["personal"] for c in cats}["none"] is False


def test_quality_scores_come_from_the_scorecard_mart(mart_street, tmp_path):
    """On the mart street: each dataset's score is the mean of its dimension scores in
    marts.quality_scorecard (read only; the service's own state goes elsewhere)."""
    settings = mart_street.settings
    svc = Service(settings=settings, engine=engine_for(settings, f"sqlite:///{tmp_path}/s.db"))
    scores = cat.quality_scores(svc)
    card = mart_street.query(
        "SELECT dept || '.' || dataset AS ref, avg(score) AS mean, count(*) AS n "
        "FROM marts.quality_scorecard WHERE dataset <> '*' AND score IS NOT NULL GROUP BY 1"
    )
    assert card.height > 0 and set(scores) == set(card["ref"])
    for ref, mean, n in card.iter_rows():
        assert (
            scores[ref].score == pytest.approx(mean, abs=1e-3) and len(scores[ref].dimensions) == n
        )
    svc.engine.dispose()
