"""`backhaul diff-config`: what a project change means, and what it would do now."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backhaul.cli.common import ProjectDir
from backhaul.cli.common import handles_errors
from backhaul.cli.common import print_json
from backhaul.errors import ConfigError

FORMATS = ("text", "markdown", "json")


@handles_errors
def diff_config_command(
    revision: Annotated[
        str,
        typer.Argument(metavar="REV", help="The revision to compare from (commit, branch, tag)."),
    ] = "HEAD",
    to: Annotated[
        str | None,
        typer.Option(
            "--to", metavar="REV", help="Compare with this revision, not the working tree."
        ),
    ] = None,
    project_dir: ProjectDir = Path("."),
    output: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="text|markdown|json",
            help="`markdown`: a pull-request comment; `json`: the shape in docs/review.md.",
        ),
    ] = "text",
    no_plan: Annotated[
        bool, typer.Option("--no-plan", help="Only compare; skip the dry run of changed syncs.")
    ] = False,
) -> None:
    """Explain what changed in the project since REV, and plan the changed syncs."""
    from backhaul.review import diff_config
    from backhaul.review.render import as_json
    from backhaul.review.render import markdown
    from backhaul.review.render import text

    if output not in FORMATS:
        raise ConfigError(f"--format takes `text`, `markdown` or `json`, not `{output}`")
    review = diff_config(project_dir, revision, to=to, plan=not no_plan)
    if output == "json":
        print_json(as_json(review))
    else:
        print(markdown(review) if output == "markdown" else text(review), end="")


__all__ = ["diff_config_command"]
