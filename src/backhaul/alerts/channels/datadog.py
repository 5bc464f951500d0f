"""Datadog channel: an event per raise and recovery, and each run's counts as metric series."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from typing import Literal

from pydantic import Field

from backhaul.alerts.channels.base import Alert
from backhaul.alerts.channels.base import ChannelConfig
from backhaul.alerts.channels.base import Delivery
from backhaul.alerts.channels.base import HttpChannel
from backhaul.alerts.channels.base import RunNotice

DEFAULT_SITE = "https://api.datadoghq.com"
TEXT_LIMIT = 4000  # events v1 truncate text there
COUNT, GAUGE = 1, 3  # metric types of the v2 series API
ROW_METRICS = ("queried", "added", "changed", "removed", "invalid", "succeeded", "rejected")


class DatadogChannelConfig(ChannelConfig):
    """``channels/NAME.yml`` with ``type: datadog``."""

    type: Literal["datadog"]
    api_key: str = Field(description="A Datadog API key (a secret: ${env:NAME}).")
    site_url: str = Field(DEFAULT_SITE, description="Your site's API host (EU: api.datadoghq.eu).")
    events_api: Literal["v1", "v2"] = Field("v2", description="Which events API to post to.")
    metrics: bool = Field(True, description="Send each run's counts as metric series.")
    tags: list[str] = Field(default_factory=list, description="Tags added to every event/series.")


class DatadogChannel(HttpChannel[DatadogChannelConfig]):
    label = "datadog"

    def secrets(self) -> Iterable[str]:
        return [self.config.api_key]

    def _url(self, path: str) -> str:
        return f"{self.config.site_url.rstrip('/')}{path}"

    def _tags(self, project: str, sync: str, *more: str) -> list[str]:
        tags = [f"project:{project}"] + ([f"sync:{sync}"] if sync else [])
        return [*tags, *more, *self.config.tags]

    async def alert(self, alert: Alert) -> Delivery:
        headers = {"DD-API-KEY": self.config.api_key}
        tags = self._tags(alert.project, alert.sync, f"rule:{alert.rule}", "source:backhaul")
        text = alert.message + (f"\n\nRun: {alert.run_url}" if alert.run_url else "")
        if self.config.events_api == "v1":
            body: dict[str, Any] = {
                "title": alert.headline,
                "text": text[:TEXT_LIMIT],
                "tags": tags,
                "alert_type": {"raised": "error", "resolved": "success"}.get(alert.kind, "info"),
                "aggregation_key": alert.dedup_key,
                "source_type_name": "backhaul",
                "date_happened": int(alert.at.timestamp()),
            }
            return await self.sender.send(
                "POST", self._url("/api/v1/events"), json_body=body, headers=headers
            )
        custom = {"sync": alert.sync, "rule": alert.rule, "run_id": alert.run_id}
        body = {
            "data": {
                "type": "event",
                "attributes": {
                    "category": "alert",
                    "title": alert.headline,
                    "message": text[:TEXT_LIMIT],
                    "timestamp": alert.at.isoformat(),
                    "tags": tags,
                    "aggregation_key": alert.dedup_key,
                    "attributes": {
                        "status": {"raised": "error", "resolved": "ok"}.get(alert.kind, "warn"),
                        "custom": custom,
                    },
                },
            }
        }
        return await self.sender.send(
            "POST", self._url("/api/v2/events"), json_body=body, headers=headers
        )

    async def run_event(self, notice: RunNotice) -> Delivery | None:
        if not self.config.metrics or notice.what == "run.started":
            return None
        stamp = int(notice.at.timestamp())
        tags = self._tags(notice.project, notice.sync, f"status:{notice.status}")
        series: list[dict[str, Any]] = [
            {
                "metric": f"backhaul.run.rows_{name}",
                "type": COUNT,
                "points": [{"timestamp": stamp, "value": int(notice.counts.get(name, 0))}],
                "tags": tags,
                "unit": "row",
            }
            for name in ROW_METRICS
        ]
        series.append(
            {
                "metric": "backhaul.run.duration",
                "type": GAUGE,
                "points": [{"timestamp": stamp, "value": round(notice.duration_s, 3)}],
                "tags": tags,
                "unit": "second",
            }
        )
        return await self.sender.send(
            "POST",
            self._url("/api/v2/series"),
            json_body={"series": series},
            headers={"DD-API-KEY": self.config.api_key},
        )
