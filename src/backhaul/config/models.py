"""Pydantic models of the project files. Unknown keys are errors (``extra="forbid"``).

The JSON Schema in ``backhaul schema`` is generated from these models, never written by
hand. Destination and source config models live beside their connectors and are looked
up by ``type`` in the project's plugin registry.
"""

from __future__ import annotations

import ipaddress
import math
from enum import StrEnum
from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import AfterValidator
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

from backhaul.config.alerts import AlertsConfig
from backhaul.config.alerts import SyncAlertsConfig
from backhaul.config.fields import one_or_many
from backhaul.config.schedule import ScheduleConfig
from backhaul.config.schedule import SchedulerConfig
from backhaul.config.schedule import manual_if_empty

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RowLogConfig(Strict):
    """`state.row_logs`: where runs keep the outcome of every row that went well, and for
    how long (docs/state.md#row-logs). Rejected and invalid rows stay in the run store."""

    path: str = Field(
        "row_logs",
        min_length=1,
        description="Folder of the row logs (one Parquet file per run); relative to "
        "`state.path`. Every machine that runs syncs or serves the web app should reach it.",
    )
    keep_days: float | None = Field(
        30,
        gt=0,
        description="Delete a run's row log once the run started more than this many days "
        "ago; null keeps them regardless of age. Run records are never deleted.",
    )
    keep_runs: int | None = Field(
        None,
        ge=1,
        description="Also keep only the row logs of the newest this many runs of each sync.",
    )


class StateConfig(Strict):
    """Where Backhaul keeps its state."""

    path: str = Field(".backhaul", description="Folder for local state (snapshots, run store).")
    metadata_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the run store; default: a SQLite file in `path`.",
    )
    memory_limit: str = Field(
        "1GB",
        description="DuckDB memory limit for planning: a size (`512MB`, `2GB`, `1.5GiB`; "
        "units B, KB, MB, GB, TB or KiB, MiB, GiB, TiB) or a share of the RAM (`50%`).",
    )
    threads: int | None = Field(None, ge=1, description="DuckDB threads for planning.")
    row_logs: RowLogConfig = Field(
        default_factory=RowLogConfig,
        description="Row logs: per-row outcomes of runs, in Parquet, with retention.",
    )
    budget_url: str | None = Field(
        None,
        pattern=r"^rediss?://",
        description="Redis URL (`redis://host:6379/0`) holding the rate-limit budget each "
        "destination account shares across syncs and workers; default: the metadata store "
        "when it is Postgres, else each run keeps its own limiter.",
    )

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _memory_limit(cls, value: Any) -> str:
        from backhaul.duck import check_memory_limit

        return check_memory_limit(value)


class HooksConfig(Strict):
    """`hooks:` SQL run on the model's source warehouse around a run (docs/runs.md#hooks)."""

    pre: list[str] | None = Field(
        None,
        description="Statements run before the model is read (e.g. refresh a materialised "
        "view); one failing fails the run before anything is read or sent.",
    )
    post: list[str] | None = Field(
        None,
        description="Statements run after the run committed (e.g. write an audit row); Liquid "
        "variables `run.id`, `run.status`, `run.sync` and the counts (`run.succeeded`...).",
    )

    @field_validator("pre", "post")
    @classmethod
    def _not_blank(cls, value: list[str] | None) -> list[str] | None:
        for i, text in enumerate(value or []):
            if not text.strip():
                raise ValueError(f"hook {i} is empty; write a SQL statement or remove it")
        return value


class Defaults(Strict):
    max_remove_pct: float = Field(20.0, ge=0, le=100)
    batch_size: int | None = Field(None, gt=0)
    concurrency: int | None = Field(None, gt=0, le=64)
    hooks: HooksConfig = Field(
        default_factory=HooksConfig,
        description="Hooks of every sync whose own `hooks` does not set that list.",
    )


