"""Read dbt's ``target/run_results.json`` and choose the syncs a dbt run made stale.

A sync is chosen when a dbt node its model reads (``dbt: name`` or ``{{ ref('name') }}``)
finished with status ``success`` in that dbt invocation: the relation was rebuilt, so the
model's rows may have changed. Tests (``pass``), failures, skips and nodes absent from the
run choose nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from backhaul.dbt.manifest import REF_TYPES
from backhaul.dbt.manifest import read_artifact
from backhaul.dbt.manifest import target_path
from backhaul.dbt.refs import RefResolver
from backhaul.dbt.refs import model_nodes
from backhaul.errors import ConfigError

if TYPE_CHECKING:
    from backhaul.config.project import Project
    from backhaul.config.project import SyncDef

REBUILT = "success"


@dataclass(frozen=True)
class NodeResult:
    """The outcome of one node in a dbt invocation."""

    unique_id: str
    status: str
    message: str = ""


@dataclass(frozen=True)
class RunResults:
    """One dbt invocation's results, by node id."""

    path: Path
    command: str  # build, run, seed, snapshot, test...
    generated_at: str
    results: dict[str, NodeResult]

    def rebuilt(self) -> set[str]:
        """Ids of the models, seeds and snapshots that were built successfully."""
        return {
            uid
            for uid, r in self.results.items()
            if r.status == REBUILT and uid.split(".", 1)[0] in REF_TYPES
        }


@dataclass(frozen=True)
class SyncChoice:
    """Whether a sync runs after the dbt invocation, and why."""

    sync: str
    run: bool
    reason: str


def default_path(project: Project) -> Path:
    """``run_results.json`` in the target folder of the project's ``dbt_project``.

    Raises:
        ConfigError: backhaul.yml has no ``dbt_project``.
    """
    folder = RefResolver(project.root, project.config.dbt_project).project_dir
    if folder is None:
        raise ConfigError(
            "--after-dbt needs the dbt project: set `dbt_project` in backhaul.yml, or pass "
            "the path of run_results.json"
        )
    return target_path(folder) / "run_results.json"


def load_run_results(path: Path) -> RunResults:
    """Read a run_results.json file (or the one in a dbt project's target folder).

    Raises:
        ConfigError: The file is missing or is not dbt run results.
    """
    if path.is_dir():
        path = (
            path / "run_results.json"
            if (path / "run_results.json").exists()
            else (target_path(path) / "run_results.json")
        )
    data = read_artifact(path, "dbt run results", "run `dbt build` (or `dbt run`) first")
    return parse_run_results(data, path)


def parse_run_results(data: Any, path: Path) -> RunResults:
    """Run results from the parsed JSON of a run_results.json (``path`` says where from).

    Raises:
        ConfigError: ``data`` is not dbt run results.
    """
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ConfigError(f"{path} is not a dbt run_results.json (it has no `results`)")
    results = {
        str(r["unique_id"]): NodeResult(
            str(r["unique_id"]), str(r.get("status")), str(r.get("message") or "")
        )
        for r in data["results"]
        if isinstance(r, dict) and "unique_id" in r
    }
    metadata = data.get("metadata") or {}
    args = data.get("args") or {}
    return RunResults(
        path, str(args.get("which") or ""), str(metadata.get("generated_at") or ""), results
    )


def choose_syncs(
    project: Project, results: RunResults, candidates: list[SyncDef]
) -> list[SyncChoice]:
    """For each candidate sync, whether the dbt run rebuilt what its model reads.

    Raises:
        ConfigError: The project's dbt manifest cannot be read.
    """
    manifest = RefResolver(project.root, project.config.dbt_project).manifest()
    rebuilt = results.rebuilt()
    choices: list[SyncChoice] = []
    for sync in candidates:
        model = project.models.get(sync.config.model)
        nodes = model_nodes(project, model, manifest) if model is not None else []
        if not nodes:
            choices.append(SyncChoice(sync.name, False, "its model reads no dbt model"))
            continue
        fresh = [n.name for n in nodes if n.unique_id in rebuilt]
        if fresh:
            names = ", ".join(f"`{n}`" for n in fresh)
            choices.append(SyncChoice(sync.name, True, f"dbt rebuilt {names} (success)"))
            continue
        states = []
        for n in nodes:
            r = results.results.get(n.unique_id)
            states.append(f"`{n.name}` {r.status}" if r else f"`{n.name}` not in this dbt run")
        choices.append(
            SyncChoice(sync.name, False, "nothing it reads was rebuilt: " + ", ".join(states))
        )
    return choices


__all__ = [
    "NodeResult",
    "RunResults",
    "SyncChoice",
    "choose_syncs",
    "default_path",
    "load_run_results",
    "parse_run_results",
]
