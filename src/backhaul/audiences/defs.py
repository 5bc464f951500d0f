"""A loaded audience schema and a loaded audience, with the files they came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.catalog import Catalog
from backhaul.audiences.schema import AudienceSchemaConfig
from backhaul.config.project import Positions


@dataclass(frozen=True)
class AudienceSchemaDef:
    """``audience_schemas/NAME.yml``, resolved against the project's models.

    Attributes:
        source: The source every model of the schema reads (audiences run in one warehouse).
        dialect: The sqlglot dialect of that source.
    """

    name: str
    config: AudienceSchemaConfig
    catalog: Catalog
    source: str
    dialect: str
    path: Path
    positions: Positions


@dataclass(frozen=True)
class AudienceDef:
    """``audiences/NAME.yml``. Its model (``project.models[name]``) is compiled from it."""

    name: str
    config: AudienceConfig
    path: Path
    positions: Positions

    @property
    def schema(self) -> str:
        return self.config.schema_


__all__ = ["AudienceDef", "AudienceSchemaDef"]
