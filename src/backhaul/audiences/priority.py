"""Priority lists: an ordered list of audiences of one schema, where each person lands in the
first audience they match (so nobody gets two competing campaigns)."""

from __future__ import annotations

from sqlglot import exp

from backhaul.audiences.compiler import PARENT, Compiler, col, ident
from backhaul.errors import ConfigError

PRIORITY_COLUMN = "audience"


def _configs(compiler: Compiler, names: list[str]) -> list[exp.Expr]:
    if not names:
        raise ConfigError("a priority list needs at least one audience")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"audience `{dupes[0]}` appears twice in the priority list")
    predicates = []
    for name in names:
        config = compiler.audiences.get(name)
        if config is None:
            raise ConfigError(f"unknown audience `{name}` in the priority list")
        if config.schema_ != compiler.catalog.name:
            raise ConfigError(
                f"audience `{name}` is built on schema `{config.schema_}`, not "
                f"`{compiler.catalog.name}`: a priority list needs one parent"
            )
        predicates.append(compiler.predicate(config, filtering=True))
    return predicates


def priority_query(compiler: Compiler, names: list[str]) -> exp.Select:
    """``key, audience`` for everyone matching any audience of ``names``, first match wins."""
    predicates = _configs(compiler, names)
    case = exp.Case()
    for name, pred in zip(names, predicates, strict=True):
        case = case.when(pred, exp.Literal.string(name), copy=False)
    key = col(PARENT, compiler.catalog.parent.key)
    anyof = exp.or_(*(p.copy() for p in predicates), copy=False)
    return (
        compiler.parent()
        .select(key, exp.alias_(case, ident(PRIORITY_COLUMN), copy=False), copy=False)
        .where(exp.paren(anyof, copy=False), copy=False)
    )


def priority_counts(compiler: Compiler, names: list[str]) -> exp.Select:
    """``audience, n``: how many people each audience of the list gets."""
    assigned = priority_query(compiler, names).subquery("a", copy=False)
    return (
        exp.select(
            col("a", PRIORITY_COLUMN),
            exp.alias_(exp.Count(this=exp.Star()), ident("n"), copy=False),
            copy=False,
        )
        .from_(assigned, copy=False)
        .group_by(col("a", PRIORITY_COLUMN), copy=False)
    )


__all__ = ["PRIORITY_COLUMN", "priority_counts", "priority_query"]
