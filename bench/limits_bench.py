"""Rate-limited SaaS connectors against their limit: wall time vs the least time the window allows.

Usage::

    python bench/limits_bench.py                          # every case, 5 calls / 1 s, 20 windows
    python bench/limits_bench.py --vendors hubspot,braze --limit 10 --window 2 --windows 30
    python bench/limits_bench.py --rows 200               # the same row count for every case

Each case upserts a DuckDB model through the real engine (``backhaul.api.run``) into a
vendor emulator on loopback. The destination file is the emulator's own
``destination_config(url)`` plus ``rate_limit: {requests: --limit, per_seconds: --window}``,
and the emulator enforces the SAME window, so a connector that went faster would be
answered 429 and the refusal would show. Per case it reports the rows, the calls the
window counts, the run's wall time, the time from the first to the last counted call, the
least time a rolling window allows for that many calls (``(ceil(calls / limit) - 1) *
window``; for a vendor that keeps a window per endpoint, the busiest endpoint's), their ratio, refusals and 429s, and whether the emulator's records equal the
model. The default row count of a case is sized so its calls need about ``--windows``
windows. Results go to stdout and ``bench/out/limits_bench.json`` (``--out``); the exit
status is 1 when a limit was exceeded or a state differs.

A case is one :class:`Case` value in ``CASES``: how to build the emulator with a window,
the destination keys to add, the sync, which calls count, and how to read the records back.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from starlette.requests import Request
from starlette.responses import Response

from backhaul import api
from backhaul.destinations.pii import PiiKey
from backhaul.destinations.pii import Platform
from backhaul.destinations.pii import prepare
from backhaul.summary import RunStatus
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.base import Call
from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import SlidingWindow
from backhaul.testing.emulators.braze import BrazeEmulator
from backhaul.testing.emulators.customerio import CustomerIoEmulator
from backhaul.testing.emulators.google_ads import GoogleAdsEmulator
from backhaul.testing.emulators.google_sheets import GoogleSheetsEmulator
from backhaul.testing.emulators.hubspot import HubSpotEmulator
from backhaul.testing.emulators.intercom import IntercomEmulator
from backhaul.testing.emulators.iterable import IterableEmulator
from backhaul.testing.emulators.klaviyo import KlaviyoEmulator
from backhaul.testing.emulators.mailchimp import MailchimpEmulator
from backhaul.testing.emulators.meta import MetaEmulator
from backhaul.testing.emulators.segment import SegmentEmulator
from backhaul.testing.emulators.slack import SlackEmulator
from backhaul.testing.emulators.zendesk import ZendeskEmulator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import busiest_window  # noqa: E402
from common import least_seconds  # noqa: E402
from common import write_yaml  # noqa: E402

OUT = HERE / "out" / "limits_bench.json"
FAST_RETRY = {"max_attempts": 8, "base_delay": 0.05, "max_delay": 1.0}
Records = dict[str, tuple[str, str]]  # e-mail -> (name, score), as the model has them


def model(rows: int) -> Records:
    """The model's people as most cases read them back: ``{email: (name, score)}``."""
    return {f"p{i}@bench.example": (f"Person {i}", str(i % 97)) for i in range(1, rows + 1)}


def hashed_emails(platform: Platform) -> Callable[[int], set[str]]:
    """The model as an audience holds it: its e-mails hashed as ``platform`` hashes them."""

    def expected(rows: int) -> set[str]:
        return {prepare(platform, PiiKey.EMAIL, e).value for e in model(rows)}

    return expected


@dataclass(frozen=True)
class Case:
    """One vendor: everything the bench needs to run its connector against its limit.

    Attributes:
        emulator: Builds the emulator enforcing ``limit`` calls per ``window`` seconds.
        sync: The sync file's keys besides ``model`` and ``destination``.
        records: The emulator's records, as ``expected`` gives the model's.
        rows_per_call: About how many rows one call of the busiest window carries (sizes the
            default run).
        counted: Which of the emulator's calls count against the limit.
        group: The window a counted call falls in, for vendors that keep one per endpoint.
        destination: Keys added to the emulator's ``destination_config(url)``.
        expected: What ``records`` should equal for a model of so many rows: by default
            ``{email: (name, score)}``; for an audience, the set of its members' hashes.
    """

    emulator: Callable[[int, float], Emulator]
    sync: dict[str, Any]
    records: Callable[[Any], object]
    rows_per_call: float
    counted: Callable[[Call], bool] = lambda call: True
    group: Callable[[Call], str] = lambda call: ""
    destination: dict[str, Any] = field(default_factory=dict)
    expected: Callable[[int], object] = model


