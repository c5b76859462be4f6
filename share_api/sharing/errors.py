"""The protocol's error: an HTTP status and an ``errorCode`` the Delta Sharing clients know,
with a message naming fields and positions, never a value or a secret."""

from __future__ import annotations

# the reference server's codes (../shared/DELTA_SHARING.md §1)
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
INVALID = "INVALID_PARAMETER_VALUE"
MALFORMED = "MALFORMED_REQUEST"
UNSUPPORTED = "UNSUPPORTED_OPERATION"
UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "PERMISSION_DENIED"
INTERNAL = "INTERNAL_ERROR"

_CODE_OF_STATUS = {400: INVALID, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND}


class SharingError(Exception):
    """Raised anywhere in :mod:`share_api.sharing`; the sub-app answers it as
    ``{"errorCode": code, "message": message}`` with ``status``. A deterministic failure is
    a 4xx: the official client retries a 5xx for about 100 s."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODE_OF_STATUS.get(status, INTERNAL if status >= 500 else INVALID)

    def body(self) -> dict[str, str]:
        return {"errorCode": self.code, "message": self.message}
