"""Compare two loaded projects into typed :class:`Change` values, grouped by sync.

Definitions are compared as loaded (pydantic models dumped to plain values), never as raw
text, so reformatting a file or reordering keys is no change. ``${env:NAME}`` references
are compared and shown as written: nothing here resolves a secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel

from backhaul.config.models import ColumnMapping
from backhaul.config.models import Mapping
from backhaul.config.models import StaticMapping
from backhaul.config.models import SyncConfig
from backhaul.config.project import Project
from backhaul.config.schedule import ScheduleConfig
from backhaul.observe.redact import MASK
from backhaul.observe.redact import SENSITIVE_HEADERS
from backhaul.review.rules import say

# Keys shown as one value rather than key by key (a rate, one alert rule's settings).
_WHOLE = ("rate_limit", "alerts.rules.*")
# What a definition being added or removed means; only a sync's has a consequence of its own.
_ADDED_OR_REMOVED = {
    ("sync", "added"): "its first run sends every row of the model",
    ("sync", "removed"): "it stops running; its snapshot stays until `backhaul reset`",
}
_FOLDERS = {"sync": "syncs", "model": "models", "destination": "destinations", "source": "sources"}


@dataclass(frozen=True)
class Change:
    """One difference between the two projects, in words.

    ``key`` is the dotted key that changed (``mode``, ``alerts.rules.sla``), the mapped
    field for mapping changes, and empty when the whole definition was added, removed or
    does not load. ``old`` and ``new`` are the values as text (None: not there).
    """

    scope: str  # sync | model | destination | source | project
    name: str
    key: str
    old: str | None
    new: str | None
    text: str
    consequence: str = ""
    resends: bool = False  # every row of the sync will be sent again


@dataclass(frozen=True)
class PlanOutcome:
    """The dry run of a sync in the new project: counts, or why it cannot run."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    retried: int = 0
    invalid: int = 0
    errors: tuple[str, ...] = ()


@dataclass
class SyncReview:
    """A sync that was added, removed or changed, directly or through what it uses."""

    name: str
    status: str  # added | removed | changed
    changes: list[Change] = field(default_factory=list)
    because: list[str] = field(default_factory=list)  # "model leads", "destination hubspot"
    plan: PlanOutcome | None = None


@dataclass
class Review:
    """Everything ``diff-config`` reports."""

    old_label: str  # the revision as given
    old_commit: str
    new_label: str  # a revision, or "working tree"
    new_commit: str | None
    old_error: str | None  # why the old project did not load (None: it loaded)
    changes: list[Change]
    syncs: list[SyncReview]

    @property
    def definitions(self) -> list[Change]:
        """Changes of models, destinations, sources and backhaul.yml."""
        return [c for c in self.changes if c.scope != "sync"]


def show(key: str, value: Any) -> str:
    """A config value as short text, as the user wrote it."""
    if value is None:
        return "unlimited" if key == "rate_limit" else "default"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        if not value:
            return "primary key" if key == "match.fields" else "none"
        return ", ".join(show(key, v) for v in value)
    if key == "rate_limit" and isinstance(value, dict):
        text = f"{show('', value.get('requests'))}/{show('', value.get('per_seconds', 1))}s"
        return text + (f", {value['per_day']}/day" if value.get("per_day") else "")
    if isinstance(value, dict):
        return ", ".join(f"{k} {show(k, v)}" for k, v in value.items()) or "none"
    return str(value)


_SENSITIVE = (
    "token",
    "secret",
    "password",
    "passwd",
    "api_key",
    "apikey",
    "private_key",
    "credential",
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+):([^@\s]+)@")


