"""Choosing syncs the way dbt chooses models: ``--select`` and ``--exclude``.

A selection is one or more selectors; the syncs of any of them are chosen (a union). A
selector is atoms joined by commas, and chooses the syncs every atom chooses (an
intersection). An atom is:

- ``NAME`` or ``sync:NAME``: a sync by name; ``*``, ``?`` and ``[...]`` are wildcards;
- ``tag:T``: syncs tagged ``T``;
- ``model:M``: syncs whose model is ``M``, or reads the dbt model ``M``;
- ``destination:D``: syncs writing to ``D``;
- with ``+`` before it, also every sync it runs ``after`` (its whole sequence upstream);
  with ``+`` after it, also every sync that runs after it, and for ``model:M+`` every
  sync whose model reads a dbt model built from ``M`` (through the dbt manifest).

A sync named exactly (no wildcard, no ``+``) is chosen even when disabled; every other
atom chooses enabled syncs only. A sync whose file does not load (a project loaded with
``isolate=True``) can be chosen by name only.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass

from backhaul.config.project import Project
from backhaul.config.project import SyncDef
from backhaul.errors import ConfigError

METHODS = ("sync", "tag", "model", "destination")
_WILD = set("*?[")


@dataclass(frozen=True)
class Atom:
    method: str
    value: str
    upstream: bool  # `+atom`
    downstream: bool  # `atom+`

    @property
    def exact_name(self) -> bool:
        return (
            self.method == "sync"
            and not (_WILD & set(self.value))
            and not (self.upstream or self.downstream)
        )


def parse_atom(text: str) -> Atom:
    """One atom of a selector, e.g. ``+tag:nightly`` or ``model:orders+``.

    Raises:
        ConfigError: An empty atom or an unknown method.
    """
    body = text.strip()
    upstream = body.startswith("+")
    downstream = body.endswith("+") and len(body) > 1
    body = body[1 if upstream else 0 : len(body) - (1 if downstream else 0)]
    method, sep, value = body.partition(":")
    if not sep:
        method, value = "sync", body
    if method not in METHODS:
        raise ConfigError(
            f"unknown selector method `{method}:` in `{text}`: use a sync name (wildcards "
            "* ? allowed), tag:, model:, destination:, with + before or after for sequences"
        )
    if not value:
        raise ConfigError(f"empty selector `{text}`: write what to select after `{method}:`")
    return Atom(method, value, upstream, downstream)


def select(
    project: Project,
    selectors: Sequence[str],
    exclude: Sequence[str] = (),
    *,
    default_all: bool = True,
) -> list[str]:
    """The names of the syncs ``selectors`` choose, minus those ``exclude`` chooses.

    Args:
        selectors: Selectors (each may hold several separated by spaces). None given:
            every enabled sync (and every sync whose file does not load) when
            ``default_all``, else none.

    Raises:
        ConfigError: A selector is malformed, or names a sync that does not exist.
    """
    chosen = _choose(project, selectors) if _words(selectors) else None
    if chosen is None:
        chosen = set(_all(project)) if default_all else set()
    if _words(exclude):
        chosen -= _choose(project, exclude)
    return sorted(chosen)


def _all(project: Project) -> list[str]:
    return [s.name for s in project.syncs.values() if s.config.enabled] + project.broken_syncs


def _words(selectors: Iterable[str]) -> list[str]:
    return [w for s in selectors for w in s.split()]


def _choose(project: Project, selectors: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for word in _words(selectors):
        atoms = [parse_atom(a) for a in word.split(",")]
        sets = [_match(project, atom) for atom in atoms]
        found |= set.intersection(*sets) if sets else set()
    return found


def _match(project: Project, atom: Atom) -> set[str]:
    if atom.exact_name:
        if atom.value in project.syncs or atom.value in project.broken_syncs:
            return {atom.value}
        known = ", ".join(sorted([*project.syncs, *project.broken_syncs])) or "none"
        raise ConfigError(f"unknown sync `{atom.value}` (known: {known})")
    enabled = {n: s for n, s in project.syncs.items() if s.config.enabled}
    if atom.method == "sync":
        names = [*enabled, *project.broken_syncs]
        found = set(fnmatch.filter(names, atom.value))
    elif atom.method == "tag":
        found = {
            n
            for n, s in enabled.items()
            if any(fnmatch.fnmatch(t, atom.value) for t in s.config.tags)
        }
    elif atom.method == "destination":
        found = {n for n, s in enabled.items() if fnmatch.fnmatch(s.config.destination, atom.value)}
    else:
        found = _by_model(project, enabled, atom)
    if atom.upstream:
        found |= _closure(found, _parents(project))
    if atom.downstream:
        found |= _closure(found, _children(project))
    return found


def _by_model(project: Project, syncs: dict[str, SyncDef], atom: Atom) -> set[str]:
    found = {n for n, s in syncs.items() if fnmatch.fnmatch(s.config.model, atom.value)}
    if not project.config.dbt_project:
        return found
    from backhaul.dbt.refs import RefResolver
    from backhaul.dbt.refs import model_nodes

    manifest = RefResolver(project.root, project.config.dbt_project).manifest()
    wanted = {uid for uid, node in manifest.nodes.items() if fnmatch.fnmatch(node.name, atom.value)}
    if atom.downstream:  # dbt models built from it, however far down
        children: dict[str, set[str]] = {}
        for uid, node in manifest.nodes.items():
            for parent in node.depends_on:
                children.setdefault(parent, set()).add(uid)
        wanted |= _closure(wanted, children)
    for name, sync in syncs.items():
        model = project.models.get(sync.config.model)
        if model is not None and any(
            n.unique_id in wanted for n in model_nodes(project, model, manifest)
        ):
            found.add(name)
    return found


def _parents(project: Project) -> dict[str, set[str]]:
    from backhaul.schedule.graph import parents

    return {child: set(ps) for child, ps in parents(project).items()}


def _children(project: Project) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for child, ps in _parents(project).items():
        for parent in ps:
            out.setdefault(parent, set()).add(child)
    return out


def _closure(start: set[str], edges: dict[str, set[str]]) -> set[str]:
    seen = set(start)
    todo = list(start)
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


__all__ = ["METHODS", "Atom", "parse_atom", "select"]
