"""The ``non_finite`` policy: what a sync sends for NaN, +Infinity and -Infinity.

JSON has no form for these numbers, and most destinations cannot store them. By default a
row holding one in a mapped field is invalid (never sent) with a reason naming the column;
``non_finite: null`` sends null instead and ``non_finite: string`` sends the text ``"NaN"``,
``"Infinity"`` or ``"-Infinity"`` (destinations that send records as JSON only). A
destination whose float columns store them as they are (Postgres, DuckDB) gets top-level
float values unchanged unless the sync sets the option; values nested in lists, objects and
``json`` fields travel as JSON everywhere and always follow the policy.

Values straight from model columns are screened in the planner's first pass (SQL, next to
the cast failures); values that appear later (templates, ``json`` casts of text) are
screened on each batch's Arrow table by :func:`screen`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from backhaul import floats
from backhaul.config.models import NonFinite
from backhaul.config.project import SyncDef
from backhaul.destinations.base import Capabilities
from backhaul.errors import ConfigError

if TYPE_CHECKING:
    from backhaul.engine.mapping import Mapper

FLOAT_TYPES = frozenset({"DOUBLE", "FLOAT", "REAL", "FLOAT4", "FLOAT8"})
# JSON text with its string literals removed still holding a NaN or infinity token.
_STRINGS_RE = r'"([^"\\]|\\.)*"'
_TOKEN_RE = r"NaN|Infinity"


@dataclass(frozen=True, slots=True)
class FinitePolicy:
    """The effective policy of one run.

    Attributes:
        mode: What happens to a non-finite value that is not kept.
        keep_floats: Top-level float fields go as they are (the destination stores them).
        json: The destination sends records as JSON (for messages).
        keep_temporals: Mapped dates and timestamps go as they are, infinite or beyond
            the years 1 to 9999 (the destination loads them inside DuckDB).
    """

    mode: NonFinite = NonFinite.INVALID
    keep_floats: bool = False
    json: bool = True
    keep_temporals: bool = False

    @property
    def tag(self) -> str:
        """What happens to a top-level non-finite float, folded into the fingerprint so a
        change of policy resends the rows it affects."""
        return "keep" if self.keep_floats else self.mode.value

    def hint(self) -> str:
        """What the user can do about an invalid row."""
        if self.json:
            return (
                "JSON has no such number; set `non_finite: null` or `non_finite: string` "
                "in the sync to send it instead"
            )
        return "the destination cannot store it; set `non_finite: null` in the sync to send null"


def policy_for(sync: SyncDef, caps: Capabilities) -> FinitePolicy:
    """The policy of ``sync`` for a destination with ``caps``.

    Raises:
        ConfigError: ``non_finite: string`` for a destination that does not send JSON.
    """
    chosen = sync.config.non_finite
    if chosen is NonFinite.STRING and not caps.json_records:
        raise ConfigError(
            "`non_finite: string` needs a destination that sends records as JSON; this "
            "one stores typed columns: use `invalid` or `null`",
            file=str(sync.positions.file),
            line=sync.positions.line("non_finite"),
            key="non_finite",
        )
    keep = chosen is None and caps.non_finite_floats
    return FinitePolicy(chosen or NonFinite.INVALID, keep, caps.json_records, caps.any_temporal)


def is_float_type(duck_type: str) -> bool:
    """Whether a DuckDB type name is a top-level floating-point type."""
    return duck_type.upper() in FLOAT_TYPES


def may_nest_floats(duck_type: str) -> bool:
    """Whether a DuckDB type can hold a float somewhere inside (lists, structs, maps, JSON)."""
    upper = duck_type.upper()
    if upper == "JSON":
        return True
    nested = upper.endswith("]") or upper.startswith(("STRUCT", "MAP", "UNION"))
    return nested and any(name in upper for name in ("DOUBLE", "FLOAT", "REAL", "JSON"))


def is_temporal_type(duck_type: str) -> bool:
    """Whether a DuckDB type name is a date or a timestamp (of any precision or zone)."""
    upper = duck_type.upper()
    return upper == "DATE" or upper.startswith("TIMESTAMP")


def temporal_case_sql(value: str, what: str) -> str:
    """A CASE branch naming a date or timestamp ``value`` that cannot become a Python value:
    ``infinity``, ``-infinity`` or a day outside the years 1 to 9999 (DuckDB holds them;
    Python's dates, and so JSON records, SQL drivers and templates, do not)."""
    day = f"CAST({value} AS DATE)"
    return (
        f"WHEN {value} IS NOT NULL AND (NOT isfinite({value}) OR {day} < DATE '0001-01-01' "
        f"OR {day} > DATE '9999-12-31') THEN '{_sql_text(what)} holds ' || "
        f"CAST({value} AS VARCHAR) || '{_sql_text(TEMPORAL_HINT)}'"
    )


TEMPORAL_HINT = (
    ", a date outside the years 1 to 9999, which only DuckDB and file destinations take "
    "(and no template reads); leave the row out or change the value in the model "
    "(e.g. CASE WHEN isfinite(col) THEN col END)"
)


def float_reason_sql(value: str, what: str, policy: FinitePolicy) -> str:
    """SQL naming a top-level non-finite ``value`` (``what``: "column `x`")."""
    name = f"(CASE WHEN isnan({value}) THEN 'NaN' WHEN {value} > 0 THEN 'Infinity' ELSE '-Infinity' END)"
    return f"'{_sql_text(what)} holds ' || {name} || '{_sql_text(': ' + policy.hint())}'"


def nested_check_sql(value: str) -> str:
    """SQL true when ``value`` (nested or JSON) holds a NaN or infinity anywhere inside."""
    text = f"CAST(to_json({value}) AS VARCHAR)"
    return f"regexp_matches(regexp_replace({text}, '{_STRINGS_RE}', '', 'g'), '{_TOKEN_RE}')"


def nested_reason(what: str, policy: FinitePolicy) -> str:
    return f"{what} holds NaN or Infinity inside its value: {policy.hint()}"


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def screen(table: pa.Table, mapper: Mapper) -> tuple[pa.Table, dict[int, str]]:
    """Apply the policy to the mapped fields ``f0..`` of a rendered outbox chunk.

    Rows planned as sends (add, change, retry) holding a non-finite value that the policy
    does not let through are returned as ``{row: reason}``; with ``null`` such values are
    replaced in the table. ``string`` is applied when records are built
    (:meth:`~backhaul.destinations.base.Batch.flat_records`).
    """
    policy = mapper.finite
    errors: dict[int, str] = {}
    if policy.mode is NonFinite.STRING or not table.num_rows:
        return table, errors
    sent = _SentRows(table.column("op"))
    for i, field in enumerate(mapper.fields):
        name = f"f{i}"
        column = table.column(name)
        what = mapper.source_of(i)
        if pa.types.is_floating(column.type):
            if policy.keep_floats:
                continue
            if pc.all(pc.is_finite(column)).as_py() is not False:  # nulls are finite here
                continue
            bad = pc.invert(pc.fill_null(pc.is_finite(column), True))
            if policy.mode is NonFinite.NULL:
                table = table.set_column(i_of(table, name), name, pc.if_else(bad, None, column))
                continue
            values = column.to_pylist()
            for row, flag in enumerate(bad.to_pylist()):
                if flag and sent[row]:
                    errors.setdefault(
                        row, f"{what} holds {floats.text_of(values[row])}: {policy.hint()}"
                    )
        elif field in mapper.json_fields or _nested_floats(column.type):
            table = _screen_nested(
                table, name, field in mapper.json_fields, what, policy, sent, errors
            )
    return table, errors


class _SentRows:
    """Which rows of a chunk are planned as sends (add, change, retry), worked out only
    when a row holds a value the policy refuses: most chunks hold none."""

    def __init__(self, ops: pa.ChunkedArray) -> None:
        self._ops = ops
        self._sent: list[bool] | None = None

    def __getitem__(self, row: int) -> bool:
        if self._sent is None:
            self._sent = pc.is_in(self._ops, pa.array(["add", "change", "retry"])).to_pylist()
        return self._sent[row]


def screened(mapper: Mapper, types: Sequence[pa.DataType]) -> bool:
    """Whether :func:`screen` can change or refuse a row whose fields ``f0..`` have
    ``types``: False when every value goes to the destination as it is."""
    if mapper.finite.mode is NonFinite.STRING:
        return False
    for field, kind in zip(mapper.fields, types, strict=True):
        if pa.types.is_floating(kind):
            if not mapper.finite.keep_floats:
                return True
        elif field in mapper.json_fields or _nested_floats(kind):
            return True
    return False


def i_of(table: pa.Table, name: str) -> int:
    return int(table.schema.get_field_index(name))


def _nested_floats(kind: pa.DataType) -> bool:
    if pa.types.is_floating(kind):
        return True
    if isinstance(kind, pa.ListType | pa.LargeListType | pa.FixedSizeListType):
        return _nested_floats(kind.value_type)
    if isinstance(kind, pa.StructType):
        return any(_nested_floats(kind.field(j).type) for j in range(kind.num_fields))
    if isinstance(kind, pa.MapType):
        return _nested_floats(kind.item_type)
    return False


def _screen_nested(
    table: pa.Table,
    name: str,
    is_json: bool,
    what: str,
    policy: FinitePolicy,
    sent: _SentRows,
    errors: dict[int, str],
) -> pa.Table:
    """Non-finite values inside lists, structs, maps and JSON text of one column."""
    column = table.column(name)
    values = column.to_pylist()
    changed = False
    for row, value in enumerate(values):
        if value is None or not sent[row]:
            continue
        if is_json:
            if not isinstance(value, str) or ("NaN" not in value and "Infinity" not in value):
                continue
            parsed = json.loads(value)  # Python's parser reads the bare tokens
            if floats.find(parsed) is None:
                continue
            if policy.mode is NonFinite.NULL:
                values[row] = json.dumps(floats.replace(parsed, floats.as_null), allow_nan=False)
                changed = True
            else:
                errors.setdefault(row, nested_reason(what, policy))
        elif floats.find(value) is not None:
            if policy.mode is NonFinite.NULL:
                values[row] = floats.replace(value, floats.as_null)
                changed = True
            else:
                errors.setdefault(row, nested_reason(what, policy))
    if changed:
        table = table.set_column(i_of(table, name), name, pa.array(values, type=column.type))
    return table


__all__ = [
    "FinitePolicy",
    "is_float_type",
    "may_nest_floats",
    "policy_for",
    "screen",
]
