"""Priority lists: an ordered list of audiences of one schema, where each person lands in the
first audience they match (so nobody gets two competing campaigns).

A list saved as ``priority_lists/NAME.yml`` is a model too: one row per person in any of its
audiences, with the parent's key and an ``audience`` column naming the one they landed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from sqlglot import exp

from backhaul.audiences.audience import Strict
from backhaul.audiences.audience import named_twice
from backhaul.audiences.compiler import PARENT
from backhaul.audiences.compiler import Compiler
from backhaul.audiences.compiler import col
from backhaul.audiences.compiler import ident
from backhaul.config.project import Positions
from backhaul.errors import ConfigError

PRIORITY_COLUMN = "audience"
MAX_AUDIENCES = 20


class PriorityListConfig(Strict):
    """``priority_lists/NAME.yml``: audiences in the order they win."""

    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    audiences: list[str] = Field(
        min_length=1,
        max_length=MAX_AUDIENCES,
        description="Audiences of one schema, first one wins: a person in several lands in "
        "the first.",
    )


@dataclass(frozen=True)
class PriorityListDef:
    """``priority_lists/NAME.yml``. Its model (``project.models[name]``) is compiled from it."""

    name: str
    config: PriorityListConfig
    path: Path
    positions: Positions
    schema: str  # the audience schema its audiences share


def _configs(compiler: Compiler, names: list[str]) -> list[exp.Expr]:
    if not names:
        raise ConfigError("a priority list needs at least one audience")
    twice = named_twice(names)
    if twice is not None:
        raise ConfigError(f"audience `{twice}` appears twice in the priority list")
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


def priority_list_text(audiences: list[str], original: str | None) -> str:
    """The file text of a priority list: ``original`` with its ``audiences`` replaced (its
    comments, description and other keys kept), or a new file."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.comments import CommentedSeq

    from backhaul.audiences.writer import round_trip_yaml
    from backhaul.config.yamledit import dump_text

    yaml = round_trip_yaml()
    data = yaml.load(original) if original else None
    if not isinstance(data, CommentedMap):
        data = CommentedMap()
    old = data.get("audiences")
    if isinstance(old, list) and [str(a) for a in old] == audiences and original is not None:
        return original
    seq = CommentedSeq(audiences)
    if isinstance(old, CommentedSeq) and old.fa.flow_style():
        seq.fa.set_flow_style()
    data["audiences"] = seq
    return dump_text(yaml, data)


__all__ = [
    "MAX_AUDIENCES",
    "PRIORITY_COLUMN",
    "PriorityListConfig",
    "PriorityListDef",
    "priority_counts",
    "priority_list_text",
    "priority_query",
]
