"""Sequences of syncs (``schedule: {after: [...]}``) as a graph: parents, children, cycles."""

from __future__ import annotations

from graphlib import CycleError
from graphlib import TopologicalSorter

from backhaul.config.project import Project


def parents(project: Project) -> dict[str, list[str]]:
    """Each sync with a sequence schedule, with the known syncs it runs after."""
    return {
        name: [p for p in sync.config.schedule.after or [] if p in project.syncs and p != name]
        for name, sync in project.syncs.items()
        if sync.config.schedule.after
    }


def find_cycles(project: Project) -> list[list[str]]:
    """Every cycle of ``after`` references, in run order, from its smallest name."""
    edges = {child: set(ps) for child, ps in parents(project).items()}
    found: list[list[str]] = []
    while True:
        try:
            TopologicalSorter(edges).prepare()
            return found
        except CycleError as exc:
            ring: list[str] = list(exc.args[1][:-1])
            start = ring.index(min(ring))
            ring = ring[start:] + ring[:start]
            # graphlib lists each node before the one that runs after it: run order.
            found.append(ring)
            # Drop one edge of this cycle so the next round finds any other cycle.
            a, b = ring[0], ring[1] if len(ring) > 1 else ring[0]
            if b in edges.get(a, set()):
                edges[a].discard(b)
            else:
                edges[b].discard(a)


__all__ = ["find_cycles", "parents"]
