"""The consent registry (授权同意登记): residents' choices of how far their data is shared.

Seed §6.1 (用户可自主选择信息共享范围): a resident, known here only by the hub's pseudonym
(the master resident index's ``person_id``, which for a resident with a citizen ID is the
``_pid_<citizen id>`` of every staged table), declines or allows the sharing of one
consent category (``catalog.consent``) with one kind of recipient (department, front end,
analyst). Each choice is kept with the time the resident made it and the channel it came
through; nothing is ever overwritten, so the history is the record, and the resident's
current choice for a (category, recipient kind) is the latest one.

:func:`excluded_residents` is what every grant's read asks (GRANTS anti-joins it at read
time): for a resource and the recipient's kind, the columns of the resource that name a
resident and the pseudonyms to leave out. A later opt-out therefore takes effect on the
next read; no grant is changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import get_args

import sqlalchemy as sa

from catalog.authority import person_key, pid_column, pid_fields
from catalog.consent import ConsentCategory
from catalog.identifiers import citizen_id15_plausible_str, citizen_id_valid_str, halfwidth_str
from catalog.model import PiiKind
from masking.pseudonym import looks_like_pseudonym
from masking.pseudonym import pseudonym as pseudonym_of
from share_api.db import aware, bump, current_revisions, metadata, new_id, utc_now
from share_api.deps import OrgKind
from share_api.service import Service

# the kinds of recipient a choice names: the principals' organisation kinds
RecipientKind = OrgKind
RECIPIENT_KINDS: tuple[str, ...] = get_args(OrgKind)
# the column of a staged table naming the record (business-key pseudonym), which the master
# index's mentions also carry: records linked to a person without a citizen ID
KEY_PID = "_key_pid"
MENTIONS = "person_mentions"  # curated: (dept, dataset, key_pid) → person_id
MART_PREFIX = "marts."


class Choice(StrEnum):
    declined = "declined"  # 不同意共享
    allowed = "allowed"  # 同意共享 (also: withdrawing an earlier refusal)


class Channel(StrEnum):
    """How the choice reached the hub (登记渠道)."""

    counter = "counter"  # 窗口办理 (街道政务服务中心)
    app = "app"  # 移动端 (the residents' app or mini-program)
    hotline = "hotline"  # 12345 热线
    paper = "paper"  # 书面申请
    grid_worker = "grid_worker"  # 网格员上门


CHANNEL_LABELS_ZH = {
    Channel.counter: "窗口办理",
    Channel.app: "移动端",
    Channel.hotline: "12345热线",
    Channel.paper: "书面申请",
    Channel.grid_worker: "网格员上门",
}

consent_choices = sa.Table(
    "consent_choices",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("pseudonym", sa.String(64), nullable=False),
    sa.Column("category", sa.String(40), nullable=False),
    sa.Column("recipient_kind", sa.String(20), nullable=False),
    sa.Column("choice", sa.String(10), nullable=False),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("chosen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_by", sa.String(200), nullable=False),
    sa.Index("ix_consent_choices_scope", "category", "recipient_kind", "recorded_at"),
    sa.Index("ix_consent_choices_pseudonym", "pseudonym"),
)


class ConsentError(ValueError):
    """A choice that cannot be recorded; the message names the field, never a value."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name


def _record(r: Mapping) -> dict:
    """A stored choice as the API shows it (times UTC-aware, the category's label)."""
    return {
        **r,
        "category_zh": ConsentCategory(r["category"]).label_zh,
        "chosen_at": aware(r["chosen_at"]),
        "recorded_at": aware(r["recorded_at"]),
    }


def resident_pseudonym(service: Service, citizen_id: str) -> str:
    """The hub pseudonym of the resident holding ``citizen_id`` (GB 11643-1999, 18 digits
    or a plausible old 15-digit one; full-width digits accepted): how a resident named by
    their ID is recorded — the ID itself is never stored, logged or returned.
    :class:`ConsentError` naming ``citizen_id`` when it is not a citizen ID."""
    cid = halfwidth_str(citizen_id or "").strip().upper()
    if not (citizen_id_valid_str(cid) or citizen_id15_plausible_str(cid)):
        raise ConsentError("citizen_id", "not a valid citizen ID (GB 11643-1999)")
    return pseudonym_of(cid, service.keyring, kind=PiiKind.citizen_id)


