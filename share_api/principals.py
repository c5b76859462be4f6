"""Who may call the share service: organisations, people, roles and API tokens.

- An **organisation** (:data:`orgs`) is a catalogue department (kind ``department``, made
  by :func:`sync_departments`), a resident-facing front end (``frontend``) or an analysts'
  team (``analyst``); its code is how grants, requests and audit records name it.
- A **person** (:data:`users`) belongs to one organisation and holds roles
  (:data:`user_roles`, from :data:`share_api.deps.ROLES`).
- An **API token** (:data:`tokens`) is ``<token id>.<secret>``: the id is public (audit
  records and revocation name it), the secret is 256 random bits shown once when issued;
  only its SHA-256 is stored (a random secret needs no slow hash). Every token expires
  (``share_token_ttl_hours`` unless a shorter life is asked) and can be revoked; a revoked
  or expired token fails at once, on its next request.

:func:`authenticate_request` signs every request in: ``auth.ok`` or ``auth.failed`` (with
the reason, the token id when it is a real one, the caller's address, the path) is
audited, and a failure is a 401 that never says more than the reason. A secret never
reaches a log, an error or an audit record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, get_args

import sqlalchemy as sa
from fastapi import HTTPException, Request

from share_api import bearer_tokens
from share_api.db import aware, bump, current_revisions, metadata, new_id, utc_now
from share_api.deps import ROLES, OrgKind, Principal
from share_api.kept import kept_under

if TYPE_CHECKING:
    from share_api.service import Service

ORG_KINDS = get_args(OrgKind)
ANONYMOUS = "anonymous"  # the actor of a failed sign-in that names no real token
SYSTEM = "system"  # the actor of operations run on the server itself (CLI, fixtures)

CODE_RE = re.compile(r"[a-z][a-z0-9_]{1,31}")
USER_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{1,63}")
TOKEN_PREFIX = "tok"
TOKEN_ID_RE = bearer_tokens.id_pattern(TOKEN_PREFIX)
TOKEN_RE = bearer_tokens.token_pattern(TOKEN_PREFIX)

orgs = sa.Table(
    "orgs",
    metadata,
    sa.Column("code", sa.String(32), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("org", sa.String(32), sa.ForeignKey("orgs.code"), nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("disabled_at", sa.DateTime(timezone=True)),
)

user_roles = sa.Table(
    "user_roles",
    metadata,
    sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("role", sa.String(16), primary_key=True),
    sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("granted_by", sa.Text, nullable=False),
)

tokens = bearer_tokens.token_table("tokens")  # the share API's

# one-off events of the service's life (``admin_init``): the key makes them happen once
bootstrap = sa.Table(
    "bootstrap",
    metadata,
    sa.Column("event", sa.String(32), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
)


class PrincipalError(Exception):
    """A principal operation refused: ``status`` is the HTTP status a route answers with;
    the message names fields, never a secret."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AuthFailure(Exception):
    """A token that does not sign in: ``reason`` (missing, malformed, invalid, expired,
    revoked, disabled), the token id when the token is a real one, and its owner's actor
    when the secret matched (so a revoked token's use is pinned on its owner)."""

    def __init__(self, reason: str, token_id: str | None = None, actor: str = ANONYMOUS):
        super().__init__(reason)
        self.reason = reason
        self.token_id = token_id
        self.actor = actor


IssuedToken = bearer_tokens.IssuedToken  # what issue_token gives


@contextlib.contextmanager
def _writing(service: Service, taken: str):
    """A transaction whose unique-key clash (two callers making the same id at once, the
    check before the insert notwithstanding) is a 409 naming what is taken, not a 500."""
    try:
        with service.engine.begin() as con:
            yield con
    except sa.exc.IntegrityError:
        raise PrincipalError(409, taken) from None


# -- organisations ----------------------------------------------------------------------------
def create_org(service: Service, code: str, name: str, kind: str, *, actor: str = SYSTEM) -> str:
    """A new organisation (audited ``admin.org_create``); 409 if the code is taken."""
    if not CODE_RE.fullmatch(code or ""):
        raise PrincipalError(422, "code: 2-32 lowercase letters, digits or _, from a letter")
    if kind not in ORG_KINDS:
        raise PrincipalError(422, f"kind is one of {', '.join(ORG_KINDS)}")
    if not (name or "").strip():
        raise PrincipalError(422, "name is empty")
    with _writing(service, "an organisation with this code exists") as con:
        if con.execute(sa.select(orgs.c.code).where(orgs.c.code == code)).first():
            raise PrincipalError(409, "an organisation with this code exists")
        con.execute(orgs.insert().values(code=code, name=name, kind=kind, created_at=utc_now()))
        bump(con, "principals")
    service.audit.record("admin.org_create", actor, org=code, kind=kind)
    return code