def check_proxy_address(value: str) -> str:
    """``value`` when it is an IP address or network (``10.0.0.5``, ``10.1.0.0/16``).

    Raises:
        ValueError: For anything else, with an example of what is accepted.
    """
    text = value.strip()
    try:
        if "/" in text:
            ipaddress.ip_network(text, strict=False)
        else:
            ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or network; write e.g. 10.0.0.5 or 10.1.0.0/16"
        ) from None
    return text


ProxyAddress = Annotated[str, AfterValidator(check_proxy_address)]


class WebConfig(Strict):
    """Settings of `backhaul serve`; its command-line options override them."""

    session_idle_timeout: int = Field(
        3600, gt=0, description="Seconds a signed-in session may go unused before it ends."
    )
    session_max_age: int = Field(
        8 * 3600, gt=0, description="Seconds a session lasts after sign-in, however busy."
    )
    login_rate: int = Field(
        5, gt=0, description="Failed sign-ins per minute for one user name from one address."
    )
    login_rate_per_address: int = Field(
        20, gt=0, description="Failed sign-ins per minute from one address, whatever the names."
    )
    trusted_proxies: list[ProxyAddress] = Field(
        default_factory=list,
        description="Addresses or networks of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto headers are believed; none by default.",
    )


class DbtCloudConfig(Strict):
    """The dbt Cloud webhook receiver of `backhaul serve` (see docs/orchestrators.md)."""

    webhook_secret: str = Field(
        min_length=1,
        description="The webhook's secret from dbt Cloud, as `${env:NAME}`; each event's "
        "`Authorization` header must be the HMAC-SHA256 of its body with this key.",
    )
    api_token: str = Field(
        min_length=1,
        description="A dbt Cloud API token (as `${env:NAME}`) that may read run artifacts.",
    )
    base_url: str = Field(
        "https://cloud.getdbt.com",
        description="Your dbt Cloud access URL (region or single-tenant host).",
    )
    job_ids: list[int] = Field(
        default_factory=list,
        description="Only events of these jobs run syncs (default: events of every job).",
    )


class TargetConfig(Strict):
    """One environment of `targets:` (like dbt's targets): values laid over the files."""

    sources: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per source name, keys that replace those of `sources/NAME.yml`.",
    )
    destinations: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per destination name, keys that replace those of `destinations/NAME.yml`.",
    )
    state: dict[str, Any] = Field(
        default_factory=dict, description="Keys that replace those of `state:` above."
    )


class ApprovalConfig(Strict):
    """`approval:` in backhaul.yml: runs only from commits an admin approved (docs/git.md)."""

    required: bool = Field(
        False,
        description="Refuse to run (`backhaul run`, schedules, workers, the web app, the "
        "Python API) unless the project's commit was approved by an admin and its files "
        "have no uncommitted changes; editors' web saves become drafts. Dry runs still work.",
    )
    branch: str = Field(
        "main",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$",
        description="The branch approved drafts are merged into (the one the server runs).",
    )

    @field_validator("branch")
    @classmethod
    def _branch_name(cls, value: str) -> str:
        if ".." in value or value.endswith((".", "/", ".lock")) or "//" in value:
            raise ValueError(f"`{value}` is not a Git branch name")
        return value


