"""dbt integration: models read dbt relations, runs follow dbt runs, syncs become exposures.

Nothing here imports dbt itself: Backhaul reads the artifacts dbt writes
(``target/manifest.json`` and ``target/run_results.json``).
"""

from __future__ import annotations

from backhaul.dbt.manifest import DbtNode, Manifest, load_manifest, parse_ref
from backhaul.dbt.refs import RefResolver, model_nodes, model_refs

__all__ = [
    "DbtNode",
    "Manifest",
    "RefResolver",
    "load_manifest",
    "model_nodes",
    "model_refs",
    "parse_ref",
]
