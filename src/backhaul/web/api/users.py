"""``/api/v1/users``: users and their roles (admin)."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic import Field

from backhaul.errors import UserError
from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import not_found
from backhaul.web.api.base import resource_router
from backhaul.web.auth import Admin
from backhaul.web.auth import Role
from backhaul.web.deps import UsersDep

router = resource_router()


class UserOut(BaseModel):
    id: int
    username: str
    role: Role


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=1024)
    role: Role = Role.VIEWER


class RoleIn(BaseModel):
    role: Role


@router.get("/users", response_model=list[UserOut], responses=ERRORS)
def list_users(_: Admin, users: UsersDep) -> list[UserOut]:
    """Every user and role."""
    return [UserOut(id=u.id, username=u.username, role=u.role) for u in users.all()]


@router.post("/users", status_code=201, response_model=UserOut, responses=ERRORS)
def add_user(body: UserIn, admin: Admin, users: UsersDep) -> UserOut:
    """Create a user (admin)."""
    if users.by_name(body.username) is not None:
        raise HTTPException(409, f"user `{body.username}` already exists")
    try:
        user = users.add(body.username, body.password, body.role)
    except UserError as exc:
        raise HTTPException(400, exc.message) from None
    users.audit(admin.username, "user_add", user.username, {"role": user.role.value})
    return UserOut(id=user.id, username=user.username, role=user.role)


@router.patch("/users/{username}", response_model=UserOut, responses=ERRORS)
def set_role(username: str, body: RoleIn, admin: Admin, users: UsersDep) -> UserOut:
    """Change a user's role (admin)."""
    if not users.set_role(username, body.role):
        raise not_found(f"user `{username}`")
    users.audit(admin.username, "user_role", username, {"role": body.role.value})
    user = users.by_name(username)
    if user is None:
        raise not_found(f"user `{username}`")
    return UserOut(id=user.id, username=user.username, role=user.role)


@router.delete("/users/{username}", status_code=204, responses=ERRORS)
def remove_user(username: str, admin: Admin, users: UsersDep) -> Response:
    """Delete a user and their tokens (admin)."""
    if not users.remove(username):
        raise not_found(f"user `{username}`")
    users.audit(admin.username, "user_remove", username)
    return Response(status_code=204)


__all__ = ["RoleIn", "UserIn", "UserOut", "router"]