def masked(key: str, text: str) -> str:
    """``text`` with a secret written in plain text replaced by ``***``.

    A value that refers to the environment (``${env:NAME}``) is shown as written: the
    reference is no secret. A password in a URL (``postgresql://user:pw@host``) is masked.
    """
    leaf = key.rsplit(".", 1)[-1].lower()
    sensitive = leaf in SENSITIVE_HEADERS or any(word in leaf for word in _SENSITIVE)
    if sensitive and text not in ("default", "unset") and "${" not in text:
        return MASK
    return _URL_PASSWORD.sub(
        lambda m: m.group(1) + ":" + (m.group(2) if "${" in m.group(2) else MASK) + "@", text
    )


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value and not any(fnmatchcase(prefix, p) for p in _WHOLE):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _dump(config: Any, raw: Any = None) -> dict[str, Any]:
    if isinstance(config, BaseModel):
        dumped: dict[str, Any] = config.model_dump(mode="json", by_alias=True)
        return dumped
    return dict(raw or {})


def schedule_text(schedule: ScheduleConfig) -> str:
    """``every 1h``, ``cron 0 6 * * *``, ``cron 0 6 * * * (Europe/Berlin)``, ``manual``..."""
    if schedule.kind == "cron":
        return f"cron {schedule.cron}" + (f" ({schedule.timezone})" if schedule.timezone else "")
    return schedule.describe()


def mapping_text(mapping: Mapping) -> str:
    """What a mapping sends, in a few words."""
    if isinstance(mapping, ColumnMapping):
        text = f"column {mapping.column}" + (f" as {mapping.cast.value}" if mapping.cast else "")
    elif isinstance(mapping, StaticMapping):
        text = f"value {json.dumps(mapping.value)}"
    else:
        text = f"template {mapping.template}"
    return text + (f", nulls {mapping.nulls}" if mapping.nulls else "")


def _sync_values(config: SyncConfig) -> dict[str, Any]:
    values = _dump(config)
    values.pop("mappings", None)
    values["schedule"] = schedule_text(config.schedule)
    return _flat(values)


