"""``/api/v1/audit``: the audit log, newest first (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from backhaul.web.api.base import ERRORS, Limit, Offset, resource_router
from backhaul.web.auth import Admin
from backhaul.web.deps import UsersDep
from backhaul.web.users import AuditEntry

router = resource_router()


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str | None
    action: str
    target: str | None
    details: dict[str, Any]
    ip: str | None


def _audit_out(a: AuditEntry) -> AuditOut:
    return AuditOut(
        id=a.id,
        at=a.at,
        actor=a.actor,
        action=a.action,
        target=a.target,
        details=a.details,
        ip=a.ip,
    )


@router.get("/audit", response_model=list[AuditOut], responses=ERRORS)
def list_audit(_: Admin, users: UsersDep, limit: Limit = 100, offset: Offset = 0) -> list[AuditOut]:
    """The audit log, newest first (admin)."""
    return [_audit_out(a) for a in users.audit_entries(limit=limit, offset=offset)]


__all__ = ["AuditOut", "router"]
