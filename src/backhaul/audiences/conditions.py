"""The condition tree of an audience, as written in ``audiences/<name>.yml``.

Each condition is one YAML mapping whose keys say its kind::

    - {column: plan, op: equals, value: enterprise}                  # parent column
    - {related: accounts, where: [{column: seats, op: gte, value: 50}]}  # has a related row
    - {event: page_views, at_least: 3, within_last_days: 14}           # did an event
    - {in_audience: champions}                                         # membership
    - {sql: "lifetime_value > 100"}                                    # raw SQL (editors)
    - any: [...]                                                       # nested group

Values are kept exactly as written (a quoted date stays text here); they are read against
the column's type when the audience is checked and compiled, so a file saved back from
these models is the file that was loaded.
"""

from __future__ import annotations

import math
from datetime import date
from enum import StrEnum
from typing import Annotated
from typing import Any
from typing import ClassVar
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Discriminator
from pydantic import Field
from pydantic import Tag
from pydantic import field_validator
from pydantic import model_validator

from backhaul.audiences.types import ColumnType


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Op(StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    IS_NULL = "is_null"
    IS_NOT_NULL = "is_not_null"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    BETWEEN = "between"
    BEFORE = "before"
    AFTER = "after"
    WITHIN_LAST = "within_last"
    NOT_WITHIN_LAST = "not_within_last"


# A negative operator holds exactly where its positive one does not (nulls included), so
# "plan is not enterprise" keeps the people with no plan.
NEGATIONS: dict[Op, Op] = {
    Op.NOT_EQUALS: Op.EQUALS,
    Op.NOT_IN: Op.IN,
    Op.IS_NOT_NULL: Op.IS_NULL,
    Op.NOT_WITHIN_LAST: Op.WITHIN_LAST,
}
NO_VALUE = frozenset({Op.IS_NULL, Op.IS_NOT_NULL})
LIST_VALUE = frozenset({Op.IN, Op.NOT_IN})
DAYS = frozenset({Op.WITHIN_LAST, Op.NOT_WITHIN_LAST})
_ANY = frozenset({Op.EQUALS, Op.NOT_EQUALS, Op.IS_NULL, Op.IS_NOT_NULL})
_ORDERED = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE, Op.BETWEEN})
OPS_BY_TYPE: dict[ColumnType, frozenset[Op]] = {
    ColumnType.STRING: _ANY | {Op.IN, Op.NOT_IN, Op.CONTAINS, Op.STARTS_WITH},
    ColumnType.NUMBER: _ANY | {Op.IN, Op.NOT_IN} | _ORDERED,
    ColumnType.BOOLEAN: _ANY,
    ColumnType.DATE: _ANY | {Op.IN, Op.NOT_IN, Op.BEFORE, Op.AFTER} | _ORDERED | DAYS,
    ColumnType.TIMESTAMP: _ANY | {Op.IN, Op.NOT_IN, Op.BEFORE, Op.AFTER} | _ORDERED | DAYS,
}
# When an event first or last happened: a time is always there (no null tests), and
# equality to the microsecond is not a useful question.
TIME_OPS = OPS_BY_TYPE[ColumnType.DATE] - _ANY - {Op.IN, Op.NOT_IN}


def _scalar(value: Any, where: str) -> None:
    if value is None or isinstance(value, dict | list):
        raise ValueError(f"{where} must be a single value (text, number, true/false or a date)")
    if not isinstance(value, bool | int | float | str | date):
        raise ValueError(f"{where} must be text, a number, true/false or a date")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number")


def check_shape(op: Op, value: Any, days: int | None) -> None:
    """The value and days an operator needs, without looking at the column's type."""
    if op in NO_VALUE:
        if value is not None or days is not None:
            raise ValueError(f"`{op}` takes no `value` or `days`; remove them")
        return
    if op in DAYS:
        if days is None:
            raise ValueError(f"`{op}` needs `days` (a whole number of days)")
        if value is not None:
            raise ValueError(f"`{op}` takes `days`, not `value`")
        return
    if days is not None:
        raise ValueError(f"`days` goes only with `within_last` and `not_within_last`, not `{op}`")
    if op in LIST_VALUE:
        if not isinstance(value, list) or not value:
            raise ValueError(f"`{op}` needs `value` as a non-empty list, like [a, b]")
        for item in value:
            _scalar(item, "each item of `value`")
        return
    if op is Op.BETWEEN:
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError("`between` needs `value` as a list of two bounds, like [10, 20]")
        for item in value:
            _scalar(item, "each bound of `value`")
        return
    if value is None:
        raise ValueError(f"`{op}` needs a `value`")
    _scalar(value, "`value`")


