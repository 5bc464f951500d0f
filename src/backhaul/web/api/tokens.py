"""``/api/v1/tokens``: API tokens (admin); a new token is shown once, then only its prefix."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from fastapi import HTTPException
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic import Field

from backhaul.errors import UserError
from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import not_found
from backhaul.web.api.base import resource_router
from backhaul.web.auth import Admin
from backhaul.web.deps import UsersDep

router = resource_router()


class TokenOut(BaseModel):
    id: int
    username: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class TokenIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=128)


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once: only a hash is stored.")


@router.get("/tokens", response_model=list[TokenOut], responses=ERRORS)
def list_tokens(_: Admin, users: UsersDep) -> list[TokenOut]:
    """Every API token (never the token itself)."""
    return [TokenOut.model_validate(t, from_attributes=True) for t in users.tokens()]


@router.post("/tokens", status_code=201, response_model=TokenCreated, responses=ERRORS)
def create_token(body: TokenIn, admin: Admin, users: UsersDep) -> TokenCreated:
    """Create an API token for a user (admin); the token is in this answer only."""
    try:
        token, info = users.create_token(body.username, body.name)
    except UserError as exc:
        raise HTTPException(
            404 if users.by_name(body.username) is None else 400, exc.message
        ) from None
    users.audit(
        admin.username, "token_create", body.username, {"token_id": info.id, "name": info.name}
    )
    return TokenCreated(**asdict(info), token=token)


@router.delete("/tokens/{token_id}", status_code=204, responses=ERRORS)
def revoke_token(token_id: int, admin: Admin, users: UsersDep) -> Response:
    """Revoke an API token (admin)."""
    if not users.revoke_token(token_id):
        raise not_found(f"active token {token_id}")
    users.audit(admin.username, "token_revoke", str(token_id))
    return Response(status_code=204)


__all__ = ["TokenCreated", "TokenIn", "TokenOut", "router"]
