"""A share database made by an older version: what may be added is added at start, what
may not stops the start with an error naming the table and columns."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from share_api.db import SchemaError, create_schema, metadata


def old_grants(engine, *, drop: str) -> None:
    """The ``grants`` table as this version declares it, less the column ``drop``."""
    old = sa.MetaData()
    sa.Table(
        "grants",
        old,
        *(
            sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in metadata.tables["grants"].columns
            if c.name != drop
        ),
    )
    old.create_all(engine)


def test_a_nullable_column_is_added_and_rows_kept(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'share.db'}")
    create_schema(engine)  # imports every table module, so ``metadata`` is whole
    with engine.begin() as con:
        con.execute(sa.text('DROP TABLE "grants"'))
    old_grants(engine, drop="revoke_reason")
    assert "revoke_reason" not in {c["name"] for c in sa.inspect(engine).get_columns("grants")}
    create_schema(engine)
    assert "revoke_reason" in {c["name"] for c in sa.inspect(engine).get_columns("grants")}
    create_schema(engine)  # again: nothing to do
    engine.dispose()


def test_a_required_column_missing_stops_the_start_naming_it(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'share.db'}")
    create_schema(engine)
    with engine.begin() as con:
        con.execute(sa.text('DROP TABLE "grants"'))
    old_grants(engine, drop="resource")
    with pytest.raises(SchemaError, match=r"grants\.resource"):
        create_schema(engine)
    engine.dispose()
