"""``GET /api/v1/me``: who is signed in."""

from __future__ import annotations

from fastapi import Request
from pydantic import BaseModel
from pydantic import Field

from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import resource_router
from backhaul.web.auth import CurrentUser
from backhaul.web.auth import Role
from backhaul.web.auth import csrf_token

router = resource_router()


class MeOut(BaseModel):
    username: str
    role: Role
    csrf_token: str | None = Field(None, description="For cookie sessions: send as X-CSRF-Token.")


@router.get("/me", response_model=MeOut, responses=ERRORS)
def me(request: Request, user: CurrentUser) -> MeOut:
    """Who is signed in (and the CSRF token of a cookie session)."""
    token = None if "authorization" in request.headers else csrf_token(request)
    return MeOut(username=user.username, role=user.role, csrf_token=token)


__all__ = ["MeOut", "router"]
