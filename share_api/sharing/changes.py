"""The change feed (变更数据流) between two versions of a grant's table: what Delta Sharing's
``/changes`` and ``load_table_changes_as_pandas`` read.

For a range ``start`` … ``end`` the feed is the start version's data files as ``add`` lines,
then, for each later version ``v`` whose rows differ from ``v - 1``'s, ``cdf`` files of the
rows inserted and deleted, with a ``_change_type`` column (``insert`` / ``delete``: rows
have no key a recipient may see, so a changed row is its old row deleted and its new row
inserted).

The diff is of the two versions' *materialised* rows (``files.files_of``: the grant's view,
masked and pseudonymised for the recipient), in DuckDB: ``EXCEPT ALL`` both ways, so a row
held twice and deleted once is one delete. **Privacy first**, as for every version: both
sides are made under the grant's *current* terms and *current* opt-outs, so

- a version made only by an opt-out (or by narrowed terms) shows no change at all: the
  person's rows left every version, the old ones too, and a delete of them would hand out
  the very rows the person withdrew;
- after an opt-out every pair's cdf files are made again (a new materialisation state,
  new file ids) without that person's rows; ``files.sweep`` removes the old ones.

The cdf files of a version pair are kept, registered under the pair's state
(``<state before>:<state after>``, both materialisation states) with ``files.write_file``
(kind ``cdf``), so a second call reuses them; one build a pair even when threads ask at
once. A pair's files end with an empty part: the mark that all its parts were written (a
pair whose rows are the same has only that mark, and no ``cdf`` line).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from typing import TYPE_CHECKING

import pyarrow as pa

from lakehouse.session import scratch
from share_api.sharing.errors import SharingError
from share_api.sharing.files import (
    SHARE_PART_ROWS,
    SharedFile,
    file_id,
    files_of,
    open_plain,
    read_table,
    registered,
    write_file,
)
from share_api.sharing.versions import TableVersion, materialisation_state, versions_between

if TYPE_CHECKING:
    from share_api.grants import Grant
    from share_api.service import Service

CHANGE_TYPE = "_change_type"
INSERT, DELETE = "insert", "delete"
KIND = "cdf"

# rows in the later version and not the earlier (inserted), then the reverse (deleted);
# EXCEPT ALL keeps multiplicities and treats nulls as equal
_DIFF = f"""
SELECT *, '{INSERT}' AS {CHANGE_TYPE} FROM (SELECT * FROM after_rows EXCEPT ALL
                                             SELECT * FROM before_rows)
UNION ALL
SELECT *, '{DELETE}' AS {CHANGE_TYPE} FROM (SELECT * FROM before_rows EXCEPT ALL
                                             SELECT * FROM after_rows)
"""


def change_lines(
    service: Service, grant: Grant, start: TableVersion, end: TableVersion, recipient_kind: str
) -> list[tuple[str, SharedFile, TableVersion]]:
    """The feed from ``start`` to ``end`` (inclusive), as Delta's change data feed reads:
    the changes *made by* each version. The grant's first version (0) made every row it
    shows: ``("add", file, v0)`` for each of its data files. Every later version ``v`` in
    the range made the difference from ``v - 1``: ``("cdf", file, v)`` for each cdf file
    of its rows inserted and deleted (none when they are the same rows). So a client that
    read version ``s - 1`` and asks for changes from ``s`` gets exactly what it lacks. 400
    when the range is reversed or names a version not recorded, or when a version's
    snapshot left the lake's retention window."""
    if end.version < start.version:
        raise SharingError(400, "the ending version is before the starting version")
    first = start.version
    lines: list[tuple[str, SharedFile, TableVersion]] = []
    if first == 0:
        lines += [("add", f, start) for f in files_of(service, grant, start, recipient_kind)]
        first = 1
    if end.version < first:
        return lines
    chain = versions_between(service, grant, first - 1, end.version)
    for before, after in itertools.pairwise(chain):
        made = cdf_files(service, grant, before, after, recipient_kind)
        lines += [("cdf", f, after) for f in made]
    return lines


def pair_state(
    service: Service, grant: Grant, before: TableVersion, after: TableVersion, recipient_kind: str
) -> tuple[str, str]:
    """The materialisation states of the two versions of a pair, now."""
    return (
        materialisation_state(service, grant, before, recipient_kind),
        materialisation_state(service, grant, after, recipient_kind),
    )


def cdf_files(
    service: Service, grant: Grant, before: TableVersion, after: TableVersion, recipient_kind: str
) -> list[SharedFile]:
    """The cdf files of the change from ``before`` to ``after`` (consecutive versions), each
    carrying ``after``'s version; none when their rows are the same. Made the first time,
    then reused while both materialisation states hold."""
    old, new = pair_state(service, grant, before, after, recipient_kind)
    if old == new:
        return []  # the same snapshot under the same terms and opt-outs: the same rows
    state = f"{old}:{new}"
    found = _complete(service, registered(service, grant.id, state, KIND))
    if found is None:
        key = f"sharing.changes.gate.{file_id(grant.id, state, 0, KIND)}"
        gate = service.kept(key, threading.Lock)
        with gate:
            found = _complete(service, registered(service, grant.id, state, KIND))
            if found is None:
                found = _make(service, grant, before, after, recipient_kind, state)
    return [dataclasses.replace(f, version=after.version) for f in found if f.rows > 0]


def _complete(service: Service, found: list[SharedFile]) -> list[SharedFile] | None:
    """``found`` when it is a pair's whole set (parts 0 … n, the last the empty mark, every
    one on disk); else None."""
    if not found or found[-1].rows != 0 or [f.part for f in found] != list(range(len(found))):
        return None
    for f in found:
        try:
            open_plain(service, f).close()
        except SharingError:
            return None
    return found


def _rows(service: Service, grant: Grant, version: TableVersion, recipient_kind: str) -> pa.Table:
    """A version's materialised rows, its parts read back into one table."""
    parts = [read_table(service, f) for f in files_of(service, grant, version, recipient_kind)]
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def diff(before: pa.Table, after: pa.Table) -> pa.Table:
    """The rows inserted into and deleted from ``before`` to make ``after``, in ``after``'s
    schema with a ``_change_type`` column. 400 when ``before``'s columns cannot be read as
    ``after``'s (a column gone, or retyped beyond a cast)."""
    try:
        before = before.select(after.schema.names).cast(after.schema)
    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise SharingError(
            400, "the table's columns changed between the versions: no change feed across them"
        ) from None
    con = scratch()
    try:
        con.register("before_rows", before)
        con.register("after_rows", after)
        changed = con.execute(_DIFF).to_arrow_table()
    finally:
        con.close()
    schema = after.schema.append(pa.field(CHANGE_TYPE, pa.string(), nullable=False))
    return changed.cast(schema)


def _make(
    service: Service,
    grant: Grant,
    before: TableVersion,
    after: TableVersion,
    recipient_kind: str,
    state: str,
) -> list[SharedFile]:
    changed = diff(
        _rows(service, grant, before, recipient_kind), _rows(service, grant, after, recipient_kind)
    )
    made = []
    parts = -(-changed.num_rows // SHARE_PART_ROWS)
    for i in range(parts):
        part = changed.slice(i * SHARE_PART_ROWS, SHARE_PART_ROWS)
        made.append(write_file(service, grant, after, i, part, KIND, state))
    # the mark that every part is written: an empty part last
    made.append(write_file(service, grant, after, parts, changed.slice(0, 0), KIND, state))
    return made


__all__ = ["CHANGE_TYPE", "DELETE", "INSERT", "cdf_files", "change_lines", "diff", "pair_state"]
