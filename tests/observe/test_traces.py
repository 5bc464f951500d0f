"""OpenTelemetry traces of runs, exported over OTLP/HTTP to a real receiver on loopback:
one trace per run with a span per phase, waits as events, no secret in any of it."""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi import Request
from fastapi import Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tests.conftest import Builder

from backhaul.testing.receiver import WebhookReceiver
from backhaul.testing.server import LoopbackServer

pytestmark = pytest.mark.integration


class Collector:
    """An OTLP/HTTP trace receiver: decodes each export and keeps its spans."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.services: set[str] = set()
        self.lock = threading.Lock()
        app = FastAPI()

        @app.post("/v1/traces")
        async def traces(request: Request) -> Response:
            export = ExportTraceServiceRequest()
            export.ParseFromString(await request.body())
            with self.lock:
                for resource in export.resource_spans:
                    for attr in resource.resource.attributes:
                        if attr.key == "service.name":
                            self.services.add(attr.value.string_value)
                    for scope in resource.scope_spans:
                        self.spans += [_span(s) for s in scope.spans]
            return Response(ExportTraceServiceRequest().SerializeToString())

        self.app = app


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


def _span(s: Any) -> dict[str, Any]:
    return {
        "name": s.name,
        "trace": s.trace_id.hex(),
        "id": s.span_id.hex(),
        "parent": s.parent_span_id.hex(),
        "start": s.start_time_unix_nano,
        "end": s.end_time_unix_nano,
        "status": s.status.code,
        "attrs": {a.key: _value(a.value) for a in s.attributes},
        "events": [(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in s.events],
    }


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    found = Collector()
    with LoopbackServer(found.app, name="otlp") as server:
        yield found, f"{server.url}/v1/traces"


def _env(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "backhaul-test",
        **extra,
    }


def test_a_run_is_one_trace_with_a_span_per_phase(
    project: Builder, collector: tuple[Collector, str]
) -> None:
    received, endpoint = collector
    token = "tok-" + secrets.token_hex(16)
    with WebhookReceiver(key_field="id", token=token) as receiver:
        project.users(12)
        project.destination(
            "hook",
            type="webhook",
            url=receiver.url,
            mode="batch",
            batch_size=5,
            headers={"Authorization": "Bearer ${env:HOOK_TOKEN}"},
            retry={"max_attempts": 3, "base_delay": 0.01},
        )
        project.sync("users_hook", destination="hook", batch_size=5)
        receiver.faults.fail_next(1, status=503)  # one retry: a wait on the send span
        result = project.cli("run", "users_hook", env=_env(endpoint, HOOK_TOKEN=token))
    assert result.returncode == 0, result.stdout + result.stderr

    spans = received.spans
    roots = [s for s in spans if s["name"] == "backhaul.run"]
    assert len(roots) == 1, spans
    root = roots[0]
    assert root["parent"] == ""
    assert root["attrs"]["backhaul.sync"] == "users_hook"
    assert root["attrs"]["backhaul.status"] == "succeeded"
    assert root["attrs"]["backhaul.rows.queried"] == 12
    assert root["attrs"]["backhaul.rows.delivered_added"] == 12
    assert received.services == {"backhaul-test"}
    children = sorted((s for s in spans if s["parent"] == root["id"]), key=lambda s: s["start"])
    assert [s["name"] for s in children] == ["extract", "plan", "send", "commit"]
    assert all(s["trace"] == root["trace"] for s in children)
    assert root["start"] <= children[0]["start"] and children[-1]["end"] <= root["end"]
    for a, b in itertools.pairwise(children):
        assert a["end"] <= b["start"]
    send = children[2]
    waits = [attrs for name, attrs in send["events"] if name == "wait"]
    assert waits and waits[0]["kind"] == "retry", send["events"]
    assert token not in repr(spans)


def test_a_refused_run_is_a_failed_root_span_and_no_traces_without_the_variable(
    project: Builder, collector: tuple[Collector, str]
) -> None:
    received, endpoint = collector
    project.users(3)
    project.destination("db", type="sqlite", path="out.sqlite", table="t", create_table=True)
    project.sync(
        "s",
        destination="db",
        mappings=[{"column": "id", "field": "id"}, {"column": "nope", "field": "x"}],
    )

    assert project.cli("run", "s").returncode == 2  # no variable: nothing exported
    assert received.spans == []
    assert project.cli("run", "s", env=_env(endpoint)).returncode == 2

    assert [s["name"] for s in received.spans] == ["backhaul.run"]
    root = received.spans[0]
    assert root["status"] == 2  # STATUS_CODE_ERROR
    assert root["attrs"]["backhaul.status"] == "failed"
    assert "nope" in root["attrs"]["backhaul.error"]


def test_an_exporter_backhaul_does_not_ship_is_one_line(project: Builder) -> None:
    project.users(3)
    project.destination("db", type="sqlite", path="out.sqlite", table="t", create_table=True)
    project.sync("s", destination="db")
    result = project.cli("run", "s", env={"OTEL_TRACES_EXPORTER": "zipkin"})
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines == [
        "error: OTEL_TRACES_EXPORTER=zipkin is not supported: set it to `otlp` (OTLP over "
        "HTTP) or `none`"
    ], result.stderr
