"""``/api/v1/audit``: the audit log, newest first (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import Limit
from backhaul.web.api.base import Offset
from backhaul.web.api.base import resource_router
from backhaul.web.auth import Admin
from backhaul.web.deps import UsersDep

router = resource_router()


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str | None
    action: str
    target: str | None
    details: dict[str, Any]
    ip: str | None


@router.get("/audit", response_model=list[AuditOut], responses=ERRORS)
def list_audit(_: Admin, users: UsersDep, limit: Limit = 100, offset: Offset = 0) -> list[AuditOut]:
    """The audit log, newest first (admin)."""
    entries = users.audit_entries(limit=limit, offset=offset)
    return [AuditOut.model_validate(a, from_attributes=True) for a in entries]


__all__ = ["AuditOut", "router"]