def dig(record: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` of a nested record (``None`` when absent)."""
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def keyed(records: list[dict[str, Any]], email: str, name: str, score: str) -> Records:
    return {
        str(dig(r, email)).lower(): (str(dig(r, name)), str(dig(r, score)))
        for r in records
        if dig(r, email)
    }


def maps(*pairs: str) -> list[dict[str, Any]]:
    """Mappings from ``column:field`` pairs (``id`` is cast to text)."""
    out: list[dict[str, Any]] = []
    for pair in pairs:
        column, _, target = pair.partition(":")
        out.append(
            {"column": column, "field": target, **({"cast": "string"} if column == "id" else {})}
        )
    return out


def windowed(emulator: Emulator, limit: int, window: float) -> Emulator:
    """Make ``emulator`` refuse calls beyond ``limit`` per rolling ``window`` as its vendor
    answers a rate limit: for vendors whose emulator has no call window of its own."""
    counter = SlidingWindow(limit, window)
    edge = emulator.before_request

    async def before_request(request: Request) -> Response | None:
        refused = await edge(request)
        if refused is not None:
            return refused
        allowed, _, wait = counter.hit()
        return None if allowed else emulator.vendor_rate_limited(wait)

    emulator.before_request = before_request  # type: ignore[method-assign]
    emulator.bench_window = counter  # type: ignore[attr-defined]
    return emulator


def hubspot(limit: int, window: float) -> Emulator:
    hub = HubSpotEmulator(burst_limit=limit, burst_seconds=window, daily_limit=None, seed=3)
    hub.add_property("contacts", "score", type="number", field_type="number")
    return hub


def klaviyo(limit: int, window: float) -> Emulator:
    emulator = KlaviyoEmulator(lists={"Y6nRLr": "Bench"})
    # The scaled window in place of Klaviyo's two (10 a second and 150 a minute per endpoint):
    # a destination file has one window, and the bench compares against that one.
    emulator.limits = ((limit, window),)  # type: ignore[assignment]
    return emulator


def google_sheets(limit: int, window: float) -> Emulator:
    # Sheets keeps four windows (reads and writes, per user and per project): all get the
    # scaled window, so the user's (the first to refuse) is the one a run meets.
    return GoogleSheetsEmulator(
        read_per_minute_project=limit,
        write_per_minute_project=limit,
        read_per_minute_user=limit,
        write_per_minute_user=limit,
        window=window,
    )


def sheet_rows(emulator: GoogleSheetsEmulator) -> Records:
    """The sheet's data rows (``id, email, name, score`` under a header) as records."""
    header, *rows = emulator.values()
    at = {name: header.index(name) for name in ("email", "name", "score")}
    return {
        str(row[at["email"]]).lower(): (str(row[at["name"]]), str(row[at["score"]])) for row in rows
    }


def membership() -> dict[str, Any]:
    """The sync of an audience kept in step with the model by hashed e-mail."""
    return {
        "mode": "membership",
        "match": {"fields": ["email"]},
        "batch_size": 100,
        "mappings": maps("email:email"),
    }


MAILCHIMP_LIST = "a1b2c3d4e5"
JOB_ID = re.compile(r"-jobs/[^/]+")

CASES: dict[str, Case] = {
    "hubspot": Case(
        emulator=hubspot,
        sync={
            "object": "contacts",
            "match": {"fields": ["email"]},
            "batch_size": 100,
            "mappings": maps("email:email", "name:firstname", "score:score"),
        },
        records=lambda e: {
            k: (v.get("firstname"), v.get("score"))
            for k, v in e.records("contacts", key="email").items()
        },
        rows_per_call=100,
        counted=lambda call: "/search" not in call.path,  # searches have a window of their own
    ),
    "zendesk": Case(
        emulator=lambda limit, window: ZendeskEmulator(rate_limit=limit, rate_window=window),
        sync={
            "object": "users",
            "batch_size": 100,
            "mappings": maps(
                "id:external_id", "email:email", "name:name", "score:user_fields.score"
            ),
        },
        records=lambda e: keyed(e.state()["users"], "email", "name", "user_fields.score"),
        rows_per_call=100 / 4,  # a job is created, then polled until it completes
    ),
    "intercom": Case(
        emulator=lambda limit, window: IntercomEmulator(
            rate_limit=limit, rate_window=window, custom_attributes={"score"}
        ),
        sync={
            "object": "contacts",
            "batch_size": 50,
            "mappings": maps(
                "id:external_id", "email:email", "name:name", "score:custom_attributes.score"
            ),
        },
        records=lambda e: keyed(e.state()["contacts"], "email", "name", "custom_attributes.score"),
        rows_per_call=0.5,  # no batch endpoint: a search, then a create, per contact
    ),
    "slack": Case(
        emulator=lambda limit, window: SlackEmulator(
            messages_per_second=limit / window, burst=limit
        ),
        destination={"mode": "row", "text": "{{ email }}|{{ name }}|{{ score }}"},
        sync={
            "batch_size": 100,
            "mappings": maps("id:id", "email:email", "name:name", "score:score"),
        },
        records=lambda e: {
            text.split("|")[0]: (text.split("|")[1], text.split("|")[2])
            for channel in e.state()["channels"].values()
            for text in (m["text"] for m in channel["messages"])
        },
        rows_per_call=1,
        counted=lambda call: call.path.endswith("/chat.postMessage"),
    ),
    "braze": Case(
        emulator=lambda limit, window: BrazeEmulator(
            track_rate_limit=limit, track_rate_window=window
        ),
        sync={
            "match": {"fields": ["external_id"]},
            "batch_size": 75,
            "mappings": maps("id:external_id", "email:email", "name:first_name", "score:score"),
        },
        records=lambda e: keyed(
            e.state()["users"], "email", "attributes.first_name", "attributes.score"
        ),
        rows_per_call=75,
        counted=lambda call: call.path == "/users/track",
    ),
    "iterable": Case(
        emulator=lambda limit, window: IterableEmulator(
            rate_limits={"/api/users/bulkUpdate": (limit, window)}
        ),
        sync={
            "match": {"fields": ["email"]},
            "batch_size": 100,
            "mappings": maps("email:email", "name:name", "score:score"),
        },
        records=lambda e: keyed(e.state()["users"], "email", "dataFields.name", "dataFields.score"),
        rows_per_call=100,
        counted=lambda call: call.path == "/api/users/bulkUpdate",
    ),
    "mailchimp": Case(
        # Mailchimp limits connections, not calls: the bench adds the configured window.
        emulator=lambda limit, window: windowed(
            MailchimpEmulator(lists={MAILCHIMP_LIST: "Bench"}), limit, window
        ),
        sync={
            "object": MAILCHIMP_LIST,
            "match": {"fields": ["email_address"]},
            "batch_size": 100,
            "mappings": maps(
                "email:email_address", "name:merge_fields.FNAME", "score:merge_fields.SCORE"
            ),
        },
        records=lambda e: keyed(
            list(e.state()["lists"][MAILCHIMP_LIST]["members"].values()),
            "email_address",
            "merge_fields.FNAME",
            "merge_fields.SCORE",
        ),
        rows_per_call=100,
    ),
    "klaviyo": Case(
        emulator=klaviyo,
        sync={
            "match": {"fields": ["email"]},
            "batch_size": 100,
            "mappings": maps("email:email", "name:first_name", "score:properties.score"),
        },
        records=lambda e: keyed(e.state()["profiles"], "email", "first_name", "properties.score"),
        # A job of 100 is created, polled about twice, its errors read: polls are the busiest
        # endpoint. Klaviyo counts each endpoint on its own (job creation apart from job polls).
        group=lambda call: call.method + " " + JOB_ID.sub("-jobs/{id}", call.path),
        rows_per_call=100 / 2,
    ),
    "customerio": Case(
        emulator=lambda limit, window: CustomerIoEmulator(rate_limit=limit, rate_window=window),
        sync={
            "match": {"fields": ["email"]},
            "batch_size": 100,
            "mappings": maps("email:email", "name:name", "score:score"),
        },
        records=lambda e: keyed(
            e.state()["people"], "email", "attributes.name", "attributes.score"
        ),
        rows_per_call=100,  # one v2 batch call per batch
    ),
    "segment": Case(
        emulator=lambda limit, window: SegmentEmulator(rate_limit=limit, rate_window=window),
        sync={
            "match": {"fields": ["userId"]},
            "batch_size": 100,
            "mappings": maps("email:userId", "name:name", "score:score"),
        },
        records=lambda e: keyed(
            list(e.state()["users"].values()), "userId", "traits.name", "traits.score"
        ),
        rows_per_call=100,  # one /v1/batch call of identify messages per batch
    ),
    "google_sheets": Case(
        emulator=google_sheets,
        sync={
            "match": {"fields": ["id"]},
            "batch_size": 100,
            "mappings": maps("id:id", "email:email", "name:name", "score:score"),
        },
        records=sheet_rows,
        rows_per_call=100,  # a values:batchUpdate per batch, a grid growth now and then
        # Sheets counts reads and writes in windows of their own.
        group=lambda call: "read" if call.method == "GET" else "write",
    ),
    "meta_audiences": Case(
        emulator=lambda limit, window: MetaEmulator(rate_limit=limit, rate_window=window),
        destination={"audience_id": "${env:META_AUDIENCE_ID}"},
        sync=membership(),
        records=lambda e: e.values(e.audience_id, "EMAIL"),
        expected=hashed_emails(Platform.META),
        rows_per_call=100,  # one upload session of one request per batch
    ),
    "google_ads": Case(
        emulator=lambda limit, window: GoogleAdsEmulator(rate_limit=limit, rate_window=window),
        destination={"user_list": "${env:GOOGLE_ADS_USER_LIST}", "poll_interval_seconds": 0.05},
        sync=membership(),
        records=lambda e: e.values(e.user_list),
        expected=hashed_emails(Platform.GOOGLE),
        # A job per batch: create, addOperations, a search for running jobs, run, then polls
        # (searches) until it succeeds. The emulator counts every one of them, as Google
        # counts requests per developer token; only the OAuth token exchange is not counted.
        rows_per_call=100 / 6,
        counted=lambda call: call.path != "/token",
    ),
}


def build_project(
    root: Path, emulator: Emulator, url: str, case: Case, rows: int, limit: int, window: float
) -> None:
    write_yaml(root / "backhaul.yml", {"name": "limits-bench"})
    write_yaml(root / "sources/wh.yml", {"type": "duckdb", "path": "wh.duckdb"})
    write_yaml(root / "models/people.yml", {"source": "wh", "primary_key": "id"})
    (root / "models/people.sql").write_text("SELECT * FROM people\n", encoding="utf-8")
    con = duckdb.connect(str(root / "wh.duckdb"))
    con.execute(
        "CREATE TABLE people AS SELECT i::BIGINT AS id, 'p' || i || '@bench.example' AS email, "
        f"'Person ' || i AS name, (i % 97)::INTEGER AS score FROM range(1, {rows + 1}) t(i)"
    )
    con.close()
    destination = {
        **emulator.destination_config(url),
        **case.destination,
        "rate_limit": {"requests": limit, "per_seconds": window},
        "retry": FAST_RETRY,
    }
    write_yaml(root / "destinations/dest.yml", destination)
    write_yaml(root / "syncs/people.yml", {"model": "people", "destination": "dest", **case.sync})


def refusals(emulator: Emulator) -> int:
    """Calls the emulator's rate windows (or connection slots) refused, however it counts them."""
    names = ("window", "search_window", "bench_window")
    found = [getattr(emulator, name, None) for name in names]
    for windows in (getattr(emulator, "windows", None), getattr(emulator, "_windows", None)):
        if isinstance(windows, dict):
            for value in windows.values():
                found.extend(value if isinstance(value, tuple) else [value])
    refused = sum(w.refused for w in found if w is not None and hasattr(w, "refused"))
    return int(refused + getattr(emulator, "refused_connections", 0))


def measure(name: str, case: Case, rows: int, limit: int, window: float) -> dict[str, Any]:
    emulator = case.emulator(limit, window)
    os.environ.update(emulator.credentials())
    with (
        tempfile.TemporaryDirectory(prefix=f"limits-bench-{name}-") as folder,
        EmulatorServer(emulator) as server,
    ):
        root = Path(folder)
        build_project(root, emulator, server.url, case, rows, limit, window)
        project = api.load_project(root)
        started = time.perf_counter()
        summary = api.run(project, "people")
        wall = time.perf_counter() - started
    calls = list(emulator.calls)
    counted = [c for c in calls if case.counted(c)]
    statuses = [c.status for c in calls]
    groups: dict[str, list[Call]] = {}
    for call in counted:
        groups.setdefault(case.group(call), []).append(call)
    least = max((least_seconds(len(g), limit, window) for g in groups.values()), default=0.0)
    span = counted[-1].at - counted[0].at if counted else 0.0
    refused = refusals(emulator)
    return {
        "vendor": name,
        "rows": rows,
        "limit": f"{limit} calls / {window:g} s",
        "status": summary.status.value,
        "succeeded": summary.counts.succeeded,
        "error": summary.error,
        "calls": len(calls),
        "counted_calls": len(counted),
        "status_counts": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "wall_seconds": round(wall, 3),
        "span_seconds": round(span, 3),
        "least_seconds": least,
        "ratio_wall": round(wall / least, 3) if least else None,
        "ratio_span": round(span / least, 3) if least else None,
        "windows": {k: len(g) for k, g in groups.items()} if len(groups) > 1 else None,
        "busiest_window": max(
            (busiest_window([c.at for c in g], window) for g in groups.values()), default=0
        ),
        "refused": refused,
        "answered_429": statuses.count(429),
        "never_exceeded": refused == 0 and 429 not in statuses,
        "state_equals_model": summary.status is RunStatus.SUCCEEDED
        and case.records(emulator) == case.expected(rows),
    }


def default_rows(case: Case, limit: int, windows: int) -> int:
    """Rows whose calls need about ``windows`` windows at ``limit`` calls each."""
    return max(1, round(case.rows_per_call * limit * (windows + 1)))


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "vendor",
        "rows",
        "calls",
        "least s",
        "wall s",
        "span s",
        "wall/least",
        "span/least",
        "busiest",
        "refused",
        "429",
        "state",
    )
    lines = [" ".join(f"{h:>10}" for h in head)]
    for r in results:
        cells = (
            r["vendor"],
            r["rows"],
            r["counted_calls"],
            f"{r['least_seconds']:.1f}",
            f"{r['wall_seconds']:.2f}",
            f"{r['span_seconds']:.2f}",
            r["ratio_wall"],
            r["ratio_span"],
            r["busiest_window"],
            r["refused"],
            r["answered_429"],
            "equal" if r["state_equals_model"] else "DIFFERS",
        )
        lines.append(" ".join(f"{c!s:>10}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--vendors", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--limit", type=int, default=5, help="calls per window")
    parser.add_argument("--window", type=float, default=1.0, help="window length, seconds")
    parser.add_argument("--windows", type=int, default=20, help="windows each run should need")
    parser.add_argument("--rows", type=int, default=None, help="rows for every case")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON results file")
    args = parser.parse_args(argv)
    names = [v.strip() for v in args.vendors.split(",") if v.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown vendor(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load {os.getloadavg()[0]:.1f}"
    )
    print(f"machine: {machine}; limit {args.limit} calls / {args.window:g} s")
    results = []
    for name in names:
        case = CASES[name]
        rows = args.rows or default_rows(case, args.limit, args.windows)
        result = measure(name, case, rows, args.limit, args.window)
        print(
            f"{name}: {result['status']}, {result['counted_calls']} counted calls "
            f"in {result['wall_seconds']:.2f} s{' - ' + result['error'] if result['error'] else ''}",
            flush=True,
        )
        results.append(result)
    print()
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "command": " ".join(["python", "bench/limits_bench.py", *(argv or sys.argv[1:])]),
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    ok = all(r["never_exceeded"] and r["state_equals_model"] for r in results)
    print(f"\nlimit never exceeded and state equal to the model: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
