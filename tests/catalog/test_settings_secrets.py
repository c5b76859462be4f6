"""Connection strings' secrets never shown: the settings' repr, the lake's open error and
the run's summary show a database URL with its password as ``***``."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.errors import LakeError
from catalog.settings import Settings, shown_url
from lakehouse.lake import open_lake

SECRET = "Zq7-secret-Wx9"  # no path or name of a test holds it


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://ann:PW@db.example:5432/share", "postgresql+psycopg://ann:***@db.example:5432/share"),
        ("postgresql://ann:p@PW@db/x", "postgresql://ann:***@db/x"),  # an '@' in the password
        ("postgres:dbname=lake host=db user=ann password=PW", "postgres:dbname=lake host=db user=ann password=***"),
        ("postgres:dbname=lake password='PW x' host=db", "postgres:dbname=lake password=*** host=db"),
        ("https://api.example/v1?access_token=PW&page=2", "https://api.example/v1?access_token=***&page=2"),
        ("postgresql://ann@db/x?sslpassword=PW", "postgresql://ann@db/x?sslpassword=***"),
        ("sqlite:/srv/hub:a/lake/metadata.sqlite", "sqlite:/srv/hub:a/lake/metadata.sqlite"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("postgres:dbname=passwordless host=db", "postgres:dbname=passwordless host=db"),
    ],
)  # fmt: skip
def test_a_connection_strings_secret_is_shown_as_stars(url: str, shown: str) -> None:
    assert shown_url(url.replace("PW", SECRET)) == shown


def test_the_settings_repr_shows_no_database_password(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        lake_metadata_url=f"postgres:dbname=lake host=db user=hub password={SECRET}",
        share_db_url=f"postgresql+psycopg://share:{SECRET}@db/share",
        model_registry_url=f"postgresql://mlflow:{SECRET}@db/mlflow",
        db_urls={"gaj": f"postgresql://police:{SECRET}@db/registry"},
        api_urls={"rsj": f"https://rsj.example/api?access_token={SECRET}"},
    )
    for text in (repr(settings), str(settings)):
        assert SECRET not in text
        assert "postgresql+psycopg://share:***@db/share" in text and "'gaj': 'postgresql" in text
    assert settings.share_db_url.endswith(f"{SECRET}@db/share")  # the value itself is kept


def test_the_lakes_open_error_shows_no_catalogue_password(tmp_path: Path) -> None:
    """A catalogue the lake cannot reach: the error names it, without its password."""
    settings = Settings(
        home=tmp_path,
        lake_metadata_url=f"postgres:dbname=lake host=127.0.0.1 port=1 password={SECRET}",
    ).ensure_dirs()
    with pytest.raises(LakeError) as caught, open_lake(settings):
        pass
    assert "cannot open the lake at postgres:dbname=lake" in str(caught.value)
    assert "password=***" in str(caught.value) and SECRET not in str(caught.value)