class ColumnCondition(Strict):
    """A test on one column: ``{column: plan, op: equals, value: enterprise}``."""

    column: str = Field(min_length=1)
    op: Op
    value: Any = Field(None, description="The value (a list for `in`, two bounds for `between`).")
    days: int | None = Field(None, ge=0, description="For `within_last` and `not_within_last`.")

    @model_validator(mode="after")
    def _shape(self) -> ColumnCondition:
        check_shape(self.op, self.value, self.days)
        return self


class TimeCondition(Strict):
    """A test on the first or last time an event happened: ``{op: within_last, days: 7}``."""

    op: Op
    value: Any = None
    days: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _shape(self) -> TimeCondition:
        if self.op not in TIME_OPS:
            allowed = ", ".join(sorted(TIME_OPS))
            raise ValueError(f"`{self.op}` does not apply to a time; use one of {allowed}")
        check_shape(self.op, self.value, self.days)
        return self


class _Counting:
    """How many rows must match: at most one of ``at_least``, ``at_most``, ``exactly``."""

    def count_rule(self) -> tuple[str, int]:
        """The threshold as ``(kind, n)``; ``("at_least", 1)`` when none is written."""
        for kind in ("at_least", "at_most", "exactly"):
            n = getattr(self, kind)
            if n is not None:
                return kind, n
        return "at_least", 1

    def _one_count(self) -> None:
        given = [k for k in ("at_least", "at_most", "exactly") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of {', '.join(f'`{k}`' for k in given)}")


class RelatedCondition(Strict, _Counting):
    """Has related rows: ``{related: accounts, where: [...], at_least: 1}``."""

    related: str = Field(min_length=1, description="A related model of the schema.")
    where: list[ColumnCondition] = Field(default_factory=list)
    at_least: int | None = Field(None, ge=0)
    at_most: int | None = Field(None, ge=0)
    exactly: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _counts(self) -> RelatedCondition:
        self._one_count()
        return self


class EventCondition(Strict, _Counting):
    """Did an event: how many times, in which window, or when first or last.

    ``{event: orders, at_least: 2, within_last_days: 30}``,
    ``{event: orders, did_not: true}``, ``{event: logins, last: {op: before, value: 2024-01-01}}``.
    """

    event: str = Field(min_length=1, description="An event model of the schema.")
    where: list[ColumnCondition] = Field(default_factory=list)
    at_least: int | None = Field(None, ge=0)
    at_most: int | None = Field(None, ge=0)
    exactly: int | None = Field(None, ge=0)
    did_not: bool = Field(False, description="Never did it (in the window): `exactly: 0`.")
    within_last_days: int | None = Field(None, ge=0)
    between: list[Any] | None = Field(None, description="Two dates or timestamps, inclusive.")
    first: TimeCondition | None = None
    last: TimeCondition | None = None

    @field_validator("between")
    @classmethod
    def _two_bounds(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None:
            if len(value) != 2:
                raise ValueError("`between` needs two dates, like [2024-01-01, 2024-03-31]")
            for item in value:
                _scalar(item, "each bound of `between`")
        return value

    @model_validator(mode="after")
    def _combination(self) -> EventCondition:
        self._one_count()
        counted = [k for k in ("at_least", "at_most", "exactly") if getattr(self, k) is not None]
        if self.did_not and counted:
            raise ValueError(f"`did_not` already means `exactly: 0`; remove `{counted[0]}`")
        if self.within_last_days is not None and self.between is not None:
            raise ValueError("give either `within_last_days` or `between`, not both")
        timed = [k for k in ("first", "last") if getattr(self, k) is not None]
        if len(timed) > 1:
            raise ValueError("give either `first` or `last`, not both")
        if timed:
            window = self.within_last_days is not None or self.between is not None
            if counted or self.did_not or window:
                raise ValueError(
                    f"`{timed[0]}` tests when the event happened: it cannot be combined with "
                    "counts, `did_not` or a window"
                )
        return self

    def count_rule(self) -> tuple[str, int]:
        return ("exactly", 0) if self.did_not else super().count_rule()


class AudienceCondition(Strict):
    """Membership of another audience of the same schema: ``{in_audience: champions}``."""

    in_audience: str | None = Field(None, min_length=1)
    not_in_audience: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> AudienceCondition:
        if (self.in_audience is None) == (self.not_in_audience is None):
            raise ValueError("give one of `in_audience` or `not_in_audience`")
        return self

    @property
    def audience(self) -> str:
        return self.in_audience or self.not_in_audience or ""

    @property
    def negated(self) -> bool:
        return self.not_in_audience is not None


class SqlCondition(Strict):
    """A raw SQL predicate over the parent's columns. Only editors may write one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"x-backhaul-editor-only": True})
    editor_only: ClassVar[bool] = True

    sql: str = Field(min_length=1, description="A boolean SQL expression in the source's dialect.")


class GroupCondition(Strict):
    """A nested group: ``all`` (and), ``any`` (or) or ``none`` (neither) of its conditions."""

    all_: list[Condition] | None = Field(None, alias="all")
    any_: list[Condition] | None = Field(None, alias="any")
    none_: list[Condition] | None = Field(None, alias="none")

    @model_validator(mode="after")
    def _one(self) -> GroupCondition:
        given = [k for k in ("all", "any", "none") if getattr(self, f"{k}_") is not None]
        if len(given) != 1:
            raise ValueError("a group holds one of `all`, `any` or `none`, with a list")
        return self

    @property
    def match(self) -> Literal["all", "any", "none"]:
        if self.all_ is not None:
            return "all"
        return "any" if self.any_ is not None else "none"

    @property
    def items(self) -> list[Condition]:
        return self.all_ if self.all_ is not None else (self.any_ or self.none_ or [])


_KINDS = (
    ("column", "ColumnCondition"),
    ("related", "RelatedCondition"),
    ("event", "EventCondition"),
    ("in_audience", "AudienceCondition"),
    ("not_in_audience", "AudienceCondition"),
    ("sql", "SqlCondition"),
    ("all", "GroupCondition"),
    ("any", "GroupCondition"),
    ("none", "GroupCondition"),
)
KIND_KEYS = tuple(k for k, _ in _KINDS)


def _kind(value: Any) -> str | None:
    """The tag of a condition: the class named by the first kind key it holds."""
    if isinstance(value, BaseModel):
        return type(value).__name__
    if isinstance(value, dict):
        for key, tag in _KINDS:
            if key in value:
                return tag
    return None


# Tags are the class names, so error locations name the class and the loader can tell
# which keys the condition accepts.
Condition = Annotated[
    Annotated[ColumnCondition, Tag("ColumnCondition")]
    | Annotated[RelatedCondition, Tag("RelatedCondition")]
    | Annotated[EventCondition, Tag("EventCondition")]
    | Annotated[AudienceCondition, Tag("AudienceCondition")]
    | Annotated[SqlCondition, Tag("SqlCondition")]
    | Annotated[GroupCondition, Tag("GroupCondition")],
    Discriminator(
        _kind,
        custom_error_type="condition_kind",
        custom_error_message="a condition needs one of the keys column, related, event, "
        "in_audience, not_in_audience, sql, all, any or none",
    ),
]
GroupCondition.model_rebuild()


def walk(conditions: list[Condition], key: str) -> list[tuple[str, Condition]]:
    """Every condition of a tree, depth first, with its dotted key in the file."""
    out: list[tuple[str, Condition]] = []
    for i, cond in enumerate(conditions):
        here = f"{key}.{i}"
        out.append((here, cond))
        if isinstance(cond, GroupCondition):
            out += walk(cond.items, f"{here}.{cond.match}")
    return out


__all__ = [
    "DAYS",
    "KIND_KEYS",
    "LIST_VALUE",
    "NEGATIONS",
    "NO_VALUE",
    "OPS_BY_TYPE",
    "TIME_OPS",
    "AudienceCondition",
    "ColumnCondition",
    "Condition",
    "EventCondition",
    "GroupCondition",
    "Op",
    "RelatedCondition",
    "SqlCondition",
    "TimeCondition",
    "check_shape",
    "walk",
]
