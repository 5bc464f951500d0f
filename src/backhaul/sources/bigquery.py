"""BigQuery warehouse: results stream as Arrow through ``RowIterator.to_arrow_iterable``.

The driver (``google-cloud-bigquery``) is imported on first use; install it with ``pip
install google-cloud-bigquery`` (the ``bigquery`` extra). Columns are found with a dry run,
which is free.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any
from typing import Literal

import pyarrow as pa
from pydantic import Field

from backhaul.sources.common import DbApiSource
from backhaul.sources.common import SourceConfig
from backhaul.sources.common import limit_zero
from backhaul.sources.common import strip_sql
from backhaul.sources.common import tables_reader


class BigQuerySourceConfig(SourceConfig):
    """A Google Cloud project whose datasets the models read."""

    type: Literal["bigquery"]
    project: str = Field(description="Project that runs (and pays for) the queries.")
    credentials_path: str | None = Field(
        None, description="Service-account JSON file; default: application default credentials."
    )
    location: str | None = Field(None, description="Dataset location, e.g. `EU`.")
    endpoint: str | None = Field(None, description="API endpoint override (emulators, proxies).")


class BigQuerySource(DbApiSource[BigQuerySourceConfig]):
    """Runs model SQL in BigQuery and streams the result as Arrow batches."""

    driver = "google.cloud.bigquery"
    package = "google-cloud-bigquery"
    connect_hint = "check `project`, `credentials_path` and the account's BigQuery roles"

    def _where(self) -> str:
        return f"project {self.config.project}"

    def _open(self, module: ModuleType) -> Any:
        cfg = self.config
        options: dict[str, Any] = {"project": cfg.project, "location": cfg.location}
        if cfg.endpoint:
            options["client_options"] = {"api_endpoint": cfg.endpoint}
        if cfg.credentials_path:
            path = self.project_dir / cfg.credentials_path
            return module.Client.from_service_account_json(str(path), **options)
        return module.Client(**options)

    def _job_config(self, module: ModuleType, **options: Any) -> Any:
        return module.QueryJobConfig(**options)

    def run_statement(self, sql: str) -> None:
        """Run one statement (a sync's hooks) as a query job and wait for it."""
        self._connect().query(sql).result()

    def columns(self, sql: str) -> dict[str, str]:
        """Column names and BigQuery types of ``sql``, from a (free) dry run."""
        client = self._connect()
        module = self._module()
        try:
            job = client.query(
                limit_zero(sql, self.dialect),
                job_config=self._job_config(module, dry_run=True, use_query_cache=False),
                timeout=self.config.connect_timeout,
            )
            return {f.name: f.field_type for f in job.schema or []}
        except Exception as exc:
            raise self._query_error(exc) from None

    def stream(self, sql: str, batch_size: int = 100_000) -> pa.RecordBatchReader:
        """Stream the result pages as Arrow record batches."""
        client = self._connect()
        try:
            rows = client.query(strip_sql(sql)).result(page_size=batch_size)
            batches = iter(rows.to_arrow_iterable())
        except Exception as exc:
            raise self._query_error(exc) from None

        def empty() -> pa.Schema:
            return rows.to_arrow().schema

        return tables_reader(
            batches, empty, batch_size, on_error=self._query_error, finish=lambda: None
        )

    def check(self) -> None:
        """Run a trivial query."""
        client = self._connect()
        try:
            list(client.query("SELECT 1").result(timeout=self.config.connect_timeout))
        except Exception as exc:
            raise self._connect_error(exc) from None


__all__ = ["BigQuerySource", "BigQuerySourceConfig"]
