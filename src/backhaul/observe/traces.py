"""OpenTelemetry traces of runs: one trace per run, one span per phase.

Off unless the standard OpenTelemetry variable ``OTEL_TRACES_EXPORTER`` is ``otlp`` and the
SDK is installed (``pip install 'backhaul[otel]'``). The exporter then sends OTLP (HTTP
and protobuf) to ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``,
with the headers, timeout and service name of the usual ``OTEL_*`` variables.

A run's spans are built when it finishes, from the times its events arrived: the root
span ``backhaul.run`` (sync, run id, status, delivered counts) and under it ``extract``,
``plan``, ``send`` and ``commit`` as far as the run got. Waits (rate limits, retries) are
events on the ``send`` span; notices are events on the root. Every text in them comes
from typed events the engine has already redacted, so no secret reaches a trace.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any

from backhaul.errors import ConfigError
from backhaul.observe.events import EventSink
from backhaul.observe.events import Notice
from backhaul.observe.events import PhaseStarted
from backhaul.observe.events import RunEvent
from backhaul.observe.events import RunFinished
from backhaul.observe.events import RunPhase
from backhaul.observe.events import RunStarted
from backhaul.observe.events import Waiting
from backhaul.summary import RunStatus
from backhaul.summary import RunSummary

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

# "extract": from the run's start to its first phase (opening the source, pre hooks).
PHASES = ("extract", *(phase.value for phase in RunPhase))


@dataclass
class _Run:
    """What a run's events said so far: when each phase began, its waits and notices."""

    phases: dict[str, int] = field(default_factory=dict)
    waits: list[tuple[int, Waiting]] = field(default_factory=list)
    notices: list[tuple[int, str]] = field(default_factory=list)


class TraceSink:
    """An event sink that exports each finished run as a trace (thread-safe: workers
    run several syncs at once)."""

    def __init__(self, tracer: Tracer, flush: Any = None) -> None:
        self.tracer = tracer
        self._flush = flush
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def __call__(self, event: RunEvent) -> None:
        now = time.time_ns()
        if isinstance(event, RunFinished):
            with self._lock:
                run = self._runs.pop(event.summary.run_id, _Run())
            self._export(event.summary, run, now)
            return
        run_id = getattr(event, "run_id", None)
        if run_id is None:
            return
        with self._lock:
            run = self._runs.setdefault(run_id, _Run())
        if isinstance(event, RunStarted):
            return
        if isinstance(event, PhaseStarted):
            run.phases.setdefault(event.phase, now)
        elif isinstance(event, Waiting):
            run.waits.append((now, event))
        elif isinstance(event, Notice):
            run.notices.append((now, event.message))

    def _export(self, summary: RunSummary, run: _Run, now: int) -> None:
        from opentelemetry.trace import Status
        from opentelemetry.trace import StatusCode
        from opentelemetry.trace import set_span_in_context

        start = _ns(summary.started_at, now)
        end = _ns(summary.finished_at, now)
        root = self.tracer.start_span("backhaul.run", start_time=start, attributes=_attrs(summary))
        failed = summary.status in (RunStatus.FAILED, RunStatus.GUARDED)
        if failed:
            root.set_status(Status(StatusCode.ERROR, (summary.error or "")[:500]))
        for at, message in run.notices:
            root.add_event("notice", {"message": message}, timestamp=at)
        context = set_span_in_context(root)
        begins = dict(run.phases)
        if summary.problems or not begins:
            pass  # refused, or failed before it planned: the root span says why
        else:
            begins.setdefault("extract", start)
        ordered = sorted((at, phase) for phase, at in begins.items() if phase in PHASES)
        for i, (at, phase) in enumerate(ordered):
            stop = ordered[i + 1][0] if i + 1 < len(ordered) else end
            span = self.tracer.start_span(phase, context=context, start_time=at)
            if phase == "send":
                for when, wait in run.waits:
                    span.add_event(
                        "wait",
                        {"kind": wait.kind.value, "seconds": wait.seconds, "reason": wait.reason},
                        timestamp=when,
                    )
            span.end(end_time=max(stop, at))
        root.end(end_time=max(end, start))
        if self._flush is not None:
            self._flush()


def _ns(moment: Any, default: int) -> int:
    return int(moment.timestamp() * 1e9) if moment is not None else default


def _attrs(summary: RunSummary) -> dict[str, Any]:
    c = summary.counts
    attrs: dict[str, Any] = {
        "backhaul.sync": summary.sync,
        "backhaul.run_id": summary.run_id,
        "backhaul.status": summary.status.value,
        "backhaul.full_resync": summary.full_resync,
        "backhaul.rows.queried": c.queried,
        "backhaul.rows.delivered_added": c.delivered_added,
        "backhaul.rows.delivered_changed": c.delivered_changed,
        "backhaul.rows.delivered_removed": c.delivered_removed,
        "backhaul.rows.skipped": c.skipped,
        "backhaul.rows.rejected": c.rejected,
        "backhaul.rows.invalid": c.invalid,
        "backhaul.wait_seconds": round(summary.wait_s, 3),
    }
    if summary.error:
        attrs["backhaul.error"] = summary.error[:500]
    return attrs


_SETUP = threading.Lock()


def trace_sink(env: dict[str, str] | None = None) -> EventSink | None:
    """The trace sink the environment asks for, or None when traces are off.

    Raises:
        ConfigError: ``OTEL_TRACES_EXPORTER`` names an exporter Backhaul does not ship, or
            the OpenTelemetry SDK is not installed.
    """
    env = dict(os.environ) if env is None else env
    wanted = env.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if wanted in ("", "none"):
        return None
    if wanted != "otlp":
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={wanted} is not supported: set it to `otlp` (OTLP over "
            "HTTP) or `none`"
        )
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            "OTEL_TRACES_EXPORTER=otlp needs the OpenTelemetry SDK: "
            "pip install 'backhaul[otel]', or unset OTEL_TRACES_EXPORTER"
        ) from None
    with _SETUP:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):  # the first run of this process
            service = env.get("OTEL_SERVICE_NAME") or "backhaul"
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            trace.set_tracer_provider(provider)
    return TraceSink(provider.get_tracer("backhaul"), flush=provider.force_flush)


__all__ = ["PHASES", "TraceSink", "trace_sink"]
