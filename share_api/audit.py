"""share_api.audit: see share_api/README.md (being built)."""

from __future__ import annotations

from typing import Any


class Auditor:
    """Placeholder until the AUDIT engineer's group-committing auditor lands: appends
    straight to the home's audit log (one fsync a record)."""

    def __init__(self, log) -> None:
        self.log = log

    @classmethod
    def for_service(cls, service) -> Auditor:
        from masking.audit import AuditLog

        return cls(AuditLog.from_settings(service.settings, service.keyring))

    def record(self, action: str, actor: str, **details: Any) -> dict[str, Any]:
        return self.log.append(action, actor, **details)

    def close(self) -> None:
        return None
