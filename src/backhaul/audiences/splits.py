"""Splits and holdouts: a member's group is decided by a hash of its key, nothing else.

The hash is the MD5 of ``<seed>:<key as text>`` (the seed defaults to the audience name),
read as its first 8 hex digits: a number in [0, 2^32). The holdout takes the lowest
``holdout`` percent of that range, then each group takes its percent in the order written.
Because a member's number depends only on its own key and the seed:

- adding or removing other members never moves anyone (the audience can grow);
- the same key lands in the same group in every run and every warehouse that has ``MD5``
  returning lowercase hex (DuckDB, Postgres, Snowflake; BigQuery through ``TO_HEX(MD5())``,
  which sqlglot writes), as long as the key's text form is the same there (text and
  integer keys are; other types may print differently);
- the comparison is on the 8 hex digits as text, which orders like the number, so no
  warehouse needs to parse hex.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlglot import exp

from backhaul.audiences.audience import Splits
from backhaul.audiences.audience import basis_points

HASH_DIGITS = 8
_RANGE = 16**HASH_DIGITS


def seed_of(splits: Splits, audience: str) -> str:
    return splits.seed if splits.seed is not None else audience


def _bound(points: int) -> str | None:
    """The hex text below which the lowest ``points`` hundredths of a percent fall."""
    if points >= 10_000:
        return None
    value = -(-points * _RANGE // 10_000)  # ceiling: exact shares of the 2^32 range
    return f"{value:0{HASH_DIGITS}x}"


def holdout_bound(splits: Splits) -> str | None:
    """The hex text below which a member is held out, or None without a holdout."""
    points = basis_points(splits.holdout)
    return _bound(points) if points else None


def group_bounds(splits: Splits) -> list[tuple[str, str | None]]:
    """Each group with the hex text it lies below (None for the last one)."""
    out: list[tuple[str, str | None]] = []
    total = basis_points(splits.holdout)
    for group in splits.groups:
        total += basis_points(group.percent)
        out.append((group.name, _bound(total)))
    return out


def bucket(seed: str, key: Any) -> str:
    """The hash text of one key, as the SQL computes it (``str(key)`` is its text form)."""
    return hashlib.md5(f"{seed}:{key}".encode()).hexdigest()[:HASH_DIGITS]


def assign(splits: Splits, audience: str, key: Any) -> str | None:
    """``holdout``, a group name, or None (a member, when there are no groups)."""
    value = bucket(seed_of(splits, audience), key)
    held = holdout_bound(splits)
    if held is not None and value < held:
        return "holdout"
    for name, bound in group_bounds(splits):
        if bound is None or value < bound:
            return name
    return None


def bucket_expr(key: exp.Expr, splits: Splits, audience: str) -> exp.Expr:
    """SQL for :func:`bucket`: the first 8 hex digits of MD5(seed || ':' || key)."""
    text = exp.Concat(
        expressions=[
            exp.Literal.string(seed_of(splits, audience) + ":"),
            exp.cast(key, exp.DataType.build("VARCHAR")),
        ]
    )
    return exp.Substring(
        this=exp.MD5(this=text),
        start=exp.Literal.number(1),
        length=exp.Literal.number(HASH_DIGITS),
    )


def split_case(bucket_sql: exp.Expr, splits: Splits) -> exp.Expr | None:
    """``CASE WHEN bucket < b1 THEN 'g1' ... ELSE 'gN' END``, or None without groups."""
    bounds = group_bounds(splits)
    if not bounds:
        return None
    if len(bounds) == 1:
        return exp.Literal.string(bounds[0][0])
    case = exp.Case()
    for name, bound in bounds[:-1]:
        assert bound is not None  # only the last group runs to the end of the range
        case = case.when(
            bucket_sql.copy() < exp.Literal.string(bound), exp.Literal.string(name), copy=False
        )
    return case.else_(exp.Literal.string(bounds[-1][0]), copy=False)


__all__ = [
    "HASH_DIGITS",
    "assign",
    "bucket",
    "bucket_expr",
    "group_bounds",
    "holdout_bound",
    "seed_of",
    "split_case",
]