class ProjectConfig(Strict):
    """`backhaul.yml` at the project root."""

    name: str = Field(pattern=NAME_PATTERN)
    version: Literal[1] = 1
    state: StateConfig = StateConfig()
    defaults: Defaults = Defaults()
    web: WebConfig = WebConfig()
    dbt_project: str | None = Field(
        None,
        description="The dbt project folder (relative to backhaul.yml) whose manifest "
        "resolves `dbt:` models and `{{ ref('name') }}` in model SQL.",
    )
    owner: str | None = Field(
        None, description="Who owns these syncs, as `Name <email>`; used in dbt exposures."
    )
    dbt_cloud: DbtCloudConfig | None = Field(
        None,
        description="Run the syncs a dbt Cloud job rebuilt when its completion webhook "
        "arrives at `backhaul serve` (POST /api/v1/dbt-cloud/webhook).",
    )
    alerts: AlertsConfig = Field(
        default_factory=AlertsConfig, description="Alert rules and channels of every sync."
    )
    scheduler: SchedulerConfig = Field(
        default_factory=SchedulerConfig, description="How scheduled runs are started."
    )
    approval: ApprovalConfig = Field(
        default_factory=ApprovalConfig,
        description="Require an admin's approval of each commit before it runs (off by default).",
    )
    targets: dict[str, TargetConfig] = Field(
        default_factory=dict,
        description="Environments (dev, prod, ...) chosen with `--target NAME` or "
        "BACKHAUL_TARGET: each lays its values over sources, destinations and state.",
    )
    default_target: str | None = Field(
        None,
        description="The target used when none is chosen (default: none, the files as written).",
    )


class DuckDBSourceConfig(Strict):
    """An embedded DuckDB warehouse: a file, or in memory."""

    type: Literal["duckdb"]
    path: str = Field(":memory:", description="Database file, relative to the project.")
    read_only: bool = True
    setup_sql: str | None = Field(None, description="SQL run once when the source opens.")
    description: str | None = None


class ModelConfig(Strict):
    """`models/NAME.yml`: a SQL query (or a table) with a primary key."""

    source: str
    primary_key: Annotated[list[str], one_or_many] = Field(min_length=1)
    sql: str | None = Field(None, description="Inline SQL; default is models/NAME.sql.")
    table: str | None = Field(None, description="Read a whole table instead of SQL.")
    dbt: str | None = Field(
        None,
        description="Read a whole dbt model: its name or `ref('name')`, resolved through "
        "the manifest of `dbt_project` in backhaul.yml.",
    )
    description: str | None = None
    tags: list[str] = []

    @model_validator(mode="after")
    def _one_query(self) -> ModelConfig:
        given = [k for k in ("sql", "table", "dbt") if getattr(self, k) is not None]
        if len(given) == 2:
            raise ValueError(f"give either `{given[0]}` or `{given[1]}`, not both")
        if len(given) > 2:
            raise ValueError("give only one of `sql`, `table` or `dbt`")
        return self


class Cast(StrEnum):
    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DATE = "date"
    TIMESTAMP = "timestamp"
    JSON = "json"


class ColumnMapping(Strict):
    """Copy a model column to a destination field, optionally cast."""

    column: str
    field: str = Field(description="Target field; dots make nested objects (`address.city`).")
    cast: Cast | None = None
    nulls: Literal["send", "skip"] | None = None


class StaticMapping(Strict):
    """Send the same value for every record."""

    value: str | int | float | bool | None
    field: str
    nulls: Literal["send", "skip"] | None = None

    @field_validator("value")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("a static value must be a finite number (JSON has no NaN or Infinity)")
        return value


class TemplateMapping(Strict):
    """Render a Liquid template with the row's columns as variables."""

    template: str
    field: str
    cast: Cast | None = None
    nulls: Literal["send", "skip"] | None = None


Mapping = ColumnMapping | StaticMapping | TemplateMapping


class Mode(StrEnum):
    UPSERT = "upsert"
    UPDATE = "update"
    INSERT = "insert"
    MIRROR = "mirror"
    # Rows entering the model join a list or audience, rows leaving it are taken out
    # (destinations that declare Capabilities.membership).
    MEMBERSHIP = "membership"


class OnRemove(StrEnum):
    NOTHING = "nothing"
    CLEAR = "clear"
    DELETE = "delete"


class NonFinite(StrEnum):
    """What a sync sends for NaN, +Infinity and -Infinity."""

    INVALID = "invalid"  # the row is invalid, with a reason naming the column
    NULL = "null"  # null instead of the value
    STRING = "string"  # the text "NaN", "Infinity" or "-Infinity" (JSON destinations)


