"""``backhaul alerts``: rules and current states, test notifications, mute and unmute."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from backhaul.cli.common import ProjectDir
from backhaul.cli.common import _console
from backhaul.cli.common import _load
from backhaul.cli.common import handles_errors
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError

alerts_app = typer.Typer(
    rich_markup_mode=None,
    help="Alert rules, their current state and history; test channels; mute syncs.",
    no_args_is_help=False,
    invoke_without_command=True,
)

RuleOption = Annotated[
    str | None, typer.Option("--rule", help="Only this rule (default: every rule of the sync).")
]


@alerts_app.callback()
@handles_errors
def alerts(
    ctx: typer.Context,
    project_dir: ProjectDir = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List every sync's alert rules with their current state."""
    if ctx.invoked_subcommand is not None:
        return
    from backhaul.alerts.status import alert_status
    from backhaul.api import open_store

    project = _load(project_dir)
    with open_store(project) as store:
        data = [s.as_dict() for s in alert_status(project, store)]
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table("sync", "rule", "alerts when", "state", "since", "channels", "message")
    for sync in data:
        for i, rule in enumerate(sync["rules"]):
            state = rule["state"] + (" (muted)" if rule["muted"] else "")
            colour = {"firing": "red", "ok": "green"}.get(rule["state"], "dim")
            table.add_row(
                sync["sync"] if i == 0 else "",
                rule["rule"],
                escape(rule["condition"]),
                f"[{colour}]{escape(state)}[/]",
                (rule["since"] or "")[:19].replace("T", " "),
                ", ".join(sync["channels"]) if i == 0 else "",
                escape(rule["message"] or ""),
            )
    _console().print(table)


@alerts_app.command("test")
@handles_errors
def test_channel(
    channel: Annotated[str, typer.Argument(help="A channel (a file in channels/).")],
    project_dir: ProjectDir = Path("."),
) -> None:
    """Send a test notification to CHANNEL and say whether it arrived."""
    from backhaul.alerts.engine import send_test
    from backhaul.api import open_store

    project = _load(project_dir)
    with open_store(project) as store:
        delivery = send_test(project, store, channel)
    if not delivery.ok:
        raise BackhaulError(f"the test notification to `{channel}` failed: {delivery.error}")
    _console().print(f"[green]sent[/]: a test notification to `{channel}`")


def _check_rule(project: Any, sync: str, rule: str | None) -> str:
    from backhaul.alerts.rules import sync_rules
    from backhaul.alerts.store import ALL_RULES
    from backhaul.config.alerts import RULE_NAMES

    project.sync(sync)
    if rule is None:
        return ALL_RULES
    if rule not in RULE_NAMES:
        raise ConfigError(f"unknown rule `{rule}` (rules: {', '.join(RULE_NAMES)})")
    if rule not in sync_rules(project, sync).names:
        _console(stderr=True).print(f"note: rule `{rule}` is not enabled for `{sync}`")
    return rule


def _set_mute(sync: str, rule: str | None, project_dir: Path, *, on: bool) -> None:
    from backhaul.alerts.store import AlertStore
    from backhaul.api import open_store

    project = _load(project_dir)
    which = _check_rule(project, sync, rule)
    with open_store(project) as store:
        alerts = AlertStore(store)
        done = alerts.mute(sync, which, by="cli") if on else alerts.unmute(sync, which)
    what = f"`{sync}`" + (f" rule `{rule}`" if rule else "")
    if on:
        said = "muted" if done else "was already muted"
    else:
        said = "unmuted" if done else "was not muted"
    _console().print(f"{what}: {said}")


@alerts_app.command("mute")
@handles_errors
def mute(
    sync: Annotated[str, typer.Argument(help="The sync to silence.")],
    rule: RuleOption = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Stop notifications of a sync (or one of its rules); states are still tracked."""
    _set_mute(sync, rule, project_dir, on=True)


@alerts_app.command("unmute")
@handles_errors
def unmute(
    sync: Annotated[str, typer.Argument(help="The sync to hear from again.")],
    rule: RuleOption = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Send notifications of a sync (or one of its rules) again."""
    _set_mute(sync, rule, project_dir, on=False)


__all__ = ["alerts_app"]
