"""Dagster: one asset per sync, downstream of the dbt assets its model reads.

Example (``definitions.py``)::

    import dagster as dg
    from backhaul.integrations.dagster import BackhaulResource, backhaul_assets

    syncs = backhaul_assets("path/to/backhaul-project")
    defs = dg.Definitions(
        assets=[syncs],
        resources={"backhaul": BackhaulResource(project_dir="path/to/backhaul-project")},
    )

Each sync is one asset (key ``["backhaul", <sync>]``) of a multi-asset that can be subset,
so any selection of syncs materialises alone. An asset depends on the dbt assets of the
models its model reads (``dbt: name`` or ``{{ ref('name') }}``), keyed as dagster-dbt keys
them by default; override :meth:`BackhaulTranslator.get_dbt_asset_key` if yours differ.
"""

# No `from __future__ import annotations`: Dagster reads the `context` annotation itself.

from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from backhaul.config.project import ModelDef
from backhaul.config.project import Project
from backhaul.config.project import SyncDef
from backhaul.dbt.manifest import DbtNode
from backhaul.errors import BackhaulError
from backhaul.errors import ConfigError
from backhaul.integrations.common import SyncRunResult
from backhaul.integrations.common import failure
from backhaul.integrations.common import run_in_process

RESOURCE_KEY = "backhaul"


@dataclass(frozen=True)
class SyncProps:
    """What the translator is given for one sync.

    Attributes:
        sync: The sync's definition.
        model: Its model.
        destination_type: The destination's connector (``hubspot``, ``postgres``, ...).
        dbt_nodes: The dbt models, seeds or snapshots the model reads.
    """

    sync: SyncDef
    model: ModelDef | None
    destination_type: str
    dbt_nodes: tuple[DbtNode, ...]


class BackhaulTranslator:
    """Turns syncs into asset specs; subclass it to change keys, groups or metadata.

    Example::

        class MyTranslator(BackhaulTranslator):
            def get_asset_spec(self, props: SyncProps) -> dg.AssetSpec:
                return super().get_asset_spec(props).replace_attributes(group_name="crm")
    """

    def get_asset_key(self, props: SyncProps) -> dg.AssetKey:
        return dg.AssetKey(["backhaul", props.sync.name])

    def get_dbt_asset_key(self, node: DbtNode) -> dg.AssetKey:
        """The key dagster-dbt gives a dbt node by default: ``[schema, name]`` when the
        node's config sets a schema, else ``[name]``."""
        if node.config_schema:
            return dg.AssetKey([node.config_schema, node.name])
        return dg.AssetKey([node.name])

    def get_asset_spec(self, props: SyncProps) -> dg.AssetSpec:
        config = props.sync.config
        return dg.AssetSpec(
            key=self.get_asset_key(props),
            deps=[self.get_dbt_asset_key(n) for n in props.dbt_nodes],
            description=config.description
            or f"Sync `{props.sync.name}`: model `{config.model}` to `{config.destination}`.",
            group_name="backhaul",
            kinds={"backhaul", props.destination_type},
            tags={t: "" for t in config.tags if _tag_key_ok(t)},
            metadata={
                "model": config.model,
                "destination": config.destination,
                "mode": config.mode.value,
            },
            skippable=True,
        )


def _tag_key_ok(tag: str) -> bool:
    # Dagster tag keys: letters, digits, `-`, `_`, `.`, at most 63 characters.
    return 0 < len(tag) <= 63 and all(c.isalnum() or c in "-_." for c in tag)


class BackhaulResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Runs syncs of one Backhaul project in the Dagster process.

    Attributes:
        project_dir: The Backhaul project folder.
        web_url: Where ``backhaul serve`` shows this project (for the run's URL in the
            materialisation's metadata); leave unset when nobody serves it.
        max_rejected: Fail the step when a run rejects more rows than this (None: rejected
            rows never fail it; they are retried on the next run).
        fail_on_partial: Fail the step on any partial run (some rows rejected).
        full_resync: Send every row, not only the changes.
    """

    project_dir: str
    web_url: str | None = None
    max_rejected: int | None = None
    fail_on_partial: bool = False
    full_resync: bool = False

    def load_project(self) -> Project:
        from backhaul import api

        return api.load_project(self.project_dir)

    def run_sync(self, sync: str) -> SyncRunResult:
        """Run one sync now; the result's status says how it went (nothing is raised)."""
        return run_in_process(
            self.project_dir,
            sync,
            full_resync=self.full_resync,
            trigger="dagster",
            web_url=self.web_url,
        )

    def failure(self, result: SyncRunResult) -> str | None:
        """Why ``result`` fails the step under this resource's thresholds, or None."""
        return failure(result, fail_on_partial=self.fail_on_partial, max_rejected=self.max_rejected)


def sync_props(project: Project, sync: SyncDef) -> SyncProps:
    """The translator's view of ``sync`` (the dbt manifest is read when a model refers)."""
    from backhaul.dbt.refs import RefResolver
    from backhaul.dbt.refs import model_nodes
    from backhaul.dbt.refs import model_refs

    model = project.models.get(sync.config.model)
    nodes: tuple[DbtNode, ...] = ()
    if model is not None and model_refs(project, model):
        manifest = RefResolver(project.root, project.config.dbt_project).manifest()
        nodes = tuple(model_nodes(project, model, manifest))
    dest = project.destinations.get(sync.config.destination)
    dest_type = str(dest.raw.get("type", "")) if dest is not None else ""
    return SyncProps(sync, model, dest_type or "destination", nodes)


def metadata(result: SyncRunResult) -> dict[str, Any]:
    """The materialisation's metadata: counts, status, run id and URL."""
    out: dict[str, Any] = {
        "added": result.count("added"),
        "changed": result.count("changed"),
        "removed": result.count("removed"),
        "rejected": result.count("rejected"),
        "succeeded": result.count("succeeded"),
        "invalid": result.count("invalid"),
        "status": result.status.value,
        "run_id": result.run_id,
    }
    if result.url:
        out["run_url"] = dg.MetadataValue.url(result.url)
    return out


def backhaul_assets(
    project_dir: str | Path,
    *,
    syncs: Sequence[str] | None = None,
    translator: BackhaulTranslator | None = None,
    name: str = "backhaul_syncs",
    resource_key: str = RESOURCE_KEY,
) -> dg.AssetsDefinition:
    """One multi-asset with an asset per sync of the project in ``project_dir``.

    Materialising it runs the selected syncs one after another with the resource under
    ``resource_key`` (a :class:`BackhaulResource`). Each finished run yields a
    ``MaterializeResult`` with its counts; a run that failed yields none. After every
    selected sync ran, the step fails (``dagster.Failure``) if any run failed or broke the
    resource's rejected-rows threshold; the others' materialisations stay recorded.

    Args:
        project_dir: The Backhaul project folder (read now, to build the specs).
        syncs: Only these syncs (default: every enabled sync).
        translator: Customises the asset specs.
        name: The multi-asset's op name.
        resource_key: The key of the :class:`BackhaulResource` in your Definitions.

    Raises:
        ConfigError: The project does not load, or a named sync does not exist.
    """
    from backhaul import api

    project = api.load_project(project_dir)
    translator = translator or BackhaulTranslator()
    if syncs is None:
        chosen = [s for _, s in sorted(project.syncs.items()) if s.config.enabled]
    else:
        chosen = [project.sync(n) for n in syncs]
    if not chosen:
        raise ConfigError(f"the project in {project_dir} has no enabled syncs to make assets of")
    by_key = {}
    specs = []
    for sync in chosen:
        spec = translator.get_asset_spec(sync_props(project, sync))
        by_key[spec.key] = sync.name
        specs.append(spec)

    @dg.multi_asset(specs=specs, name=name, can_subset=True, required_resource_keys={resource_key})
    def _syncs(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:  # type: ignore[type-arg]
        resource: BackhaulResource = getattr(context.resources, resource_key)
        problems: list[str] = []
        for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
            sync = by_key[key]
            context.log.info(f"running sync `{sync}`")
            try:
                result = resource.run_sync(sync)
            except BackhaulError as exc:  # the run could not start (config, connection)
                problems.append(f"sync `{sync}` did not run: {exc}")
                context.log.error(problems[-1])
                continue
            reason = resource.failure(result)
            if result.status.value not in ("failed", "guarded", "cancelled"):
                yield dg.MaterializeResult(asset_key=key, metadata=metadata(result))
            if reason is not None:
                context.log.error(reason)
                problems.append(reason)
        if problems:
            raise dg.Failure(description="; ".join(problems))

    return _syncs


__all__ = [
    "RESOURCE_KEY",
    "BackhaulResource",
    "BackhaulTranslator",
    "SyncProps",
    "backhaul_assets",
    "metadata",
    "sync_props",
]