def get_org(service: Service, code: str) -> dict[str, Any] | None:
    with service.engine.connect() as con:
        row = con.execute(sa.select(orgs).where(orgs.c.code == code)).mappings().first()
    return dict(row) if row else None


def list_orgs(service: Service) -> list[dict[str, Any]]:
    with service.engine.connect() as con:
        rows = con.execute(sa.select(orgs).order_by(orgs.c.code)).mappings().all()
    return [dict(r) for r in rows]


def sync_departments(service: Service, *, actor: str = SYSTEM) -> list[str]:
    """Every catalogue department is an organisation of kind ``department``: make those
    missing (their Chinese names), return their codes. Run at every start."""
    with service.engine.connect() as con:
        known = set(con.execute(sa.select(orgs.c.code)).scalars())
    made = []
    for code, dept in sorted(service.catalogue.departments.items()):
        if code not in known:
            try:
                create_org(service, code, dept.name_zh, "department", actor=actor)
            except PrincipalError as exc:  # another process starting made it meanwhile
                if exc.status != 409:
                    raise
                continue
            made.append(code)
    return made


# -- people and roles -------------------------------------------------------------------------
def _check_roles(roles: Iterable[str]) -> list[str]:
    roles = sorted(set(roles))
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise PrincipalError(422, f"roles are among {', '.join(ROLES)}")
    return roles


def create_user(
    service: Service,
    org: str,
    *,
    name: str,
    roles: Iterable[str] = (),
    user_id: str | None = None,
    actor: str = SYSTEM,
) -> str:
    """A new person of ``org`` holding ``roles`` (audited ``admin.user_create``). Roles
    given here are the person's first; later grants go through :func:`add_role` (the
    admin routes put that under the two-person rule)."""
    roles = _check_roles(roles)
    user_id = user_id or new_id("usr")
    if not USER_RE.fullmatch(user_id):
        raise PrincipalError(422, "user_id: 2-64 lowercase letters, digits, _ . or -")
    if not (name or "").strip():
        raise PrincipalError(422, "name is empty")
    now = utc_now()
    with _writing(service, "a person with this user_id exists") as con:
        if not con.execute(sa.select(orgs.c.code).where(orgs.c.code == org)).first():
            raise PrincipalError(404, "no organisation with this code")
        if con.execute(sa.select(users.c.id).where(users.c.id == user_id)).first():
            raise PrincipalError(409, "a person with this user_id exists")
        con.execute(users.insert().values(id=user_id, org=org, name=name, created_at=now))
        for role in roles:
            con.execute(
                user_roles.insert().values(
                    user_id=user_id, role=role, granted_at=now, granted_by=actor
                )
            )
        bump(con, "principals")
    service.audit.record("admin.user_create", actor, org=org, user=user_id, roles=",".join(roles))
    return user_id


