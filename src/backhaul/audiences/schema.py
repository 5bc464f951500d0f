"""The audience schema the data team declares: ``audience_schemas/<name>.yml``.

A schema names one parent model (one row per person or account, with its key), the related
models joined to it and the event models that point at it, and which columns the builder
offers and which hold personal data::

    parent:
      model: users
      key: user_id
      columns:
        email: {type: string, personal: true}
        plan: string
        signup_at: timestamp
    related:
      accounts: {model: accounts, cardinality: "N:1", parent_key: account_id, key: id}
    events:
      page_views: {model: page_views, key: user_id, timestamp: viewed_at}
"""

from __future__ import annotations

from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import model_validator

from backhaul.audiences.types import ColumnType


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnSpec(Strict):
    """One column the builder offers. Written as a mapping, a type name, or nothing."""

    type: ColumnType | None = Field(
        None, description="string, number, boolean, date or timestamp; default: the warehouse's."
    )
    personal: bool = Field(False, description="Personal data: masked in samples and previews.")
    label: str | None = None
    description: str | None = None


def _columns(value: Any) -> Any:
    """``{plan: string, country: null}`` shorthand: a type name or nothing per column."""
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for name, spec in value.items():
        if spec is None:
            out[name] = {}
        elif isinstance(spec, str):
            out[name] = {"type": spec}
        else:
            out[name] = spec
    return out


# Columns offered by one model; the shorthand is read before the mapping is checked.
Columns = Annotated[dict[str, ColumnSpec], BeforeValidator(_columns)]


class ParentSpec(Strict):
    """The model with one row per person (or account)."""

    model: str = Field(min_length=1)
    key: str | None = Field(None, description="Its key column; default: the primary key.")
    columns: Columns = Field(
        default_factory=dict, description="Columns offered; default: every column."
    )


class RelatedSpec(Strict):
    """A model joined to the parent by a key."""

    model: str = Field(min_length=1)
    cardinality: Literal["1:1", "1:N", "N:1"] = Field(
        description="Parent rows to related rows: 1:1, 1:N (one person, many rows) or N:1."
    )
    key: str = Field(min_length=1, description="The related model's join column.")
    parent_key: str | None = Field(
        None, description="The parent's join column; default: the parent key."
    )
    columns: Columns = Field(default_factory=dict)


class EventSpec(Strict):
    """A model of things people did: one row per event, with when and who."""

    model: str = Field(min_length=1)
    key: str = Field(min_length=1, description="The column holding the parent's key.")
    timestamp: str = Field(min_length=1, description="The column holding when it happened.")
    columns: Columns = Field(default_factory=dict)


class AudienceSchemaConfig(Strict):
    """``audience_schemas/NAME.yml``: what audiences of this schema can filter on."""

    description: str | None = None
    parent: ParentSpec
    related: dict[str, RelatedSpec] = Field(default_factory=dict)
    events: dict[str, EventSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct(self) -> AudienceSchemaConfig:
        both = sorted(set(self.related) & set(self.events))
        if both:
            raise ValueError(
                f"`{both[0]}` names both a related model and an event model; rename one"
            )
        return self


__all__ = ["AudienceSchemaConfig", "ColumnSpec", "EventSpec", "ParentSpec", "RelatedSpec"]
