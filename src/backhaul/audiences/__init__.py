"""Audiences: people filtered from a parent model by conditions, compiled to SQL.

The data team declares what can be filtered in ``audience_schemas/<name>.yml``
(:mod:`.schema`); an audience is ``audiences/<name>.yml`` (:mod:`.audience`, conditions in
:mod:`.conditions`). The project loader checks both (:mod:`.typecheck`) and compiles each
audience into a model of the same name (:mod:`.compiler`, :mod:`.loading`), which syncs use
like any model. :mod:`.explore` asks the warehouse for size, sample, breakdown and overlap;
:mod:`.splits` and :mod:`.priority` hold the split hash and priority lists; :mod:`.cases`
runs an audience's test cases on DuckDB; :mod:`.writer` saves an audience back to YAML.
"""

from __future__ import annotations

from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.audience import AudienceTest
from backhaul.audiences.audience import Splits
from backhaul.audiences.cases import CaseResult
from backhaul.audiences.cases import run_tests
from backhaul.audiences.compiler import Compiler
from backhaul.audiences.defs import AudienceDef
from backhaul.audiences.defs import AudienceSchemaDef
from backhaul.audiences.explore import Explorer
from backhaul.audiences.explore import audience_size
from backhaul.audiences.explore import open_explorer
from backhaul.audiences.schema import AudienceSchemaConfig
from backhaul.audiences.writer import dump_audience
from backhaul.audiences.writer import save_audience

__all__ = [
    "AudienceConfig",
    "AudienceDef",
    "AudienceSchemaConfig",
    "AudienceSchemaDef",
    "AudienceTest",
    "CaseResult",
    "Compiler",
    "Explorer",
    "Splits",
    "audience_size",
    "dump_audience",
    "open_explorer",
    "run_tests",
    "save_audience",
]
