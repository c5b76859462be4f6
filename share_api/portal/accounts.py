"""Personal passwords for the portal's sign-in (个人账号: never a shared account — two
approvals must be two people).

Only a scrypt hash (RFC 7914; n=2^14, r=8, p=1, a 16-byte random salt per password) is
stored, in :data:`passwords`; a password is at least :data:`MIN_LENGTH` characters and is
set by an administrator (``streethub admin set-password``) or by the person. A sign-in
checks it in constant time; an unknown person costs the same hash as a known one (no
timing tells which ids exist). Setting a password is audited (``auth.password_set``,
never the password); sign-ins are audited by :mod:`share_api.portal.web`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

import sqlalchemy as sa

from share_api.db import metadata, utc_now
from share_api.principals import PrincipalError, get_user

if TYPE_CHECKING:
    from share_api.service import Service

MIN_LENGTH = 12
N, R, P = 2**14, 8, 1
SALT_BYTES = 16

passwords = sa.Table(
    "passwords",
    metadata,
    sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("scrypt", sa.Text, nullable=False),  # n$r$p$salt$hash (base64)
    sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("set_by", sa.Text, nullable=False),
)

# the hash a sign-in of an unknown person is checked against (same cost, never matches)
_DUMMY = f"{N}${R}${P}${base64.b64encode(b'0' * SALT_BYTES).decode()}$"


def _hash(password: str, salt: bytes, n: int = N, r: int = R, p: int = P) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)


def _encode(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _hash(password, salt)
    return f"{N}${R}${P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _matches(password: str, stored: str) -> bool:
    n, r, p, salt, digest = stored.split("$")
    got = _hash(password, base64.b64decode(salt), int(n), int(r), int(p))
    return hmac.compare_digest(got, base64.b64decode(digest)) and bool(digest)


def set_password(service: Service, user_id: str, password: str, *, actor: str) -> None:
    """Set ``user_id``'s portal password (audited; 422 when too short, 404 no person)."""
    if len(password) < MIN_LENGTH:
        raise PrincipalError(422, f"password: at least {MIN_LENGTH} characters")
    if get_user(service, user_id) is None:
        raise PrincipalError(404, "no such person")
    row = {"scrypt": _encode(password), "set_at": utc_now(), "set_by": actor}
    with service.engine.begin() as con:
        done = con.execute(passwords.update().where(passwords.c.user_id == user_id).values(**row))
        if not done.rowcount:
            con.execute(passwords.insert().values(user_id=user_id, **row))
    service.audit.record("auth.password_set", actor, user=user_id)


def check_password(service: Service, user_id: str, password: str) -> bool:
    """Whether ``password`` is ``user_id``'s (always one scrypt, known person or not)."""
    with service.engine.connect() as con:
        stored = con.execute(
            sa.select(passwords.c.scrypt).where(passwords.c.user_id == user_id)
        ).scalar()
    return _matches(password, stored or _DUMMY)
