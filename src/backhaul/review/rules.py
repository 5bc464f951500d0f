"""What a changed key means, in words: one table from key to sentence and consequence.

A rule's ``text`` and ``consequence`` are :meth:`str.format` templates over ``name``,
``key``, ``old`` and ``new`` (values already shown as text). ``consequence`` may depend on
the values: a dict from ``old->new`` or from the new value to its sentence (``"*"`` for
any other value).
A key no rule names is shown as ``key: old -> new``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Rule:
    text: str
    consequence: str | dict[str, str] = ""

    def consequence_for(self, old: str, new: str) -> str:
        """The sentence for ``old -> new``, else for ``new``, else for any value."""
        if isinstance(self.consequence, str):
            return self.consequence
        by = self.consequence
        return by.get(f"{old}->{new}", by.get(new, by.get("*", "")))


@dataclass(frozen=True)
class Said:
    """A change put in words."""

    text: str
    consequence: str = ""


_REMOVED_ROWS = {
    "delete": "rows that leave the model will now be deleted at the destination",
    "clear": "rows that leave the model will now have their mapped fields cleared",
    "nothing": "rows that leave the model will now be left as they are at the destination",
    "default": "rows that leave the model are deleted in mirror mode, taken out of the list "
    "in membership mode, left alone otherwise",
}

# Destination keys that say where records go: changed, the snapshot no longer describes
# what is there.
_TARGET_KEYS = (
    "path", "format", "schema", "table", "url", "base_url", "subdomain", "region", "site_id",
    "spreadsheet_id", "sheet", "user_list", "webhook_url", "servers", "queue", "exchange",
    "routing_key", "stream", "subject", "topic",
)  # fmt: skip
_ELSEWHERE = (
    "records go elsewhere; only changes travel, so the new place gets just the rows that "
    "differ from the snapshot: `backhaul run --full-resync` sends every row"
)

# (scope, key pattern) -> rule; the first pattern that matches wins.
RULES: dict[tuple[str, str], Rule] = {
    # -- syncs ----------------------------------------------------------------------------
    ("sync", "mode"): Rule(
        "mode {old} -> {new}",
        {
            "mirror": "rows that leave the model will now be deleted at the destination",
            "mirror->upsert": "records will be created or updated; rows that leave the model "
            "are no longer deleted",
            "upsert": "records will be created or updated",
            "membership": "rows that enter the model will be added to the list, rows that "
            "leave it taken out",
            "update": "only records that already exist will be updated; new rows are not created",
            "insert": "only new records will be created; changes to existing ones are not sent",
        },
    ),
    ("sync", "on_remove"): Rule("on_remove {old} -> {new}", _REMOVED_ROWS),
    ("sync", "max_remove_pct"): Rule(
        "max_remove_pct {old} -> {new}",
        {
            "default": "the project's default removal guard applies",
            "*": "a run that would remove more than {new}% of the records stops before sending",
        },
    ),
    ("sync", "match.fields"): Rule(
        "match field {old} -> {new}", "records will be matched by {new}"
    ),
    ("sync", "schedule"): Rule(
        "schedule {old} -> {new}",
        {
            "manual": "it will run only when asked",
            "*": "the scheduler will start its runs on the new schedule",
        },
    ),
    ("sync", "enabled"): Rule(
        "enabled {old} -> {new}",
        {
            "false": "the scheduler will stop running it and `run --all` skips it",
            "true": "the scheduler and `run --all` will run it again",
        },
    ),
    ("sync", "model"): Rule(
        "model {old} -> {new}",
        "rows of the new model are compared with what the old one delivered",
    ),
    ("sync", "destination"): Rule(
        "destination {old} -> {new}",
        "only changes travel: the new destination gets rows that differ from the snapshot; "
        "`backhaul run --full-resync` sends every row",
    ),
    ("sync", "object"): Rule(
        "object {old} -> {new}",
        "only changes travel: the new object gets rows that differ from the snapshot; "
        "`backhaul run --full-resync` sends every row",
    ),
    ("sync", "nulls"): Rule(
        "nulls {old} -> {new}",
        {"skip": "null values will no longer be sent", "send": "null values will be sent"},
    ),
    ("sync", "non_finite"): Rule("non_finite {old} -> {new}", "NaN and Infinity are handled anew"),
    ("sync", "planner"): Rule(
        "planner {old} -> {new}", "change detection will run in the {new} planner"
    ),
    ("sync", "batch_size"): Rule("batch_size {old} -> {new}", "records are sent {new} at a time"),
    ("sync", "concurrency"): Rule("concurrency {old} -> {new}", "{new} requests at once"),
    ("sync", "tags"): Rule("tags {old} -> {new}", "selectors with `tag:` choose it differently"),
    ("sync", "writeback.*"): Rule("writeback {key}: {old} -> {new}", "sync logs in the warehouse"),
    ("sync", "alerts.rules.*"): Rule(
        "alert rule {key}: {old} -> {new}", "when people are alerted changes"
    ),
    ("sync", "alerts.*"): Rule("alerts {key}: {old} -> {new}", "who is alerted changes"),
    ("sync", "mapping+"): Rule("mapping {key} added ({new})", "every row will be sent again"),
    ("sync", "mapping-"): Rule(
        "mapping {key} removed (was {old})",
        "the field is no longer sent; every row will be sent again",
    ),
    ("sync", "mapping~"): Rule(
        "mapping {key}: {old} -> {new}", "rows whose value changes will be sent again"
    ),
    # -- models ---------------------------------------------------------------------------
    ("model", "sql"): Rule("SQL changed", "rows whose mapped values change will be sent"),
    ("model", "primary_key"): Rule(
        "primary key {old} -> {new}",
        "every row gets a new key: the old keys leave the model and the new ones are added",
    ),
    ("model", "source"): Rule("source {old} -> {new}", "rows are read from another warehouse"),
    # -- destinations and sources ---------------------------------------------------------
    **{("destination", key): Rule("{key} {old} -> {new}", _ELSEWHERE) for key in _TARGET_KEYS},
    ("destination", "rate_limit"): Rule(
        "rate_limit {old} -> {new}", "requests to the destination are paced at {new}"
    ),
    ("destination", "type"): Rule("type {old} -> {new}", "another connector writes the records"),
    ("source", "path"): Rule("path {old} -> {new}", "rows are read from another database"),
    # -- backhaul.yml ---------------------------------------------------------------------
    ("project", "defaults.max_remove_pct"): Rule(
        "default max_remove_pct {old} -> {new}",
        "syncs without their own max_remove_pct stop when removing more than {new}%",
    ),
    ("project", "alerts.rules.*"): Rule(
        "alert rule {key}: {old} -> {new}", "when people are alerted changes for every sync"
    ),
    ("project", "alerts.*"): Rule("alerts {key}: {old} -> {new}", "alerting of every sync"),
    ("project", "scheduler.*"): Rule("scheduler {key}: {old} -> {new}", "how scheduled runs start"),
    ("project", "state.*"): Rule("state {key}: {old} -> {new}", "where state is kept"),
}

_FALLBACK = Rule("{key}: {old} -> {new}")


def say(scope: str, key: str, old: str, new: str, *, name: str = "", kind: str = "") -> Said:
    """The sentence and consequence of ``key`` of a ``scope`` changing from ``old`` to
    ``new``; ``kind`` picks the rule instead of ``key`` (``mapping+`` for a mapped field)."""
    rule = next(
        (r for (s, p), r in RULES.items() if s == scope and fnmatchcase(kind or key, p)),
        _FALLBACK,
    )
    # `alerts.rules.sla` under `alerts.rules.*` reads as `sla`: the rule says the rest.
    prefix = next(
        (
            p[:-1]
            for (s, p) in RULES
            if s == scope and p.endswith("*") and fnmatchcase(kind or key, p)
        ),
        "",
    )
    short = key[len(prefix) :] if prefix else key
    values = {"name": name, "key": short, "old": old, "new": new}
    return Said(rule.text.format(**values), rule.consequence_for(old, new).format(**values))


__all__ = ["RULES", "Rule", "Said", "say"]
