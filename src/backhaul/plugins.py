"""Connector registry, built per project from built-ins plus Python entry points.

Third parties add a destination by declaring an entry point in the group
``backhaul.destinations`` (or ``backhaul.sources``) that names their connector class.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from dataclasses import field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING
from typing import Any
from typing import cast

if TYPE_CHECKING:
    from backhaul.destinations.base import Destination
    from backhaul.sources.base import Source

BUILTIN_DESTINATIONS = {
    "postgres": "backhaul.destinations.postgres:PostgresDestination",
    "mysql": "backhaul.destinations.mysql:MySQLDestination",
    "sqlite": "backhaul.destinations.sqlite:SQLiteDestination",
    "duckdb": "backhaul.destinations.duckdb_table:DuckDBDestination",
    "file": "backhaul.destinations.files:FileDestination",
    "webhook": "backhaul.destinations.webhook:WebhookDestination",
    "hubspot": "backhaul.destinations.hubspot:HubSpotDestination",
    "salesforce": "backhaul.destinations.salesforce:SalesforceDestination",
    "zendesk": "backhaul.destinations.zendesk:ZendeskDestination",
    "mailchimp": "backhaul.destinations.mailchimp:MailchimpDestination",
    "klaviyo": "backhaul.destinations.klaviyo:KlaviyoDestination",
    "intercom": "backhaul.destinations.intercom:IntercomDestination",
    "braze": "backhaul.destinations.braze:BrazeDestination",
    "iterable": "backhaul.destinations.iterable:IterableDestination",
    "slack": "backhaul.destinations.slack:SlackDestination",
    "customerio": "backhaul.destinations.customerio:CustomerIoDestination",
    "segment": "backhaul.destinations.segment:SegmentDestination",
    "google_sheets": "backhaul.destinations.google_sheets:GoogleSheetsDestination",
    "meta_audiences": "backhaul.destinations.meta:MetaAudiencesDestination",
    "google_ads": "backhaul.destinations.google_ads:GoogleAdsDestination",
    "rabbitmq": "backhaul.destinations.rabbitmq:RabbitMQDestination",
    "nats": "backhaul.destinations.nats:NATSDestination",
    "redis_streams": "backhaul.destinations.redis_streams:RedisStreamsDestination",
    "mqtt": "backhaul.destinations.mqtt:MQTTDestination",
}
BUILTIN_SOURCES = {
    "duckdb": "backhaul.sources.duckdb:DuckDBSource",
    "postgres": "backhaul.sources.postgres:PostgresSource",
    "mysql": "backhaul.sources.mysql:MySQLSource",
    "sqlite": "backhaul.sources.sqlite:SQLiteSource",
    "snowflake": "backhaul.sources.snowflake:SnowflakeSource",
    "bigquery": "backhaul.sources.bigquery:BigQuerySource",
    "redshift": "backhaul.sources.redshift:RedshiftSource",
    "databricks": "backhaul.sources.databricks:DatabricksSource",
    "clickhouse": "backhaul.sources.clickhouse:ClickHouseSource",
    "trino": "backhaul.sources.trino:TrinoSource",
}


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass
class Registry:
    """Maps a ``type`` to its connector class; classes are imported on first use."""

    destinations: dict[str, str] = field(default_factory=lambda: dict(BUILTIN_DESTINATIONS))
    sources: dict[str, str] = field(default_factory=lambda: dict(BUILTIN_SOURCES))

    @classmethod
    def discover(cls) -> Registry:
        reg = cls()
        for ep in entry_points(group="backhaul.destinations"):
            reg.destinations.setdefault(ep.name, ep.value)
        for ep in entry_points(group="backhaul.sources"):
            reg.sources.setdefault(ep.name, ep.value)
        return reg

    def destination(self, type_: str) -> type[Destination]:
        """The connector class of a destination ``type`` (``KeyError``: not registered)."""
        return cast("type[Destination]", _import(self.destinations[type_]))

    def source(self, type_: str) -> type[Source]:
        """The connector class of a source ``type`` (``KeyError``: not registered)."""
        return cast("type[Source]", _import(self.sources[type_]))