def get_user(service: Service, user_id: str) -> dict[str, Any] | None:
    """A person: id, org, org_kind, name, created_at, disabled_at, roles (sorted)."""
    with service.engine.connect() as con:
        row = (
            con.execute(
                sa.select(users, orgs.c.kind.label("org_kind"))
                .join(orgs, orgs.c.code == users.c.org)
                .where(users.c.id == user_id)
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        roles = con.execute(
            sa.select(user_roles.c.role)
            .where(user_roles.c.user_id == user_id)
            .order_by(user_roles.c.role)
        ).scalars()
        return {**row, "roles": list(roles)}


def list_users(service: Service, org: str | None = None) -> list[dict[str, Any]]:
    """People (of ``org`` when given), each with their roles."""
    query = sa.select(users.c.id).order_by(users.c.org, users.c.id)
    if org is not None:
        query = query.where(users.c.org == org)
    with service.engine.connect() as con:
        ids = list(con.execute(query).scalars())
    return [u for u in (get_user(service, i) for i in ids) if u is not None]


def add_role(service: Service, user_id: str, role: str, *, actor: str) -> bool:
    """Give ``user_id`` the role (audited ``admin.role_grant``); False if already held.
    The caller has checked the authority (the admin route: an approved operation)."""
    _check_roles([role])
    with _writing(service, "the person holds this role") as con:
        if not con.execute(sa.select(users.c.id).where(users.c.id == user_id)).first():
            raise PrincipalError(404, "no person with this user_id")
        held = con.execute(
            sa.select(user_roles.c.role).where(
                user_roles.c.user_id == user_id, user_roles.c.role == role
            )
        ).first()
        if held:
            return False
        con.execute(
            user_roles.insert().values(
                user_id=user_id, role=role, granted_at=utc_now(), granted_by=actor
            )
        )
        bump(con, "principals")
    service.audit.record("admin.role_grant", actor, user=user_id, role=role)
    return True


MIN_ADMINS = 2  # the two-person rule needs two administrators who can sign in


def _active_admins(con) -> sa.Select:
    return (
        sa.select(user_roles.c.user_id)
        .join(users, users.c.id == user_roles.c.user_id)
        .where(user_roles.c.role == "admin", users.c.disabled_at.is_(None))
    )


def _keep_two_admins(con, user_id: str) -> None:
    """Refuse a change that would leave fewer than two administrators able to sign in:
    with one, no role could ever be given again (and ``admin init`` runs once). Writing
    the ``admin_init`` row first serialises such changes (SQLite's write lock,
    PostgreSQL's row lock), so two at once cannot each leave the other's last two."""
    con.execute(
        bootstrap.update().where(bootstrap.c.event == "admin_init").values(actor=bootstrap.c.actor)
    )
    admins = set(con.execute(_active_admins(con)).scalars())
    if user_id in admins and len(admins) - 1 < MIN_ADMINS:
        raise PrincipalError(
            409, f"the service keeps at least {MIN_ADMINS} administrators (two-person rule)"
        )


def remove_role(service: Service, user_id: str, role: str, *, actor: str) -> bool:
    """Take the role away (audited ``admin.role_remove``; taking away needs no second
    person: it only lowers privilege, but the last two administrators stay); False if
    not held."""
    _check_roles([role])
    with service.engine.begin() as con:
        if role == "admin":
            _keep_two_admins(con, user_id)
        gone = con.execute(
            user_roles.delete().where(user_roles.c.user_id == user_id, user_roles.c.role == role)
        ).rowcount
        bump(con, "principals")
    if gone:
        service.audit.record("admin.role_remove", actor, user=user_id, role=role)
    return bool(gone)


def disable_user(service: Service, user_id: str, *, actor: str) -> bool:
    """The person can no longer sign in (every token fails with ``disabled``; audited),
    unless that leaves fewer than two administrators."""
    with service.engine.begin() as con:
        _keep_two_admins(con, user_id)
        changed = con.execute(
            users.update()
            .where(users.c.id == user_id, users.c.disabled_at.is_(None))
            .values(disabled_at=utc_now())
        ).rowcount
        bump(con, "principals")
    if changed:
        service.audit.record("admin.user_disable", actor, user=user_id)
    return bool(changed)


def count_admins(service: Service) -> int:
    """Administrators who can sign in."""
    with service.engine.connect() as con:
        return len(set(con.execute(_active_admins(con)).scalars()))


def principal_for_user(service: Service, user_id: str, token_id: str = "") -> Principal | None:
    """The principal of a person (no token: the server's own CLI acting for them), None if
    there is no such person or they are disabled."""
    user = get_user(service, user_id)
    if user is None or user["disabled_at"] is not None:
        return None
    return Principal(
        user_id=user["id"],
        org=user["org"],
        org_kind=user["org_kind"],
        roles=frozenset(user["roles"]),
        token_id=token_id,
    )


def init_admins(
    service: Service,
    org: str,
    admins: list[tuple[str, str]],
    *,
    actor: str,
    ttl: dt.timedelta | None = None,
) -> list[IssuedToken]:
    """The first two administrators (``[(user_id, name), …]``, two different people) of
    ``org`` (an existing organisation), with a token each: once in the service's life
    (audited ``admin.init``). After this a role is given only under the two-person rule."""
    ids = [user_id for user_id, _name in admins]
    if len(admins) != 2 or len(set(ids)) != 2:
        raise PrincipalError(422, "admin init makes exactly two different administrators")
    for user_id, name in admins:
        if not USER_RE.fullmatch(user_id) or not name.strip():
            raise PrincipalError(422, "user_id: 2-64 lowercase letters, digits, _ . or -")
    now = utc_now()
    with _writing(service, "the administrators were made already (admin init runs once)") as con:
        if not con.execute(sa.select(orgs.c.code).where(orgs.c.code == org)).first():
            raise PrincipalError(404, "no organisation with this code")
        done = con.execute(
            sa.select(bootstrap.c.event).where(bootstrap.c.event == "admin_init")
        ).first()
        admins_now = con.execute(
            sa.select(sa.func.count()).select_from(user_roles).where(user_roles.c.role == "admin")
        ).scalar_one()
        if done or admins_now:
            raise PrincipalError(409, "the administrators were made already (admin init runs once)")
        taken = con.execute(sa.select(users.c.id).where(users.c.id.in_(ids))).first()
        if taken:
            raise PrincipalError(409, "a person with this user_id exists")
        # the primary key makes a concurrent second init fail here, rolling back
        con.execute(bootstrap.insert().values(event="admin_init", at=now, actor=actor))
        for user_id, name in admins:
            con.execute(users.insert().values(id=user_id, org=org, name=name, created_at=now))
            con.execute(
                user_roles.insert().values(
                    user_id=user_id, role="admin", granted_at=now, granted_by=actor
                )
            )
        bump(con, "principals")
    service.audit.record("admin.init", actor, org=org, users=",".join(ids))
    return [
        issue_token(service, user_id, ttl=ttl, label="admin init", actor=actor) for user_id in ids
    ]


# -- tokens -----------------------------------------------------------------------------------
def token_ttl(service: Service) -> dt.timedelta:
    hours = float(getattr(service.settings, "share_token_ttl_hours", 24 * 30))
    return dt.timedelta(hours=hours)


def issue_token(
    service: Service,
    user_id: str,
    *,
    ttl: dt.timedelta | None = None,
    label: str = "",
    actor: str = SYSTEM,
    not_after: dt.datetime | None = None,
) -> IssuedToken:
    """A new token for ``user_id`` valid for ``ttl`` (at most the configured life) and not
    after ``not_after`` (audited ``auth.token_issue`` with its id, never its secret)."""
    now = utc_now()
    expires_at = bearer_tokens.expiry(
        now, ttl, token_ttl(service), not_after, lambda m: PrincipalError(422, m)
    )
    holder = token_holder(service, user_id, PrincipalError)
    return bearer_tokens.issue(
        service,
        tokens,
        TOKEN_PREFIX,
        holder,
        expires_at,
        now=now,
        label=label,
        actor=actor,
        action="auth.token_issue",
    )


def token_holder(
    service: Service, user_id: str, refused: Callable[[int, str], Exception]
) -> dict[str, Any]:
    """The person ``user_id`` as a new token of any kind may be issued to:
    ``refused(404, …)`` is raised when there is none, ``refused(409, …)`` when disabled."""
    user = get_user(service, user_id)
    if user is None:
        raise refused(404, "no person with this user_id")
    if user["disabled_at"] is not None:
        raise refused(409, "the person is disabled")
    return user


def get_token(service: Service, token_id: str) -> dict[str, Any] | None:
    """A token's record without its hash: id, user_id, label, times."""
    found = bearer_tokens.records(service, tokens, tokens.c.id == token_id)
    return found[0] if found else None


def list_tokens(service: Service, user_id: str) -> list[dict[str, Any]]:
    """A person's tokens (never a hash), newest first."""
    return bearer_tokens.records(service, tokens, tokens.c.user_id == user_id)


def revoke_token(service: Service, token_id: str, *, actor: str = SYSTEM) -> bool:
    """Revoke at once (the next request with it fails, audited ``auth.token_revoke``);
    False if it was already revoked; :class:`PrincipalError` 404 if there is none."""
    missing = PrincipalError(404, "no token with this id")
    return bearer_tokens.revoke(
        service, tokens, token_id, actor=actor, action="auth.token_revoke", missing=missing
    )


def sign_in_select(table: sa.Table) -> sa.Select:
    """What a token of ``table`` (a bearer token table: :mod:`share_api.bearer_tokens`) signs in
    by (:func:`check_sign_in`): its hash and times, its person and organisation, for the
    token named by the bound parameter ``token_id``."""
    return (
        sa.select(
            table.c.secret_sha256,
            table.c.expires_at,
            table.c.revoked_at,
            users.c.id.label("user_id"),
            users.c.disabled_at,
            orgs.c.code.label("org"),
            orgs.c.kind.label("org_kind"),
        )
        .select_from(table)
        .join(users, users.c.id == table.c.user_id)
        .join(orgs, orgs.c.code == users.c.org)
        .where(table.c.id == sa.bindparam("token_id"))
    )


# an API token signs in with its person's roles (a row a role)
_SIGN_IN = (
    sign_in_select(tokens)
    .add_columns(user_roles.c.role)
    .outerjoin(user_roles, user_roles.c.user_id == users.c.id)
)


KEPT_TOKENS = 4_096  # tokens' sign-in rows kept per process


def authenticate_token(service: Service, token: str | None, *, now: dt.datetime | None = None):
    """The principal a bearer token signs in as; :class:`AuthFailure` otherwise. An
    unknown id and a wrong secret fail alike (``invalid``); expiry, revocation and a
    disabled person are told only to the holder of the right secret.

    The token's rows (token, person, organisation, roles) are kept per process while the
    ``principals`` revision counter (``share_api.db``: bumped in the transaction of every
    change of a token, person, role or organisation) stays as it was: one cheap query of
    the counters a request instead of this join, and a revocation by any process still
    fails the very next request (``share_api.kept``; an unknown id is not kept: it is
    asked again). Expiry is checked against the clock on every call."""
    if not token:
        raise AuthFailure("missing")
    match = TOKEN_RE.fullmatch(token)
    if match is None:
        raise AuthFailure("malformed")
    token_id, secret = match.groups()

    def read() -> tuple[Any, Principal] | None:  # the sign-in row and whom it signs in as
        with service.engine.connect() as con:
            rows = con.execute(_SIGN_IN, {"token_id": token_id}).all()
        return (rows[0], _principal_of(token_id, rows)) if rows else None

    revision = current_revisions(service).principals
    held = kept_under(service, "principals.sign_in", token_id, revision, read, most=KEPT_TOKENS)
    row, principal = held or (None, None)
    check_sign_in(row, token_id, bearer_tokens.hash_secret(secret), now or utc_now())
    return principal


def check_sign_in(row: Any, token_id: str, secret_sha256: str | None, now: dt.datetime) -> str:
    """The rule every bearer token of the service signs in by (API tokens here, Delta
    Sharing profile tokens in ``share_api.sharing.tokens``), over its stored row (``None``:
    no such token; ``secret_sha256`` None: the id alone is being re-checked). Returns the
    actor; raises :class:`AuthFailure`: an unknown id and a wrong secret fail alike
    (``invalid``), then ``revoked``, ``expired``, ``disabled`` — told only to the holder of
    the right secret."""
    if row is None:
        raise AuthFailure("invalid")
    if secret_sha256 is not None and not hmac.compare_digest(row.secret_sha256, secret_sha256):
        raise AuthFailure("invalid", token_id)
    actor = f"{row.org}/{row.user_id}"
    if row.revoked_at is not None:
        raise AuthFailure("revoked", token_id, actor)
    if aware(row.expires_at) <= now:
        raise AuthFailure("expired", token_id, actor)
    if row.disabled_at is not None:
        raise AuthFailure("disabled", token_id, actor)
    return actor


def _principal_of(token_id: str, rows: list) -> Principal:
    """Whom a token's sign-in rows (one a role; at least one) sign in as."""
    first = rows[0]
    return Principal(
        user_id=first.user_id,
        org=first.org,
        org_kind=first.org_kind,
        roles=frozenset(r.role for r in rows if r.role),
        token_id=token_id,
    )


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header ('' if another scheme)."""
    return bearer_of(request.headers.get("authorization"))


def bearer_of(header: str | None) -> str | None:
    """The token of an ``Authorization`` header's value: None without one, '' when it
    names another scheme."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def record_failed_sign_in(service: Service, request: Request, failure: AuthFailure) -> None:
    """``auth.failed`` audited (reason, token id if real, client address, method, path) for
    any of the service's bearer tokens; the app's 4xx audit need not add another."""
    details: dict[str, Any] = {
        "reason": failure.reason,
        "client": client_of(request),
        "method": request.method,
        "path": request.url.path,
    }
    if failure.token_id:
        details["token"] = failure.token_id
    service.audit.record("auth.failed", failure.actor, **details)
    request.state.refusal_audited = True


def sign_in_request(service: Service, request: Request, token: str | None) -> Principal:
    """Sign the request in by ``token`` (a bearer token, or the portal's session): ``auth.ok``
    audited and the principal kept on ``request.state.principal``; else ``auth.failed``
    audited (reason, token id if real, client address, method, path) and the
    :class:`AuthFailure` raised for the caller to answer. Made once a request."""
    known = getattr(request.state, "principal", None)
    if known is not None:
        return known
    try:
        principal = authenticate_token(service, token)
    except AuthFailure as failure:
        record_failed_sign_in(service, request, failure)
        raise
    service.audit.record(
        "auth.ok",
        principal.actor,
        token=principal.token_id,
        client=client_of(request),
        method=request.method,
        path=request.url.path,
    )
    request.state.principal = principal
    return principal


def authenticate_request(service: Service, request: Request) -> Principal:
    """Sign the request in by its bearer token (:func:`sign_in_request`); a 401 that names
    only the reason when it fails."""
    try:
        return sign_in_request(service, request, bearer(request))
    except AuthFailure as failure:
        raise HTTPException(
            401,
            f"not signed in: {failure.reason} token",
            headers={"WWW-Authenticate": 'Bearer realm="streethub-share"'},
        ) from None