def record_choice(
    service: Service,
    *,
    pseudonym: str,
    category: ConsentCategory | str,
    recipient_kind: str,
    choice: Choice | str,
    channel: Channel | str,
    actor: str,
    chosen_at: dt.datetime | None = None,
) -> dict:
    """Record one resident's choice (audited ``consent.set``); the stored record.

    ``chosen_at`` is when the resident made it (default: now); it may not lie in the future.
    Raises :class:`ConsentError` naming the field at fault.
    """
    if not looks_like_pseudonym(pseudonym):
        raise ConsentError("pseudonym", "is not a hub pseudonym (20 lower-case hex characters)")
    try:
        category = ConsentCategory(category)
    except ValueError:
        raise ConsentError("category", "is not a consent category of the catalogue") from None
    if not category.personal:
        raise ConsentError("category", "holds no resident's information: nothing to choose")
    if recipient_kind not in RECIPIENT_KINDS:
        raise ConsentError("recipient_kind", f"must be one of {', '.join(RECIPIENT_KINDS)}")
    try:
        choice, channel = Choice(choice), Channel(channel)
    except ValueError as exc:
        name = "choice" if "Choice" in str(exc) else "channel"
        raise ConsentError(name, "is not one of the allowed values") from None
    now = utc_now()
    try:  # stored as UTC: a time given with another offset is converted, not relabelled
        chosen_at = aware(chosen_at).astimezone(dt.UTC) if chosen_at else now
    except (OverflowError, ValueError):
        raise ConsentError("chosen_at", "is out of range") from None
    if chosen_at > now + dt.timedelta(minutes=5):
        raise ConsentError("chosen_at", "lies in the future")
    row = {
        "id": new_id("consent"),
        "pseudonym": pseudonym,
        "category": category.value,
        "recipient_kind": recipient_kind,
        "choice": choice.value,
        "channel": channel.value,
        "chosen_at": chosen_at,
        "recorded_at": now,
        "recorded_by": actor,
    }
    with service.engine.begin() as con:
        con.execute(consent_choices.insert().values(**row))
        bump(con, "consent")
    service.audit.record(
        "consent.set",
        actor,
        consent_id=row["id"],
        pseudonym=pseudonym,
        category=category.value,
        recipient_kind=recipient_kind,
        choice=choice.value,
        channel=channel.value,
    )
    return _record(row)


def history(service: Service, pseudonym: str) -> list[dict]:
    """Every choice recorded for a resident, oldest first."""
    q = (
        sa.select(consent_choices)
        .where(consent_choices.c.pseudonym == pseudonym)
        .order_by(consent_choices.c.chosen_at, consent_choices.c.recorded_at)
    )
    with service.engine.connect() as con:
        return [_record(r._mapping) for r in con.execute(q)]


def current_choices(service: Service, pseudonym: str) -> list[dict]:
    """The resident's standing choice per (category, recipient kind): the latest of each."""
    latest: dict[tuple[str, str], dict] = {}
    for r in history(service, pseudonym):
        latest[(r["category"], r["recipient_kind"])] = r
    return sorted(latest.values(), key=lambda r: (r["category"], r["recipient_kind"]))


# the registry's change marker for one (category, recipient kind): choices are only ever
# added, so their count and newest recording time move with every new choice (built once:
# no statement compiled per read)
_VERSION = sa.select(sa.func.count(), sa.func.max(consent_choices.c.recorded_at)).where(
    consent_choices.c.category == sa.bindparam("category"),
    consent_choices.c.recipient_kind == sa.bindparam("kind"),
)