class MatchConfig(Strict):
    """How a record is identified at the destination."""

    fields: Annotated[list[str], one_or_many] = Field(
        default_factory=list,
        description="Target fields that identify a record (default: the fields the primary "
        "key columns map to).",
    )


class WritebackConfig(Strict):
    """`writeback:` in a sync file: sync logs written back to the source warehouse."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: bool = False
    schema_: str = Field(
        "backhaul_logs",
        alias="schema",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Schema in the source warehouse for the runs and changelog tables.",
    )


_BATCH_SIZE = "Records per batch (default: the project's, else the destination's)."
_CONCURRENCY = "Batches in flight at once (default: the project's, else the destination's)."
_MAX_REMOVE = (
    "A run that would remove more than this share (0-100) of the rows stops before sending "
    "anything (default: the project's, 20)."
)


class SyncConfig(Strict):
    """`syncs/NAME.yml`: a model sent to a destination."""

    model: str
    destination: str
    object: str | None = Field(None, description="Table, file or object type at the destination.")
    mode: Mode = Mode.UPSERT
    on_remove: OnRemove | None = Field(
        None,
        description="What to do with rows that left the model (default: delete in mirror "
        "and membership mode, nothing otherwise).",
    )
    nulls: Literal["send", "skip"] = "send"
    non_finite: NonFinite | None = Field(
        None,
        description="NaN and Infinity in a mapped field: `invalid` (the row is not sent), "
        '`null` or `string` ("NaN", "Infinity", "-Infinity"; JSON destinations). '
        "Default: invalid, except that Postgres and DuckDB tables store them as they are.",
    )
    match: MatchConfig = MatchConfig()
    mappings: list[Annotated[Mapping, Field(union_mode="left_to_right")]] = Field(min_length=1)
    batch_size: int | None = Field(None, gt=0, le=100_000, description=_BATCH_SIZE)
    concurrency: int | None = Field(None, gt=0, le=64, description=_CONCURRENCY)
    max_remove_pct: float | None = Field(None, ge=0, le=100, description=_MAX_REMOVE)
    tags: list[str] = Field([], description="Names to select syncs by (`tag:NAME`).")
    enabled: bool = True
    description: str | None = None
    planner: Literal["local", "warehouse"] = Field(
        "local",
        description="Where change detection runs: `local` (DuckDB next to Backhaul) or "
        "`warehouse` (snapshot tables and the diff inside the source warehouse).",
    )
    planner_schema: str = Field(
        "backhaul_planner",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Schema Backhaul owns in the warehouse for `planner: warehouse`.",
    )
    writeback: WritebackConfig = Field(
        WritebackConfig(),
        description="Sync logs written back to the source warehouse: `enabled`, `schema`.",
    )
    hooks: HooksConfig = Field(
        default_factory=HooksConfig,
        description="SQL run on the model's source: `pre` before the model is read, `post` "
        "after the run committed (replaces the project's `defaults.hooks` list by list).",
    )
    alerts: SyncAlertsConfig = Field(
        default_factory=SyncAlertsConfig, description="Alert rules and channels of this sync."
    )
    schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig,
        description="When the sync runs on its own: `every`, `cron` (+ `timezone`), `after` "
        "other syncs, `after_dbt`, or `manual` (the default).",
    )

    @field_validator(
        "schedule", mode="before", json_schema_input_type=ScheduleConfig | Literal["manual"]
    )
    @classmethod
    def _manual(cls, value: Any) -> Any:
        return manual_if_empty(value)

    @property
    def removal(self) -> OnRemove:
        if self.on_remove is not None:
            return self.on_remove
        return OnRemove.DELETE if self.mode in (Mode.MIRROR, Mode.MEMBERSHIP) else OnRemove.NOTHING

    @model_validator(mode="after")
    def _unique_fields(self) -> SyncConfig:
        seen: set[str] = set()
        for m in self.mappings:
            if m.field in seen:
                raise ValueError(f"field `{m.field}` is mapped twice")
            seen.add(m.field)
        return self
