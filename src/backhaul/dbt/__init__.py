"""dbt integration: models read dbt relations, runs follow dbt runs, syncs become exposures.

Nothing here imports dbt itself: Backhaul reads the artifacts dbt writes
(``target/manifest.json`` and ``target/run_results.json``).
"""

from __future__ import annotations

from backhaul.dbt.manifest import DbtNode
from backhaul.dbt.manifest import Manifest
from backhaul.dbt.manifest import load_manifest
from backhaul.dbt.manifest import parse_ref
from backhaul.dbt.refs import RefResolver
from backhaul.dbt.refs import model_nodes
from backhaul.dbt.refs import model_refs

__all__ = [
    "DbtNode",
    "Manifest",
    "RefResolver",
    "load_manifest",
    "model_nodes",
    "model_refs",
    "parse_ref",
]