def declined(
    service: Service, category: ConsentCategory | str, recipient_kind: str
) -> frozenset[str]:
    """Pseudonyms of the residents whose latest choice for (category, kind) is a refusal.

    Asked at every read of a grant, so the answer is kept per service with the ``consent``
    revision counter it was worked out under (``share_api.db``: bumped in the transaction
    of every choice recorded, by any process): while the counter stands, no query. When it
    moved, the registry's marker for (category, kind) is read — choices are never updated
    or deleted, so their count and newest recording time say whether this scope changed
    (one index-only aggregate, about 1 ms) — and only then are the choices ranked again
    (about 10 ms at 10,000 choices). A choice recorded by another process is seen on the
    next call all the same.
    """
    c = consent_choices.c
    category = ConsentCategory(category).value
    revision = current_revisions(service).consent
    cache = service.kept("consent.declined", dict)
    key = (category, recipient_kind)
    held = cache.get(key)
    if held is not None and held[0] == revision:
        return held[2]
    with service.engine.connect() as con:
        version = tuple(con.execute(_VERSION, {"category": category, "kind": recipient_kind}).one())
        if held is not None and held[1] == version:
            cache[key] = (revision, version, held[2])
            return held[2]
        scope = (c.category == category, c.recipient_kind == recipient_kind)
        ranked = (
            sa.select(
                c.pseudonym,
                c.choice,
                sa.func.row_number()
                .over(partition_by=c.pseudonym, order_by=(c.chosen_at.desc(), c.recorded_at.desc()))
                .label("n"),
            )
            .where(*scope)
            .subquery()
        )
        q = sa.select(ranked.c.pseudonym).where(ranked.c.n == 1, ranked.c.choice == Choice.declined)
        found = frozenset(con.execute(q).scalars())
    cache[key] = (revision, version, found)
    return found


def declined_by_any_kind(service: Service, category: ConsentCategory | str) -> frozenset[str]:
    """Pseudonyms of the residents whose latest choice for ``category`` is a refusal for at
    least one kind of recipient: how a category that is not about recipients
    (``ConsentCategory.per_recipient`` false: ``automated_assessment``) is read."""
    return frozenset().union(*(declined(service, category, k) for k in RECIPIENT_KINDS))


def not_to_score(service: Service) -> frozenset[str]:
    """The residents (hub pseudonyms) the need model must not score: those who refused
    automated assessment (自动化评估, PIPL art. 24). The scoring step asks it before scoring;
    every read of a score or an alert list leaves the same residents out
    (:func:`excluded_residents`)."""
    return declined_by_any_kind(service, ConsentCategory.automated_assessment)


