"""Mappings compiled to SQL (vectorised in DuckDB) plus the few per-row templates.

Renames, casts and static values become one DuckDB projection; only Liquid templates are
rendered per row, from a template compiled once per sync.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from collections.abc import Mapping as TypeMap
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from liquid.exceptions import LiquidError

from backhaul import pyvalues
from backhaul.config.models import Cast
from backhaul.config.models import ColumnMapping
from backhaul.config.models import Mapping
from backhaul.config.models import NonFinite
from backhaul.config.models import StaticMapping
from backhaul.config.models import SyncConfig
from backhaul.config.models import TemplateMapping
from backhaul.engine.finite import FinitePolicy
from backhaul.engine.finite import float_reason_sql
from backhaul.engine.finite import is_float_type
from backhaul.engine.finite import is_temporal_type
from backhaul.engine.finite import may_nest_floats
from backhaul.engine.finite import nested_check_sql
from backhaul.engine.finite import nested_reason
from backhaul.engine.finite import temporal_case_sql
from backhaul.errors import ConfigError
from backhaul.errors import first_line
from backhaul.templates import liquid_environment

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
    if isinstance(value, float) and value == 0 and math.copysign(1.0, value) < 0:
        return "CAST('-0.0' AS DOUBLE)"  # `-0.0` alone is a DECIMAL, which has no sign of zero
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


# DuckDB types Arrow cannot carry whole to a driver or a JSON record: an INTERVAL arrives
# as a (months, days, nanoseconds) triple no driver takes, a TIME WITH TIME ZONE without
# its offset, a BIT string as padded bytes. They travel as DuckDB's text ('3 days',
# '10:00:00+02', '101').
AS_TEXT_TYPES = frozenset({"INTERVAL", "TIME WITH TIME ZONE", "TIMETZ", "BIT", "BITSTRING"})


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

    Args:
        sync: The sync's config.
        columns: The model's column names.
        types: The model's DuckDB column types, by name (needed to screen floats).
        finite: What to do with NaN and infinities (default: rows holding them are invalid).
    """

    def __init__(
        self,
        sync: SyncConfig,
        columns: Iterable[str],
        *,
        types: TypeMap[str, str] | None = None,
        finite: FinitePolicy | None = None,
    ) -> None:
        self.sync = sync
        self.columns = list(columns)
        self.types = dict(types or {})
        self.finite = finite or FinitePolicy()
        self.mappings: list[Mapping] = list(sync.mappings)
        self.fields = [m.field for m in self.mappings]
        self.env = liquid_environment()  # the environment `validate` checks templates against
        self.templates: dict[int, CompiledTemplate] = {}
        for i, m in enumerate(self.mappings):
            if isinstance(m, TemplateMapping):
                try:
                    bound = self.env.from_string(m.template)
                except LiquidError as exc:
                    raise ConfigError(
                        f"the template for `{m.field}` does not parse: {first_line(exc)}",
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

    def value_type(self, i: int) -> str | None:
        """The DuckDB type of mapping ``i``'s value when known before rendering, else None."""
        m = self.mappings[i]
        if not isinstance(m, ColumnMapping):
            return None
        if m.cast is None:
            return self.types.get(m.column)
        return CAST_TYPES[m.cast]

    def source_of(self, i: int) -> str:
        """Where mapping ``i``'s value comes from, for messages: ``column `x```…"""
        m = self.mappings[i]
        if isinstance(m, ColumnMapping):
            return f"column `{m.column}`"
        if isinstance(m, TemplateMapping):
            return f"the template for `{m.field}`"
        return f"the static value of `{m.field}`"

    def sent_columns(self) -> list[str]:
        """The model columns whose values reach the destination: mapped ones and the ones
        templates read."""
        mapped = [m.column for m in self.mappings if isinstance(m, ColumnMapping)]
        return list(dict.fromkeys(mapped + self.template_columns()))

    def template_columns(self) -> list[str]:
        cols: list[str] = []
        for t in self.templates.values():
            cols += [c for c in t.variables if c not in cols]
        return cols

    def template_input_exprs(self, alias: str = "m") -> list[str]:
        """SQL for each template variable's column, named ``t_<column>``: what a template
        reads. A column of a type Arrow does not carry whole (:data:`AS_TEXT_TYPES`) is
        DuckDB's text of it, as when it is mapped straight to a field."""
        out = []
        for c in self.template_columns():
            value = f"{alias}.{quote(c)}"
            if self.types.get(c, "").upper() in AS_TEXT_TYPES:
                value = f"CAST({value} AS VARCHAR)"
            out.append(f"{value} AS t_{c}")
        return out

    def value_exprs(self, alias: str = "m") -> list[str]:
        """SQL for each mapped field's value (templates give NULL; they render later).

        A column of a type Arrow does not carry whole (:data:`AS_TEXT_TYPES`) goes as
        DuckDB's text of it, to every destination."""
        out = []
        for m in self.mappings:
            if isinstance(m, ColumnMapping):
                value = cast_expr(f"{alias}.{quote(m.column)}", m.cast)
                kind = self.types.get(m.column, "").upper()
                if m.cast is None and kind in AS_TEXT_TYPES:
                    value = f"CAST({value} AS VARCHAR)"
                out.append(value)
            elif isinstance(m, StaticMapping):
                out.append(literal(m.value))
            else:
                out.append("NULL")
        return out

    def fingerprint_expr(self, alias: str = "m") -> str:
        """The row fingerprint: an XOR of one hash per mapped field.

        A field whose value is null contributes nothing, so mapping a new column resends only
        the rows where it has a value, and a change of any mapped value, cast, static value or
        template changes the fingerprint. Unmapped columns never take part. DuckDB hashes
        -0.0 like 0.0, so a float's sign of zero is hashed apart; a non-finite float is
        hashed with what the policy does with it, so changing ``non_finite`` resends it.
        """
        terms: list[str] = []
        for i, (m, value) in enumerate(zip(self.mappings, self.value_exprs(alias), strict=True)):
            name = literal(m.field)
            kind = self.value_type(i)
            if isinstance(m, TemplateMapping):
                tpl = self.templates[i]
                args = ", ".join(
                    [name, literal(m.template)] + [f"{alias}.{quote(c)}" for c in tpl.variables]
                )
                terms.append(f"hash({args})")
            elif kind is not None and is_float_type(kind):
                tag = literal(self.finite.tag)
                terms.append(
                    f"(CASE WHEN {value} IS NULL THEN 0::UBIGINT "
                    f"WHEN {value} = 0 AND signbit({value}) THEN hash({name}, '-0') "
                    f"WHEN NOT isfinite({value}) THEN hash({name}, CAST({value} AS VARCHAR), {tag}) "
                    f"ELSE hash({name}, {value}) END)"
                )
            else:
                terms.append(
                    f"(CASE WHEN {value} IS NULL THEN 0::UBIGINT ELSE hash({name}, {value}) END)"
                )
        expr = terms[0]
        for term in terms[1:]:
            expr = f"xor({expr}, {term})"
        return expr

    def cast_failure_expr(self, alias: str = "m") -> str | None:
        """SQL giving a reason text when a row cannot be sent as it is, else NULL.

        A cast that fails, or a mapped column holding NaN or an infinity that the sync's
        ``non_finite`` policy does not let through.
        """
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
        cases += self._non_finite_cases(alias)
        cases += self._temporal_cases(alias)
        if not cases:
            return None
        return "CASE " + " ".join(cases) + " END"

    def _temporal_cases(self, alias: str) -> list[str]:
        """CASE branches for dates and timestamps that cannot become Python values: those
        of mapped columns unless the destination loads them in DuckDB, and those a template
        reads, whatever the destination (templates render in Python)."""
        cases: list[str] = []
        seen: set[str] = set()
        for i, m in enumerate(self.mappings):
            kind = self.value_type(i)
            if self.finite.keep_temporals or not isinstance(m, ColumnMapping) or kind is None:
                continue
            if is_temporal_type(kind):
                value = cast_expr(f"{alias}.{quote(m.column)}", m.cast)
                cases.append(temporal_case_sql(value, self.source_of(i)))
        for tpl in self.templates.values():
            for column in tpl.variables:
                kind = self.types.get(column)
                if column in seen or kind is None or not is_temporal_type(kind):
                    continue
                seen.add(column)
                what = f"column `{column}` (read by a template)"
                cases.append(temporal_case_sql(f"{alias}.{quote(column)}", what))
        return cases

    def _non_finite_cases(self, alias: str) -> list[str]:
        """CASE branches for model columns holding values the policy does not let through."""
        policy = self.finite
        if policy.mode is not NonFinite.INVALID:
            return []
        cases = []
        for i, m in enumerate(self.mappings):
            kind = self.value_type(i)
            if not isinstance(m, ColumnMapping) or kind is None:
                continue
            value = cast_expr(f"{alias}.{quote(m.column)}", m.cast)
            what = self.source_of(i)
            if is_float_type(kind) and not policy.keep_floats:
                reason = float_reason_sql(value, what, policy)
                cases.append(f"WHEN {value} IS NOT NULL AND NOT isfinite({value}) THEN {reason}")
            elif may_nest_floats(kind):
                reason = literal(nested_reason(what, policy))
                cases.append(
                    f"WHEN {value} IS NOT NULL AND {nested_check_sql(value)} THEN {reason}"
                )
        return cases

    def render(self, table: pa.Table, template_cols: list[str]) -> tuple[pa.Table, dict[int, str]]:
        """Fill template fields of a batch; return the table and per-row template errors.

        ``table`` has columns ``f0..fn`` plus ``t_<col>`` inputs for templates.
        """
        errors: dict[int, str] = {}
        if not self.templates:
            return table, errors
        inputs = {c: pyvalues.values(table.column(f"t_{c}")) for c in template_cols}
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
