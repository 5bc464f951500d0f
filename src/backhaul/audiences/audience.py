"""An audience file: ``audiences/<name>.yml``.

::

    schema: people
    description: Enterprise users in Europe who looked at pricing this month
    columns: [email, first_name, plan]
    match: all
    conditions:
      - {column: country, op: in, value: [FR, DE, ES]}
      - {related: accounts, where: [{column: plan, op: equals, value: enterprise}]}
      - {event: page_views, at_least: 3, within_last_days: 30}
    splits:
      holdout: 10
      groups:
        - {name: email_first, percent: 45}
        - {name: call_first, percent: 45}
    tests:
      - name: a French enterprise user who viewed pricing is in
        now: 2024-06-01 00:00:00
        rows:
          users:
            - {user_id: 1, country: FR, account_id: 7}
        expect_in: [1]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

from backhaul.audiences.conditions import Condition
from backhaul.config.models import NAME_PATTERN

SPLIT_COLUMN = "split"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def basis_points(percent: float) -> int:
    """A percentage in hundredths of a percent (splits are resolved to 0.01%)."""
    return round(percent * 100)


def named_twice(names: Sequence[str]) -> str | None:
    """The alphabetically first name that appears more than once, or ``None``: a repeated
    name would make one definition hide another."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    return dupes[0] if dupes else None


def _hundredths(value: int | float) -> int | float:
    """A percent of a split, refused with more than two decimals (splits resolve to 0.01%)."""
    if abs(value * 100 - round(value * 100)) > 1e-6:
        raise ValueError("must have at most two decimals (splits resolve to 0.01%)")
    return value


class SplitGroup(Strict):
    """One named share of the audience."""

    name: str = Field(pattern=NAME_PATTERN)
    percent: int | float = Field(gt=0, le=100)

    @field_validator("percent")
    @classmethod
    def _resolution(cls, value: int | float) -> int | float:
        return _hundredths(value)


class Splits(Strict):
    """A holdout and named groups, assigned by a hash of the key (see ``splits.py``)."""

    seed: str | None = Field(
        None,
        description="Mixed into the hash; default: the audience name. Change it to "
        "reshuffle everyone.",
    )
    holdout: int | float = Field(0, ge=0, lt=100, description="Percent kept out of every sync.")
    groups: list[SplitGroup] = Field(default_factory=list)

    @field_validator("holdout")
    @classmethod
    def _resolution(cls, value: int | float) -> int | float:
        return _hundredths(value)

    @model_validator(mode="after")
    def _total(self) -> Splits:
        twice = named_twice([g.name for g in self.groups])
        if twice is not None:
            raise ValueError(f"split group `{twice}` is named twice")
        if self.groups:
            total = basis_points(self.holdout) + sum(basis_points(g.percent) for g in self.groups)
            if total != 10_000:
                raise ValueError(
                    f"`holdout` and the group percents add up to {total / 100:g}, not 100"
                )
        return self


class AudienceTest(Strict):
    """One test case: fixture rows per model, and the keys expected in and out."""

    name: str = Field(min_length=1)
    now: Any = Field(
        None,
        description="The time relative dates count from (`within_last`...), e.g. "
        "2024-06-01 12:00:00.",
    )
    rows: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="Rows of each model the schema uses, by model name."
    )
    expect_in: list[Any] = Field(default_factory=list)
    expect_out: list[Any] = Field(default_factory=list)

    @field_validator("now")
    @classmethod
    def _time(cls, value: Any) -> Any:
        if value is None or isinstance(value, date):
            return value
        if isinstance(value, str):
            from backhaul.audiences.types import ColumnType
            from backhaul.audiences.types import coerce

            coerce(value, ColumnType.TIMESTAMP)
            return value
        raise ValueError("must be a date or a timestamp, like 2024-06-01 12:00:00")

    @field_validator("expect_in", "expect_out")
    @classmethod
    def _keys(cls, value: list[Any]) -> list[Any]:
        for key in value:
            if key is None or isinstance(key, dict | list):
                raise ValueError("must be a list of keys (text or numbers)")
            if isinstance(key, float) and not math.isfinite(key):
                raise ValueError("must be a list of keys (text or numbers)")
        return value

    @model_validator(mode="after")
    def _something(self) -> AudienceTest:
        both = [k for k in self.expect_in if k in self.expect_out]
        if both:
            raise ValueError(f"key {both[0]!r} is expected both in and out")
        if not self.expect_in and not self.expect_out:
            raise ValueError("give `expect_in` or `expect_out`: the keys the case checks")
        return self


class AudienceConfig(Strict):
    """``audiences/NAME.yml``: who is in the audience, and how it is split and tested."""

    schema_: str = Field(alias="schema", min_length=1, description="An audience schema name.")
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    columns: list[str] | None = Field(
        None,
        description="Parent columns the audience model returns besides the key; "
        "default: every column the schema offers.",
    )
    match: Literal["all", "any", "none"] = Field(
        "all", description="How the top-level conditions combine."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Empty: everyone in the parent model."
    )
    splits: Splits | None = None
    tests: list[AudienceTest] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_tests(self) -> AudienceConfig:
        twice = named_twice([t.name for t in self.tests])
        if twice is not None:
            raise ValueError(f"test `{twice}` is named twice; give each case its own name")
        return self


__all__ = [
    "SPLIT_COLUMN",
    "AudienceConfig",
    "AudienceTest",
    "SplitGroup",
    "Splits",
    "basis_points",
    "named_twice",
]