def _field_changes(scope: str, name: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    out = []
    for key in [*old, *(k for k in new if k not in old)]:
        if key in old and key in new and old[key] == new[key]:
            continue
        # `unset`: the key exists on one side only (a connector's type changed, say).
        old_text = masked(key, show(key, old[key])) if key in old else "unset"
        new_text = masked(key, show(key, new[key])) if key in new else "unset"
        said = say(scope, key, old_text, new_text, name=name)
        out.append(Change(scope, name, key, old_text, new_text, said.text, said.consequence))
    return out


def _mapping_changes(name: str, old: SyncConfig, new: SyncConfig) -> list[Change]:
    before = {m.field: mapping_text(m) for m in old.mappings}
    after = {m.field: mapping_text(m) for m in new.mappings}
    out = []
    for fld in [*before, *(f for f in after if f not in before)]:
        was, now = before.get(fld), after.get(fld)
        if was == now:
            continue
        kind = "mapping+" if was is None else "mapping-" if now is None else "mapping~"
        said = say("sync", fld, was or "", now or "", name=name, kind=kind)
        out.append(
            Change("sync", name, fld, was, now, said.text, said.consequence, kind != "mapping~")
        )
    return out


def _compare_defs(
    scope: str,
    old: Project,
    new: Project,
    old_label: str,
    values: Callable[[Project, str], dict[str, Any]],
    extra: Callable[[Project, Project, str], list[Change]] | None = None,
) -> list[Change]:
    folder = _FOLDERS[scope]
    old_defs: dict[str, Any] = getattr(old, folder)
    new_defs: dict[str, Any] = getattr(new, folder)
    old_bad = {n for f, n in old.broken if f == folder}
    new_bad = {n for f, n in new.broken if f == folder}
    names = sorted(set(old_defs) | set(new_defs) | old_bad | new_bad)
    out: list[Change] = []
    for name in names:
        was = name in old_defs or name in old_bad
        now = name in new_defs or name in new_bad
        if not was or not now:
            verb = "removed" if was else "added"
            consequence = _ADDED_OR_REMOVED.get((scope, verb), "")
            out.append(Change(scope, name, "", None, None, f"{scope} {name} {verb}", consequence))
        elif name in new_bad:
            first = new.broken_errors(folder, name)[0].message
            out.append(Change(scope, name, "", None, None, f"does not load now: {first}"))
        elif name in old_bad:
            out.append(
                Change(scope, name, "", None, None, f"did not load at {old_label}; loads now")
            )
        else:
            out += _field_changes(scope, name, values(old, name), values(new, name))
            if extra is not None:
                out += extra(old, new, name)
    return out


def _model_values(project: Project, name: str) -> dict[str, Any]:
    model = project.models[name]
    values = _flat(_dump(model.config))
    values.pop("sql", None)
    values["sql"] = " ".join(model.sql.split())  # whitespace alone is no change
    return values


def _model_changes(old: Project, new: Project, old_label: str) -> list[Change]:
    changes = _compare_defs("model", old, new, old_label, _model_values)
    # The SQL text itself belongs in the pull request's diff, not in every report.
    return [
        Change(c.scope, c.name, c.key, None, None, c.text, c.consequence) if c.key == "sql" else c
        for c in changes
    ]


def _connector_values(folder: str) -> Callable[[Project, str], dict[str, Any]]:
    def values(project: Project, name: str) -> dict[str, Any]:
        found = getattr(project, folder)[name]
        return _flat(_dump(found.config, found.raw))

    return values


def compare(
    old: Project | None, new: Project, old_label: str
) -> tuple[list[Change], list[SyncReview]]:
    """Every change from ``old`` to ``new``, and the syncs it concerns.

    ``old`` is None when the old revision did not load: every sync of ``new`` is then
    shown as added.
    """
    new_syncs = set(new.syncs) | set(new.broken_syncs)
    if old is None:
        return [], [SyncReview(name, "added") for name in sorted(new_syncs)]
    changes = _compare_defs(
        "sync",
        old,
        new,
        old_label,
        lambda p, n: _sync_values(p.syncs[n].config),
        lambda o, n, name: _mapping_changes(name, o.syncs[name].config, n.syncs[name].config),
    )
    definitions = (
        _model_changes(old, new, old_label)
        + _compare_defs("destination", old, new, old_label, _connector_values("destinations"))
        + _compare_defs("source", old, new, old_label, _connector_values("sources"))
    )
    project_changes = _field_changes(
        "project", new.config.name, _flat(_dump(old.config)), _flat(_dump(new.config))
    )
    reviews = _sync_reviews(changes, definitions + project_changes, old, new)
    return changes + definitions + project_changes, reviews


def _sync_reviews(
    changes: Iterable[Change], definitions: list[Change], old: Project, new: Project
) -> list[SyncReview]:
    touched = {(c.scope, c.name) for c in definitions}
    # A default in backhaul.yml matters to the syncs that do not set their own value.
    defaults = [c.key.split(".", 1)[1] for c in definitions if c.key.startswith("defaults.")]
    old_syncs = set(old.syncs) | set(old.broken_syncs)
    new_syncs = set(new.syncs) | set(new.broken_syncs)
    reviews: dict[str, SyncReview] = {}
    for change in changes:
        status = (
            "added"
            if change.name not in old_syncs
            else "removed"
            if change.name not in new_syncs
            else "changed"
        )
        reviews.setdefault(change.name, SyncReview(change.name, status)).changes.append(change)
    for name, sync in new.syncs.items():
        model = new.models.get(sync.config.model)
        uses = [("model", sync.config.model), ("destination", sync.config.destination)]
        if model is not None:
            uses.append(("source", model.config.source))
        because = [f"{scope} {used}" for scope, used in uses if (scope, used) in touched]
        because += [
            f"backhaul.yml defaults.{key}"
            for key in defaults
            if getattr(sync.config, key, None) is None
        ]
        if because:
            review = reviews.setdefault(name, SyncReview(name, "changed"))
            review.because = because
    return [reviews[n] for n in sorted(reviews)]


__all__ = [
    "Change",
    "PlanOutcome",
    "Review",
    "SyncReview",
    "compare",
    "mapping_text",
    "schedule_text",
    "show",
]