@dataclass(frozen=True)
class Exclusion:
    """Who a read of ``resource`` by a recipient of ``recipient_kind`` must leave out.

    A row is left out when any column of :attr:`by_column` holds one of that column's
    values. ``pseudonyms`` are the residents (hub pseudonyms) who declined the resource's
    category; ``by_column`` says where they show in the resource: the staged person-key
    pseudonym (``_pid_citizen_id``) or a mart's subject column, and — once widened over the
    master index (:func:`widen_by_mentions`) — ``_key_pid`` of the records linked to them
    without an ID. Empty when the category holds no resident's information.
    """

    resource: str
    category: ConsentCategory
    recipient_kind: str
    pseudonyms: frozenset[str]
    by_column: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.by_column)

    def __bool__(self) -> bool:
        return any(self.by_column.values())

    def filter_arrow(self, table):
        """``table`` (a pyarrow Table holding :attr:`columns`) without the excluded rows."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self:
            return table
        drop = None
        for column, values in self.by_column.items():
            hit = pc.fill_null(pc.is_in(table[column], value_set=pa.array(sorted(values))), False)
            drop = hit if drop is None else pc.or_(drop, hit)
        return table.filter(pc.invert(drop))


def resource_category(service: Service, resource: str) -> ConsentCategory:
    """The consent category of ``dept.dataset`` or ``marts.<name>`` (KeyError: unknown)."""
    from share_api.catalogue import marts_of

    if resource.startswith(MART_PREFIX):
        return marts_of(service)[resource.removeprefix(MART_PREFIX)].consent_category
    return service.catalogue.dataset(resource)[1].consent_category


def resident_columns(service: Service, resource: str) -> tuple[str, ...]:
    """The columns of a resource's lake table that hold the pseudonym of the resident a row
    is about: a mart's subject column; a staged table's pseudonym of its person-key field
    (``_pid_<field>`` of the field carrying the person key concept)."""
    from share_api.catalogue import marts_of

    if resource.startswith(MART_PREFIX):
        subject = marts_of(service)[resource.removeprefix(MART_PREFIX)].subject_column
        return (subject,) if subject else ()
    _, ds = service.catalogue.dataset(resource)
    key = person_key(service.catalogue)
    return tuple(pid_column(f.name) for f in pid_fields(ds) if key and f.concept == key)


def excluded_residents(service: Service, resource: str, recipient_kind: str) -> Exclusion:
    """Who a grant of ``resource`` to a recipient of ``recipient_kind`` leaves out, now.

    ``resource`` is ``dept.dataset`` or ``marts.<name>`` (KeyError when the catalogue has
    no such thing). Read at every read, so a later opt-out applies to the next read.
    """
    category, columns = _resource_facts(service, resource)
    if not category.personal:
        return Exclusion(resource, category, recipient_kind, frozenset())
    people = (
        declined(service, category, recipient_kind)
        if category.per_recipient
        else declined_by_any_kind(service, category)
    )
    return Exclusion(resource, category, recipient_kind, people, {c: people for c in columns})


def _resource_facts(service: Service, resource: str) -> tuple[ConsentCategory, tuple[str, ...]]:
    """(category, resident columns) of a resource, worked out once per catalogue object (a
    loaded catalogue never changes; the person key alone took ~0.1 ms a read)."""
    facts = service.kept("consent.resources", dict)
    held = facts.get(resource)
    if held is not None and held[0] is service.catalogue:
        return held[1], held[2]
    category = resource_category(service, resource)
    columns = resident_columns(service, resource) if category.personal else ()
    facts[resource] = (service.catalogue, category, columns)
    return category, columns


def widen_by_mentions(exclusion: Exclusion, con, snapshot: int | None = None) -> Exclusion:
    """The exclusion of a staged dataset widened over the master resident index: also the
    records (``_key_pid``) the index links to an excluded resident without a citizen ID
    (a 12345 caller known by name and mobile). ``con`` is an open lake connection; the
    index is read as of ``snapshot`` (the read's lake snapshot; default: the current)."""
    from lakehouse.snapshots import table_ref

    if not exclusion.pseudonyms or exclusion.resource.startswith(MART_PREFIX):
        return exclusion
    dept, _, dataset = exclusion.resource.partition(".")
    at = "" if snapshot is None else f" AT (VERSION => {int(snapshot)})"
    rows = con.execute(
        f"SELECT DISTINCT key_pid FROM {table_ref('curated', MENTIONS)}{at} "
        "WHERE dept = ? AND dataset = ? AND list_contains(?, person_id)",
        [dept, dataset, sorted(exclusion.pseudonyms)],
    ).fetchall()
    keys = frozenset(r[0] for r in rows if r[0])
    if not keys:
        return exclusion
    return Exclusion(
        exclusion.resource,
        exclusion.category,
        exclusion.recipient_kind,
        exclusion.pseudonyms,
        {**exclusion.by_column, KEY_PID: keys},
    )


__all__ = [
    "CHANNEL_LABELS_ZH",
    "RECIPIENT_KINDS",
    "Channel",
    "Choice",
    "ConsentError",
    "Exclusion",
    "consent_choices",
    "current_choices",
    "declined",
    "declined_by_any_kind",
    "excluded_residents",
    "history",
    "not_to_score",
    "record_choice",
    "resident_columns",
    "resident_pseudonym",
    "resource_category",
    "widen_by_mentions",
]
