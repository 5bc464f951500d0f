"""``/api/v1/models``: models with their SQL, columns and a masked preview."""

from __future__ import annotations

from typing import Annotated
from typing import Any

from fastapi import HTTPException
from fastapi import Query
from pydantic import BaseModel
from pydantic import Field

from backhaul import pyvalues
from backhaul.config.project import ModelDef
from backhaul.config.project import Project
from backhaul.errors import SourceError
from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import MASK
from backhaul.web.api.base import jsonable
from backhaul.web.api.base import not_found
from backhaul.web.api.base import resource_router
from backhaul.web.deps import ProjectDep

MAX_PREVIEW = 100

router = resource_router()


class ModelSummary(BaseModel):
    name: str
    source: str
    primary_key: list[str]
    description: str | None
    tags: list[str]
    audience_schema: str | None = Field(
        None, description="The audience schema, when the model is an audience."
    )


class ColumnOut(BaseModel):
    name: str
    type: str


class ModelOut(ModelSummary):
    sql: str
    columns: list[ColumnOut]
    preview: list[dict[str, Any]] | None = None


def model_summary(m: ModelDef, project: Project) -> ModelSummary:
    c = m.config
    audience = project.audiences.get(m.audience) if m.audience else None
    return ModelSummary(
        name=m.name,
        source=c.source,
        primary_key=c.primary_key,
        description=c.description,
        tags=c.tags,
        audience_schema=audience.schema if audience is not None else None,
    )


def masked(model: ModelDef, column: str, value: Any) -> Any:
    """A preview value, masked when an audience schema marks its column personal."""
    return MASK if value is not None and column in model.personal else value


def describe_model(project: Project, model: ModelDef, preview: int) -> ModelOut:
    """A model's SQL, columns and (optionally) its first ``preview`` rows."""
    from backhaul.engine.workspace import open_source

    source = open_source(project, model)
    try:
        columns = [ColumnOut(name=k, type=v) for k, v in source.columns(model.sql).items()]
        rows = None
        if preview:
            reader = source.stream(f"SELECT * FROM ({model.sql}) AS m LIMIT {int(preview)}")
            rows = [
                {k: jsonable(masked(model, k, v)) for k, v in row.items()}
                for row in pyvalues.rows(reader.read_all())
            ]
    finally:
        source.close()
    summary = model_summary(model, project)
    return ModelOut(**summary.model_dump(), sql=model.sql, columns=columns, preview=rows)


@router.get("/models", response_model=list[ModelSummary], responses=ERRORS)
def list_models(project: ProjectDep) -> list[ModelSummary]:
    """Every model with its source and primary key."""
    return [model_summary(m, project) for _, m in sorted(project.models.items())]


@router.get("/models/{name}", response_model=ModelOut, responses=ERRORS)
def get_model(
    name: str,
    project: ProjectDep,
    preview: Annotated[int, Query(ge=0, le=MAX_PREVIEW, description="Rows to preview.")] = 0,
) -> ModelOut:
    """A model's SQL, columns and types, and optionally a preview of its first rows."""
    model = project.models.get(name)
    if model is None:
        raise not_found(f"model `{name}`")
    try:
        return describe_model(project, model, preview)
    except SourceError as exc:
        raise HTTPException(503, f"the warehouse could not run the model: {exc.message}") from None


__all__ = ["ColumnOut", "ModelOut", "ModelSummary", "describe_model", "masked", "router"]
