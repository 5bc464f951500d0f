"""Typed reads of the objects the web app keeps on ``app.state`` (set up in ``web/app.py``)."""

from __future__ import annotations

from typing import Generic
from typing import TypeVar

from fastapi import Request

T = TypeVar("T")


class FromApp(Generic[T]):
    """One object on ``app.state``, read from a request: ``users = get_users(request)``.

    Annotate the instance with its type (``get_users: FromApp[UserStore] = FromApp("users")``):
    the annotation is never evaluated, so the type may be one imported only for checking.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, request: Request) -> T:
        value: T = getattr(request.app.state, self.name)
        return value

    async def dependency(self, request: Request) -> T:
        """The same read as a FastAPI dependency: ``async``, because FastAPI runs a plain
        ``def`` dependency in a worker thread, a hop that costs more than the read."""
        return self(request)
