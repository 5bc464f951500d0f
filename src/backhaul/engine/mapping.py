"""Mappings compiled to SQL (vectorised in DuckDB) plus the few per-row templates.

Renames, casts and static values become one DuckDB projection; only Liquid templates are
rendered per row, from a template compiled once per sync.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from liquid import Environment
from liquid.exceptions import LiquidError

from backhaul.config.models import (
    Cast,
    ColumnMapping,
    Mapping,
    StaticMapping,
    SyncConfig,
    TemplateMapping,
)
from backhaul.errors import ConfigError

CAST_TYPES = {
    Cast.STRING: "VARCHAR",
    Cast.INT: "BIGINT",
    Cast.FLOAT: "DOUBLE",
    Cast.BOOL: "BOOLEAN",
    Cast.DATE: "DATE",
    Cast.TIMESTAMP: "TIMESTAMP",
    Cast.JSON: "JSON",
}


def quote(name: str) -> str:
    """Quote a SQL identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A SQL literal for a static mapping value."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def cast_expr(source: str, cast: Cast | None) -> str:
    """A DuckDB expression casting ``source`` (already SQL) to the mapping's type."""
    if cast is None:
        return source
    if cast is Cast.JSON:
        # Text is parsed as JSON; anything else is serialised to JSON.
        return f"(CASE WHEN typeof({source}) = 'VARCHAR' THEN TRY_CAST({source} AS JSON) ELSE to_json({source}) END)"
    return f"TRY_CAST({source} AS {CAST_TYPES[cast]})"


@dataclass(frozen=True)
class CompiledTemplate:
    field: str
    source: str
    variables: tuple[str, ...]
    cast: Cast | None
    template: Any  # liquid BoundTemplate


class Mapper:
    """One sync's mappings, compiled once.

    Output columns are named ``f0``, ``f1``… in SQL (field names may hold dots and any
    character) and renamed to their field names when a batch is built.
    """

    def __init__(self, sync: SyncConfig, columns: Iterable[str]) -> None:
        self.sync = sync
        self.columns = list(columns)
        self.mappings: list[Mapping] = list(sync.mappings)
        self.fields = [m.field for m in self.mappings]
        self.env = Environment()
        self.templates: dict[int, CompiledTemplate] = {}
        for i, m in enumerate(self.mappings):
            if isinstance(m, TemplateMapping):
                try:
                    bound = self.env.from_string(m.template)
                except LiquidError as exc:
                    raise ConfigError(
                        f"template for `{m.field}` does not parse: {exc}",
                        key=f"mappings.{i}.template",
                    ) from None
                roots = sorted(bound.analyze().globals)
                known = [v for v in roots if v in self.columns]
                self.templates[i] = CompiledTemplate(
                    m.field, m.template, tuple(known), m.cast, bound
                )

    @property
    def skip_null_fields(self) -> frozenset[str]:
        default = self.sync.nulls
        return frozenset(m.field for m in self.mappings if (m.nulls or default) == "skip")

    @property
    def json_fields(self) -> frozenset[str]:
        return frozenset(
            m.field
            for m in self.mappings
            if isinstance(m, ColumnMapping | TemplateMapping) and m.cast is Cast.JSON
        )

    def template_columns(self) -> list[str]:
        cols: list[str] = []
        for t in self.templates.values():
            cols += [c for c in t.variables if c not in cols]
        return cols

    def value_exprs(self, alias: str = "m") -> list[str]:
        """SQL for each mapped field's value (templates give NULL; they render later)."""
        out = []
        for m in self.mappings:
            if isinstance(m, ColumnMapping):
                out.append(cast_expr(f"{alias}.{quote(m.column)}", m.cast))
            elif isinstance(m, StaticMapping):
                out.append(literal(m.value))
            else:
                out.append("NULL")
        return out

    def fingerprint_expr(self, alias: str = "m") -> str:
        """The row fingerprint: an XOR of one hash per mapped field.

        A field whose value is null contributes nothing, so mapping a new column resends only
        the rows where it has a value, and a change of any mapped value, cast, static value or
        template changes the fingerprint. Unmapped columns never take part.
        """
        terms: list[str] = []
        for i, (m, value) in enumerate(zip(self.mappings, self.value_exprs(alias), strict=True)):
            name = literal(m.field)
            if isinstance(m, TemplateMapping):
                tpl = self.templates[i]
                args = ", ".join(
                    [name, literal(m.template)] + [f"{alias}.{quote(c)}" for c in tpl.variables]
                )
                terms.append(f"hash({args})")
            else:
                terms.append(
                    f"(CASE WHEN {value} IS NULL THEN 0::UBIGINT ELSE hash({name}, {value}) END)"
                )
        expr = terms[0]
        for term in terms[1:]:
            expr = f"xor({expr}, {term})"
        return expr

    def cast_failure_expr(self, alias: str = "m") -> str | None:
        """SQL giving a reason text when a cast fails for the row, else NULL."""
        cases = []
        for m in self.mappings:
            if isinstance(m, ColumnMapping) and m.cast is not None and m.cast is not Cast.STRING:
                col = f"{alias}.{quote(m.column)}"
                reason = (
                    f"'cannot cast column `{m.column}` value ' || "
                    f"left(CAST({col} AS VARCHAR), 80) || ' to {m.cast.value}'"
                )
                cases.append(
                    f"WHEN {col} IS NOT NULL AND {cast_expr(col, m.cast)} IS NULL THEN {reason}"
                )
        if not cases:
            return None
        return "CASE " + " ".join(cases) + " END"

    def render(self, table: pa.Table, template_cols: list[str]) -> tuple[pa.Table, dict[int, str]]:
        """Fill template fields of a batch; return the table and per-row template errors.

        ``table`` has columns ``f0..fn`` plus ``t_<col>`` inputs for templates.
        """
        errors: dict[int, str] = {}
        if not self.templates:
            return table, errors
        inputs = {c: table.column(f"t_{c}").to_pylist() for c in template_cols}
        n = table.num_rows
        for i, tpl in self.templates.items():
            values: list[Any] = []
            for row in range(n):
                scope = {c: inputs[c][row] for c in tpl.variables}
                try:
                    text = tpl.template.render(**scope)
                    values.append(_cast_text(text, tpl.cast))
                except (LiquidError, ValueError) as exc:
                    first = (str(exc).strip().splitlines() or ["unknown error"])[0]
                    errors.setdefault(row, f"template for `{tpl.field}` failed: {first}")
                    values.append(None)
            col = table.schema.get_field_index(f"f{i}")
            arr = (
                pa.array(values) if any(v is not None for v in values) else pa.nulls(n, pa.string())
            )
            table = table.set_column(col, f"f{i}", arr)
        return table, errors


def _cast_text(text: str, cast: Cast | None) -> Any:
    if cast is None or cast is Cast.STRING:
        return text
    if text == "":
        return None
    if cast is Cast.INT:
        return int(float(text)) if "." in text else int(text)
    if cast is Cast.FLOAT:
        return float(text)
    if cast is Cast.BOOL:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "t"):
            return True
        if lowered in ("false", "0", "no", "f"):
            return False
        raise ValueError(f"`{text}` is not a boolean")
    if cast is Cast.JSON:
        return json.dumps(json.loads(text))
    return text
