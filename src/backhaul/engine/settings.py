"""The effective settings of one sync, resolved once per plan or run.

A value can come from the sync file, the project's ``defaults:``, the destination file
(:class:`~backhaul.destinations.base.RunFit`: a REST connector's calls in flight follow its
``rate_limit``) or the destination's capabilities; :func:`resolve_settings` is the one
place that decides which, so a dry run and the run that follows it always work with the
same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from backhaul.config.models import Mode
from backhaul.config.models import OnRemove
from backhaul.config.project import Project
from backhaul.config.project import SyncDef
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import RunFit
from backhaul.engine.finite import FinitePolicy
from backhaul.engine.finite import policy_for
from backhaul.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """What one sync runs with.

    Attributes:
        batch_size: Rows per destination batch (sync, else ``defaults.batch_size``, else
            the destination's default); a destination that takes a whole run in one
            batch sets it from its file (``RunFit.whole_run``).
        concurrency: Batches in flight at once (sync, else ``defaults.concurrency``, else
            what the destination file implies, else the destination's default).
        max_remove_pct: Removals above this share of the snapshot are guarded.
        removal: What a removed row does at the destination (``on_remove``).
        mode: How rows are written (``upsert``, ``mirror``, ``update``, ``insert``).
        finite: What happens to NaN and infinities (``non_finite`` and the destination).
        needs_match: The destination needs match fields to identify records.
        update_by_id: The destination updates a record by its stored id.
        batch_size_set: The files set ``batch_size`` (the sync or ``defaults:``): every
            run keeps to it, a first load too (see engine/plan/first_load.py).
    """

    batch_size: int
    concurrency: int
    max_remove_pct: float
    removal: OnRemove
    mode: Mode
    finite: FinitePolicy
    needs_match: bool
    update_by_id: bool
    batch_size_set: bool


def requested_batch_size(project: Project, sync: SyncDef) -> tuple[int | None, str]:
    """The batch size the files ask for and the key that set it (``None``: not set)."""
    if sync.config.batch_size is not None:
        return sync.config.batch_size, "batch_size"
    return project.config.defaults.batch_size, "defaults.batch_size"


def resolve_settings(
    project: Project, sync: SyncDef, caps: Capabilities, fit: RunFit | None = None
) -> SyncSettings:
    """Resolve ``sync``'s settings for a destination with ``caps`` and a file that implies ``fit``.

    Raises:
        ConfigError: a batch size above the destination's limit, or a ``non_finite``
            policy the destination cannot honour; the error names the file and key.
    """
    cfg = sync.config
    fit = fit or RunFit()
    asked, key = requested_batch_size(project, sync)
    size = asked or caps.default_batch_size
    if size > caps.max_batch_size:
        positions = sync.positions if key == "batch_size" else project.positions
        raise ConfigError(
            f"batch_size {size} is above the destination's limit of {caps.max_batch_size}",
            file=str(positions.file) if positions else "backhaul.yml",
            line=positions.line(key) if positions else None,
            key=key,
        )
    # A destination that takes a whole run as one batch says how many rows that is; the
    # file's batch_size was still checked above.
    size = fit.whole_run or size
    max_pct = cfg.max_remove_pct
    if max_pct is None:
        max_pct = project.config.defaults.max_remove_pct
    return SyncSettings(
        batch_size=size,
        concurrency=cfg.concurrency
        or project.config.defaults.concurrency
        or fit.concurrency
        or caps.default_concurrency,
        max_remove_pct=max_pct,
        removal=cfg.removal,
        mode=cfg.mode,
        finite=policy_for(sync, caps),
        needs_match=bool(caps.needs_match_fields),
        update_by_id=bool(caps.update_by_id),
        batch_size_set=asked is not None,
    )
