"""A sync's ``hooks``: SQL run on the model's source before it is read and after a run.

``pre`` statements run before the model is read (a failure fails the run with nothing
read or sent); ``post`` statements run once the run has committed, with the run's
outcome as Liquid variables (a failure marks the run failed, but what was delivered
stays delivered and the snapshot stays advanced). Each list runs in one transaction where
the warehouse has them (``sources.hook_sessions``). ``backhaul plan`` runs neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import fields
from datetime import UTC
from datetime import datetime
from typing import Any
from typing import Literal

from backhaul.config.project import Positions
from backhaul.config.project import Project
from backhaul.config.project import SyncDef
from backhaul.errors import ConfigError
from backhaul.errors import HookError
from backhaul.errors import SourceError
from backhaul.errors import first_line
from backhaul.summary import Counts
from backhaul.summary import RunSummary

Phase = Literal["pre", "post"]
PHASES: tuple[Phase, ...] = ("pre", "post")

# What `run.` offers in each phase; the counts exist only once the run has been.
RUN_VARIABLES = frozenset({"id", "sync", "trigger", "full_resync", "started_at"})
POST_VARIABLES = (
    RUN_VARIABLES | {"status", "error", "finished_at"} | {f.name for f in fields(Counts)}
)


@dataclass(frozen=True)
class HookList:
    """The statements of one phase, and where they are written (the sync or the defaults)."""

    phase: Phase
    statements: tuple[str, ...]
    positions: Positions | None
    file: str
    prefix: str  # `hooks.pre` or `defaults.hooks.pre`

    def key(self, index: int | None = None) -> str:
        return self.prefix if index is None else f"{self.prefix}.{index}"

    def line(self, index: int | None = None) -> int | None:
        return self.positions.line(self.key(index)) if self.positions else None


def hook_list(project: Project, sync: SyncDef, phase: Phase) -> HookList:
    """The sync's own list for ``phase``, else the project's ``defaults.hooks`` list."""
    own = getattr(sync.config.hooks, phase)
    if own is not None:
        file = sync.positions.file.as_posix()
        return HookList(phase, tuple(own), sync.positions, file, f"hooks.{phase}")
    default = getattr(project.config.defaults.hooks, phase) or []
    positions = project.positions
    file = positions.file.as_posix() if positions else "backhaul.yml"
    return HookList(phase, tuple(default), positions, file, f"defaults.hooks.{phase}")


def has_hooks(project: Project, sync: SyncDef) -> bool:
    return any(hook_list(project, sync, p).statements for p in PHASES)


def skipped_hooks_note(project: Project, sync: SyncDef) -> list[str]:
    """What ``backhaul plan`` says about the hooks it does not run."""
    counts = {p: len(hook_list(project, sync, p).statements) for p in PHASES}
    if not any(counts.values()):
        return []
    return [
        f"hooks skipped: a dry run does not run the {counts['pre']} pre and "
        f"{counts['post']} post hook statement(s); the plan reads the model as it is now"
    ]


def hook_errors(project: Project, sync: SyncDef) -> list[ConfigError]:
    """Hooks whose Liquid does not parse, uses unknown filters or variables, or whose
    source cannot run them. Nothing is run."""
    from backhaul.templates import check_template
    from backhaul.templates import liquid_environment
    from backhaul.templates import unknown_filters_text

    env = liquid_environment()
    errors: list[ConfigError] = []
    lists = [hook_list(project, sync, p) for p in PHASES]
    for hooks in lists:
        allowed = RUN_VARIABLES if hooks.phase == "pre" else POST_VARIABLES
        for i, sql in enumerate(hooks.statements):

            def error(message: str, hooks: HookList = hooks, i: int = i) -> ConfigError:
                return ConfigError(message, file=hooks.file, line=hooks.line(i), key=hooks.key(i))

            found = check_template(sql, env)
            if found.error is not None:
                errors.append(error(f"the hook's Liquid does not parse: {found.error}"))
                continue
            if found.unknown_filters:
                errors.append(error(unknown_filters_text(found.unknown_filters)))
            for path in sorted(found.paths):
                name = ".".join(path)
                if path[0] != "run":
                    errors.append(error(f"unknown variable `{name}` (hooks see only `run.*`)"))
                elif len(path) < 2 or path[1] not in allowed:
                    known = ", ".join(f"run.{v}" for v in sorted(allowed))
                    when = (
                        "a pre hook runs before the run has an outcome; "
                        if (hooks.phase == "pre" and len(path) > 1 and path[1] in POST_VARIABLES)
                        else ""
                    )
                    errors.append(error(f"unknown variable `{name}` ({when}known: {known})"))
    if any(h.statements for h in lists):
        problem = _source_problem(project, sync)
        if problem is not None:
            first = next(h for h in lists if h.statements)
            errors.append(ConfigError(problem, file=first.file, line=first.line(), key=first.key()))
    return errors


def _source_problem(project: Project, sync: SyncDef) -> str | None:
    from backhaul.sources.hook_sessions import hooks_problem

    model = project.models.get(sync.config.model)
    source = project.sources.get(model.config.source) if model is not None else None
    if source is None:
        return None  # reported by the model's own checks
    try:
        cls = project.registry.source(source.config.type)
    except Exception:
        return None  # the loader reported a source type that does not load
    return hooks_problem(cls, source.config)


def pre_variables(summary: RunSummary, *, trigger: str) -> dict[str, Any]:
    return {
        "id": summary.run_id,
        "sync": summary.sync,
        "trigger": trigger,
        "full_resync": summary.full_resync,
        "started_at": _iso(summary.started_at),
    }


def post_variables(summary: RunSummary, *, trigger: str) -> dict[str, Any]:
    return {
        **pre_variables(summary, trigger=trigger),
        **summary.counts.as_dict(),
        "status": summary.status.value,
        "error": summary.error,
        "finished_at": _iso(summary.finished_at or datetime.now(UTC)),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def run_hooks(project: Project, sync: SyncDef, phase: Phase, variables: dict[str, Any]) -> int:
    """Render and run the ``phase`` hooks of ``sync``; returns how many statements ran.

    Raises:
        HookError: A statement failed (or the warehouse could not be reached): one line
            naming the sync file, the ``hooks.PHASE.N`` key and the warehouse's first line,
            with the source's secrets masked.
    """
    hooks = hook_list(project, sync, phase)
    if not hooks.statements:
        return 0
    from backhaul.config.secrets import resolve
    from backhaul.sources.hook_sessions import StatementFailed
    from backhaul.sources.hook_sessions import run_statements
    from backhaul.templates import liquid_environment

    model = project.models[sync.config.model]
    source = project.sources[model.config.source]
    kind = str(source.config.type)
    env = liquid_environment()
    rendered: list[str] = []
    for i, sql in enumerate(hooks.statements):
        try:
            rendered.append(env.from_string(sql).render(run=variables))
        except Exception as exc:
            raise _error(hooks, i, f"the hook does not render: {first_line(exc)}") from None
    config, secrets = resolve(source.config, positions=source.positions)
    cls = project.registry.source(kind)
    try:
        run_statements(cls, config, project.root, rendered, secrets)
    except StatementFailed as failed:
        raise _error(
            hooks, failed.index, f"the {phase} hook failed in the {kind} warehouse: {failed.line}"
        ) from None
    except SourceError as exc:
        raise _error(hooks, None, f"the {phase} hooks could not run: {exc.message}") from None
    return len(rendered)


def _error(hooks: HookList, index: int | None, message: str) -> HookError:
    if hooks.phase == "pre":
        message += "; nothing was read or sent and the snapshot is unchanged"
    else:
        message += (
            "; the rows this run delivered stay delivered and the snapshot stays advanced "
            "(they are not sent again)"
        )
    return HookError(message, file=hooks.file, line=hooks.line(index), key=hooks.key(index))


__all__ = [
    "POST_VARIABLES",
    "RUN_VARIABLES",
    "HookList",
    "has_hooks",
    "hook_errors",
    "hook_list",
    "post_variables",
    "pre_variables",
    "run_hooks",
    "skipped_hooks_note",
]
