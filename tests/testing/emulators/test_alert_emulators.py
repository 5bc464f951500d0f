"""The PagerDuty and Datadog emulators answer as the vendors document."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest

from backhaul.testing.emulators.base import EmulatorServer
from backhaul.testing.emulators.datadog import DatadogEmulator
from backhaul.testing.emulators.pagerduty import PagerDutyEmulator

pytestmark = pytest.mark.integration

KEY = "a" * 32


def trigger(dedup: str | None = "d1", **payload: object) -> dict[str, object]:
    body: dict[str, object] = {
        "routing_key": KEY,
        "event_action": "trigger",
        "payload": {"summary": "s", "source": "x", "severity": "error", **payload},
    }
    if dedup:
        body["dedup_key"] = dedup
    return body


def test_pagerduty_dedup_resolve_and_reopen() -> None:
    pd = PagerDutyEmulator()
    with EmulatorServer(pd) as server:
        url = f"{server.url}/v2/enqueue"
        first = httpx.post(url, json=trigger())
        assert first.status_code == 202
        assert first.json() == {
            "status": "success",
            "message": "Event processed",
            "dedup_key": "d1",
        }
        assert httpx.post(url, json=trigger()).status_code == 202  # joins the open alert
        assert len(pd.alerts) == 1 and len(pd.alerts[0].events) == 2
        resolve = {"routing_key": KEY, "event_action": "resolve", "dedup_key": "d1"}
        assert httpx.post(url, json=resolve).status_code == 202
        assert pd.alerts[0].status == "resolved"
        assert httpx.post(url, json=resolve).status_code == 202  # dropped: nothing open
        assert len(pd.alerts[0].events) == 3
        httpx.post(url, json=trigger())  # the same key after a resolve: a new alert
        assert [a.status for a in pd.alerts_for("d1")] == ["resolved", "triggered"]
        generated = httpx.post(url, json=trigger(dedup=None)).json()["dedup_key"]
        assert len(generated) == 32 and pd.alerts_for(generated)


def test_pagerduty_invalid_events_and_rate_limit() -> None:
    pd = PagerDutyEmulator(events_per_minute=2)
    with EmulatorServer(pd) as server:
        url = f"{server.url}/v2/enqueue"
        short = httpx.post(url, json={**trigger(), "routing_key": "short"})
        assert short.status_code == 400
        assert short.json()["status"] == "invalid event"
        assert "Length of 'routing_key' is incorrect" in short.json()["errors"][0]
        bad = httpx.post(url, json=trigger(severity="loud", summary="x" * 1025))
        assert bad.status_code == 400 and len(bad.json()["errors"]) == 2
        assert httpx.post(url, json=trigger()).status_code == 202
        assert httpx.post(url, json=trigger()).status_code == 202
        limited = httpx.post(url, json=trigger())
        assert limited.status_code == 429
        assert limited.json()["message"] == "Request Limit Exceeded"
        assert len(pd.alerts[0].events) == 2


def test_datadog_key_events_and_series() -> None:
    dd = DatadogEmulator(api_key="k1")
    with EmulatorServer(dd) as server:
        base = server.url
        assert httpx.post(f"{base}/api/v2/series", json={"series": []}).status_code == 403
        headers = {"DD-API-KEY": "k1"}
        series = {
            "series": [
                {"metric": "m", "type": 1, "points": [{"timestamp": 1, "value": 5}], "tags": ["a"]}
            ]
        }
        ok = httpx.post(f"{base}/api/v2/series", json=series, headers=headers)
        assert (ok.status_code, ok.json()) == (202, {"errors": []})
        packed = gzip.compress(json.dumps(series).encode())
        gz = httpx.post(
            f"{base}/api/v2/series",
            content=packed,
            headers={**headers, "Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        assert gz.status_code == 202 and [p.value for p in dd.series("m")] == [5, 5]
        bad = {"series": [{"metric": "m", "type": 9, "points": [{"timestamp": 1, "value": 1}]}]}
        assert httpx.post(f"{base}/api/v2/series", json=bad, headers=headers).status_code == 400
        v1 = httpx.post(
            f"{base}/api/v1/events",
            json={"title": "t", "text": "x" * 5000, "alert_type": "error"},
            headers=headers,
        )
        assert v1.status_code == 202 and v1.json()["status"] == "ok"
        assert len(dd.events[0].text) == 4000
        v2 = {
            "data": {
                "type": "event",
                "attributes": {"category": "alert", "title": "t", "attributes": {"status": "meh"}},
            }
        }
        assert httpx.post(f"{base}/api/v2/events", json=v2, headers=headers).status_code == 400
        big = httpx.post(f"{base}/api/v2/series", content=b"x" * 512_001, headers=headers)
        assert big.status_code == 413


def test_datadog_event_rate_limit_headers() -> None:
    dd = DatadogEmulator(api_key="k1", events_per_minute=1)
    with EmulatorServer(dd) as server:
        headers = {"DD-API-KEY": "k1"}
        event = {"title": "t", "text": "x"}
        assert httpx.post(f"{server.url}/api/v1/events", json=event, headers=headers).is_success
        refused = httpx.post(f"{server.url}/api/v1/events", json=event, headers=headers)
        assert refused.status_code == 429
        assert refused.headers["X-RateLimit-Limit"] == "1"
        assert refused.headers["X-RateLimit-Period"] == "60"
