"""The street file: the shipped one is valid and matches the simulated street; broken
ones are refused with the file and the field named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from catalog.errors import CatalogError
from catalog.settings import STREET_FILE
from catalog.street import get_street, load_street

SHIPPED = yaml.safe_load(STREET_FILE.read_text(encoding="utf-8"))


def test_shipped_street() -> None:
    street = get_street()
    assert street.code == "110105001" and len(street.communities) == 8
    assert "光华里社区" in street.community_names and "光华里" in street.community_names
    assert all(c.startswith(street.code) for c in street.community_codes)


def test_the_simulated_street_is_the_catalogued_one() -> None:
    """departments/ imports nothing of ours, so its world must agree with street.yaml."""
    from departments import world

    street = get_street()
    assert street.code == world.STREET_CODE and street.name == world.STREET_NAME
    assert tuple(world.STREET_BBOX) == street.bbox
    assert list(world.COMMUNITY_NAMES) == [c.name for c in street.communities]
    simulated = [c.code for c in world._communities()]
    assert simulated == street.community_codes


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "street.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda d: d.update(code=110105001), None, "code: Input should be a valid string"),
        (lambda d: d.update(code="11010500"), None, "code: String should match pattern"),
        (lambda d: d.update(bbox=[116.47, 39.9, 116.43, 39.925]), None, "lon_min < lon_max"),
        (lambda d: d.update(bbox=[16.43, 39.9, 16.47, 39.925]), None, "within China"),
        (lambda d: d.update(colour="blue"), None, "colour: Extra inputs are not permitted"),
        (lambda d: d["communities"].append({"code": "110105002001", "name": "朝外"}), None,
         "community 110105002001 (朝外) does not start with the street code"),
        (lambda d: d["communities"].append({"code": "110105001009", "name": "建外"}), None,
         "duplicate community name '建外'"),
        (lambda d: d["communities"][1].update(name="光华里社区"), "communities[110105001002]",
         "without the 社区 suffix"),
        (lambda d: d["communities"][2].update(code="11010500100X"), "communities[11010500100X]",
         "code: String should match pattern"),
        (lambda d: d.update(communities=[]), None, "communities: List should have at least 1"),
    ],
)  # fmt: skip
def test_broken_street_names_file_and_field(tmp_path: Path, change, field, words) -> None:
    data = yaml.safe_load(STREET_FILE.read_text(encoding="utf-8"))
    change(data)
    path = _write(tmp_path, data)
    with pytest.raises(CatalogError) as err:
        load_street(path)
    text = str(err.value)
    assert str(path) in text and words in text, text
    if field:
        assert field in text


def test_catalog_check_reports_the_street_and_unknown_checks(tmp_path: Path) -> None:
    from catalog.settings import CATALOG_DIR
    from pipelines.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["catalog", "check"])
    assert ok.exit_code == 0 and "street 建外街道 (110105001" in ok.output

    bad = dict(SHIPPED, communities=[{"code": "110105001001", "name": "建外社区"}])
    out = runner.invoke(app, ["catalog", "check", "--street", str(_write(tmp_path, bad))])
    assert out.exit_code == 1 and "社区 suffix" in out.output

    cat = tmp_path / "cat"
    cat.mkdir()
    for f in CATALOG_DIR.glob("*.yaml"):
        text = f.read_text(encoding="utf-8")
        if f.stem == "wg":
            text = text.replace("checks: [community_code]", "checks: [community_cod]", 1)
        (cat / f.name).write_text(text, encoding="utf-8")
    out = runner.invoke(app, ["catalog", "check", "--dir", str(cat)])
    assert out.exit_code == 1
    assert "wg.grid_cells.community_code: unknown check 'community_cod'" in out.output
