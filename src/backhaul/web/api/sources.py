"""``/api/v1/sources``: the project's warehouses."""

from __future__ import annotations

from pydantic import BaseModel

from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import resource_router
from backhaul.web.deps import ProjectDep

router = resource_router()


class SourceOut(BaseModel):
    name: str
    type: str
    description: str | None


@router.get("/sources", response_model=list[SourceOut], responses=ERRORS)
def list_sources(project: ProjectDep) -> list[SourceOut]:
    """The project's warehouses."""
    return [
        SourceOut(
            name=s.name, type=str(s.config.type), description=getattr(s.config, "description", None)
        )
        for s in sorted(project.sources.values(), key=lambda s: s.name)
    ]


__all__ = ["SourceOut", "router"]
