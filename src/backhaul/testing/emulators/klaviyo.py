"""Klaviyo emulator: bulk profile import jobs, their errors, lists and list membership.

What it enforces, as Klaviyo does: ``Authorization: Klaviyo-API-Key <private key>`` (401)
and a date ``revision`` header (400) on every call, JSON:API bodies
(``application/vnd.api+json``); ``POST /api/profile-bulk-import-jobs`` answered with a
``queued`` job that moves to ``processing`` and then ``complete`` as it is polled, and can be
held or cancelled; an upsert of each profile by ``email``, ``phone_number`` or
``external_id`` (e-mail in any case), added to the job's list; each refused profile listed
by ``GET .../import-errors`` with ``code``, ``title``, ``detail``, ``source.pointer`` and its
``original_payload`` (cursor pages of 20); at most 10,000 profiles per job; per-endpoint
fixed windows of 10 requests per second and 150 per minute (429), with ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` on the other answers; list members added and
removed through ``/api/lists/{id}/relationships/profiles``; profiles found with
``equals``/``any`` filters and deleted through data-privacy deletion jobs.

Unverified facts (settings, or noted here): the 10,000-profile cap (``max_profiles``, from
third-party code), the 5 MB body cap (``max_request_bytes``), the 202 status of a created job
(``create_status``), ``Retry-After`` on a 429 (``retry_after_header``), the identifier
matching order (id, email, phone, external id), the error texts and codes, refusing unknown
profile attributes as import errors, ``page[size]`` up to 100, at most 1,000 profiles per
list membership call (``max_list_profiles``), and that a deletion job deletes at once.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import InitVar
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators._http import KB
from backhaul.testing.emulators._http import authorization
from backhaul.testing.emulators._jobs import Job
from backhaul.testing.emulators._klaviyo_store import IDENTIFIERS
from backhaul.testing.emulators._klaviyo_store import ImportProblem
from backhaul.testing.emulators._klaviyo_store import Profile
from backhaul.testing.emulators._klaviyo_store import Store
from backhaul.testing.emulators._klaviyo_store import api_error
from backhaul.testing.emulators._klaviyo_store import page
from backhaul.testing.emulators._klaviyo_store import stamp
from backhaul.testing.emulators.base import DestinationFile
from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import FixedWindow

JOBS = "/api/profile-bulk-import-jobs"
REVISION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.pre)?$")
MEDIA = "application/vnd.api+json"
STAGES = ("queued", "processing", "complete")


@dataclass
class Outcome:
    """What an import job did: the profiles it wrote and the entries it refused."""

    profile_ids: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def _document(status: int, *errors: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"errors": list(errors)}, status_code=status, media_type=MEDIA)


def _invalid(detail: str, pointer: str = "/data/", status: int = 400) -> JSONResponse:
    return _document(status, api_error(status, "invalid", "Invalid input.", detail, pointer))


@dataclass(eq=False, repr=False, kw_only=True)
class KlaviyoEmulator(Emulator):
    """An in-memory Klaviyo account.

    Args:
        api_key: The private API key.
        lists: Lists that exist, ``{list_id: name}``.
        max_profiles: Most profiles in one import job.
        max_request_bytes: Largest request body.
        burst: Requests per second per endpoint (Klaviyo tier M: 10).
        steady: Requests per minute per endpoint (tier M: 150).
        polls_to_complete: Job status reads before a job completes.
        create_status: HTTP status of a created job.
        retry_after_header: Send ``Retry-After`` with a 429.
        strict_content_type: Refuse bodies not sent as ``application/vnd.api+json`` (415).
        max_list_profiles: Most profiles per list membership call.
        errors_page_size: Import errors per page.
        clock: Monotonic clock of the rate windows.
        seed: Seed of the random fault switches.
    """

    vendor: ClassVar[str] = "klaviyo"
    destination_file: ClassVar[DestinationFile] = DestinationFile(
        {"api_key": "KLAVIYO_API_KEY"}, settings={"poll_interval_seconds": 0.05}
    )

    api_key: str = "pk_emulator_0000000000000000000000000000"
    lists: InitVar[Mapping[str, str] | None] = None
    max_profiles: int = 10_000
    max_request_bytes: int = 5 * KB * KB
    burst: InitVar[int] = 10
    steady: InitVar[int] = 150
    polls_to_complete: int = 2
    create_status: int = 202
    retry_after_header: bool = True
    strict_content_type: bool = True
    max_list_profiles: int = 1000
    errors_page_size: int = 20
    clock: Callable[[], float] = time.monotonic
    seed: InitVar[int] = 0

    def __post_init__(
        self, lists: Mapping[str, str] | None, burst: int, steady: int, seed: int
    ) -> None:
        super().__init__(seed=seed)
        self.limits = ((burst, 1.0), (steady, 60.0))
        self.hold_jobs = False
        self._initial_lists = dict(lists if lists is not None else {"Y6nRLr": "Emulator list"})
        self.store = Store()
        self.jobs: dict[str, Job[Outcome]] = {}
        self.windows: dict[str, tuple[FixedWindow, ...]] = {}
        self.vendor_reset()

    # -- hooks -----------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route(JOBS, self._create_job, methods=["POST"]),
            Route(JOBS + "/{id}", self._get_job, methods=["GET"]),
            Route(JOBS + "/{id}/import-errors", self._import_errors, methods=["GET"]),
            Route(JOBS + "/{id}/relationships/profiles", self._job_profiles, methods=["GET"]),
            Route("/api/lists", self._lists, methods=["GET"]),
            Route(
                "/api/lists/{id}/relationships/profiles",
                self._list_members,
                methods=["GET", "POST", "DELETE"],
            ),
            Route("/api/profiles", self._profiles, methods=["GET"]),
            Route("/api/data-privacy-deletion-jobs", self._delete_profile, methods=["POST"]),
        ]

    def vendor_error(self, status: int, message: str) -> Response:
        return _document(status, api_error(status, "error", "A server error occurred.", message))

    def vendor_rate_limited(self, retry_after: float) -> Response:
        wait = max(1, math.ceil(retry_after))
        return JSONResponse(
            {
                "errors": [
                    api_error(
                        429,
                        "throttled",
                        "Request was throttled.",
                        f"Request was throttled. Expected available in {wait} second"
                        + ("s." if wait != 1 else "."),
                    )
                ]
            },
            status_code=429,
            media_type=MEDIA,
            headers={"Retry-After": str(wait)} if self.retry_after_header else None,
        )

    def vendor_control(self, spec: dict[str, Any]) -> None:
        """``{"hold_jobs": true}`` keeps jobs processing; ``{"cancel_job": id}`` cancels one."""
        if "hold_jobs" in spec:
            self.hold(bool(spec["hold_jobs"]))
        if "cancel_job" in spec and spec["cancel_job"] in self.jobs:
            self.jobs[spec["cancel_job"]].stop("cancelled")

    def vendor_state(self) -> dict[str, Any]:
        return {
            "profiles": list(self.store.profiles.values()),
            "lists": {
                i: {"name": lst["name"], "profiles": sorted(lst["profiles"])}
                for i, lst in self.store.lists.items()
            },
            "jobs": {i: job.status for i, job in self.jobs.items()},
        }

    def vendor_reset(self) -> None:
        self.store = Store(
            lists={
                i: {"id": i, "name": name, "profiles": set()}
                for i, name in self._initial_lists.items()
            }
        )
        self.jobs.clear()
        self.windows.clear()

    # -- control and inspection ------------------------------------------------------------

    def hold(self, held: bool = True) -> None:
        """Keep jobs in ``processing`` however often they are polled (or release them)."""
        with self.lock:
            self.hold_jobs = held
            for job in self.jobs.values():
                job.held = held

    def profile(self, key: str, value: Any) -> Profile | None:
        """The profile with this identifier (``email``, ``phone_number``, ``external_id``)."""
        with self.lock:
            found = self.store.find(key, value)
            return dict(found) if found is not None else None

    def members(self, list_id: str) -> set[str]:
        """E-mail (or id, for profiles without one) of each member of a list."""
        with self.lock:
            profiles = self.store.profiles
            return {profiles[p].get("email") or p for p in self.store.lists[list_id]["profiles"]}

    # -- edge --------------------------------------------------------------------------------

    async def before_request(self, request: Request) -> Response | None:
        if authorization(request, "Klaviyo-API-Key") != self.api_key:
            return _document(
                401,
                api_error(
                    401,
                    "not_authenticated",
                    "Authentication credentials were not provided.",
                    "Missing or invalid private key.",
                ),
            )
        if not REVISION.match(request.headers.get("revision", "")):
            return _invalid("Send a `revision` header with a date, e.g. 2025-01-15.")
        route = request.scope.get("route")
        key = f"{request.method} {getattr(route, 'path', request.url.path)}"
        with self.lock:
            windows = self.windows.setdefault(
                key, tuple(FixedWindow(n, s, self.clock) for n, s in self.limits)
            )
        hits = [w.hit() for w in windows]
        refused = [wait for allowed, _, wait in hits if not allowed]
        if refused:
            return self.vendor_rate_limited(max(refused))
        # Report the window closest to its limit, as one RateLimit-* triple.
        (window, (_, remaining, wait)) = min(zip(windows, hits, strict=True), key=lambda x: x[1][1])
        request.state.rate = (window.limit, remaining, wait)
        return None

    def response_headers(self, request: Request) -> dict[str, str]:
        rate = getattr(request.state, "rate", None)
        if rate is None:
            return {}
        limit, remaining, wait = rate
        return {
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(max(0, math.ceil(wait))),
        }

    async def _body(self, request: Request) -> Any | Response:
        media = request.headers.get("content-type", "").split(";")[0].strip()
        if self.strict_content_type and media != MEDIA:
            return _document(
                415,
                api_error(
                    415,
                    "unsupported_media_type",
                    "Unsupported media type.",
                    f"Send the body as {MEDIA}.",
                ),
            )
        raw = await request.body()
        if len(raw) > self.max_request_bytes:
            return _invalid(f"The body is larger than {self.max_request_bytes} bytes.", status=413)
        try:
            return await request.json()
        except ValueError:
            return _invalid("The body is not valid JSON.")

    def _job(self, request: Request) -> Job[Outcome] | Response:
        job = self.jobs.get(request.path_params["id"])
        if job is None:
            return _document(404, api_error(404, "not_found", "Not found.", "No job with this id."))
        return job

    def _job_resource(self, request: Request, job: Job[Outcome]) -> dict[str, Any]:
        outcome = job.result or Outcome()
        base = f"{request.base_url}api/profile-bulk-import-jobs/{job.id}"
        return {
            "type": "profile-bulk-import-job",
            "id": job.id,
            "attributes": {
                "status": job.status,
                "created_at": stamp(job.created_at),
                "total_count": job.total,
                "completed_count": len(outcome.profile_ids),
                "failed_count": len(outcome.errors),
                "completed_at": stamp(job.finished_at) if job.finished_at else None,
                "expires_at": stamp(job.created_at + 7 * 86400),
                "started_at": stamp(job.started_at) if job.started_at else None,
            },
            "relationships": {
                "lists": {"data": [{"type": "list", "id": i} for i in job.kind.split(",") if i]},
                "profiles": {"links": {"related": f"{base}/relationships/profiles"}},
                "import-errors": {"links": {"related": f"{base}/import-errors"}},
            },
            "links": {"self": base},
        }

    # -- import jobs -------------------------------------------------------------------------

    async def _create_job(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != "profile-bulk-import-job":
            return _invalid("`data.type` must be `profile-bulk-import-job`.", "/data/type")
        profiles = ((data.get("attributes") or {}).get("profiles") or {}).get("data")
        pointer = "/data/attributes/profiles/data"
        if not isinstance(profiles, list) or not profiles:
            return _invalid("`profiles.data` must be a non-empty array.", pointer)
        if len(profiles) > self.max_profiles:
            return _invalid(
                f"{len(profiles)} profiles given; a job takes at most {self.max_profiles}.",
                pointer,
            )
        lists = ((data.get("relationships") or {}).get("lists") or {}).get("data") or []
        with self.lock:
            list_ids = [str(item.get("id")) for item in lists if isinstance(item, dict)]
            unknown = [i for i in list_ids if i not in self.store.lists]
            if unknown or len(list_ids) != len(lists):
                return _invalid(
                    f"List {unknown[0] if unknown else '?'} does not exist.",
                    "/data/relationships/lists/data",
                )
            job = Job(
                len(profiles),
                lambda: self._run(profiles, list_ids),
                STAGES,
                self.polls_to_complete,
                kind=",".join(list_ids),
                held=self.hold_jobs,
            )
            self.jobs[job.id] = job
            resource = self._job_resource(request, job)
        return JSONResponse({"data": resource}, status_code=self.create_status, media_type=MEDIA)

    def _run(self, profiles: list[Any], list_ids: list[str]) -> Outcome:
        """The job's work: upsert each profile, add it to the lists, note each refusal."""
        outcome = Outcome()
        for index, item in enumerate(profiles):
            checked = self.store.check(item, self.faults.rejects)
            result = (
                checked if isinstance(checked, ImportProblem) else self.store.upsert(item, checked)
            )
            if isinstance(result, ImportProblem):
                outcome.errors.append(
                    {
                        "type": "import-error",
                        "id": f"{index}",
                        "attributes": {
                            "code": result.code,
                            "title": result.title,
                            "detail": result.detail,
                            "source": {
                                "pointer": f"/data/attributes/profiles/data/{index}{result.pointer}"
                            },
                            "original_payload": item,
                        },
                    }
                )
                continue
            outcome.profile_ids.append(result["id"])
            for list_id in list_ids:
                self.store.lists[list_id]["profiles"].add(result["id"])
        return outcome

    async def _get_job(self, request: Request) -> Response:
        with self.lock:
            job = self._job(request)
            if isinstance(job, Response):
                return job
            job.poll()
            resource = self._job_resource(request, job)
        return JSONResponse({"data": resource}, media_type=MEDIA)

    async def _import_errors(self, request: Request) -> Response:
        return self._job_page(request, lambda o: o.errors, lambda e: e, self.errors_page_size)

    async def _job_profiles(self, request: Request) -> Response:
        return self._job_page(
            request, lambda o: o.profile_ids, lambda i: {"type": "profile", "id": i}, 20
        )

    def _job_page(
        self,
        request: Request,
        listed: Callable[[Outcome], Sequence[Any]],
        render: Callable[[Any], dict[str, Any]],
        size: int,
    ) -> Response:
        """One page of what an import job lists; empty until the job has finished."""
        with self.lock:
            job = self._job(request)
            if isinstance(job, Response):
                return job
            rows = listed(job.result) if job.result else []
        return JSONResponse(page(request, rows, render, size), media_type=MEDIA)

    # -- lists and profiles ------------------------------------------------------------------

    async def _lists(self, request: Request) -> Response:
        with self.lock:
            rows = [
                {"type": "list", "id": i, "attributes": {"name": lst["name"]}}
                for i, lst in self.store.lists.items()
            ]
        return JSONResponse(page(request, rows, lambda r: r, 10), media_type=MEDIA)

    async def _list_members(self, request: Request) -> Response:
        body = None if request.method == "GET" else await self._body(request)
        if isinstance(body, Response):
            return body
        with self.lock:
            lst = self.store.lists.get(request.path_params["id"])
            if lst is None:
                return _document(404, api_error(404, "not_found", "Not found.", "No such list."))
            if request.method == "GET":
                ids = sorted(lst["profiles"])
                return JSONResponse(
                    page(request, ids, lambda i: {"type": "profile", "id": i}, 20),
                    media_type=MEDIA,
                )
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list) or not data:
                return _invalid("`data` must be a non-empty array of profiles.")
            if len(data) > self.max_list_profiles:
                return _invalid(f"At most {self.max_list_profiles} profiles per request.")
            ids = [str(d.get("id")) for d in data if isinstance(d, dict)]
            for n, profile_id in enumerate(ids):
                if profile_id not in self.store.profiles:
                    return _invalid(f"Profile {profile_id} does not exist.", f"/data/{n}/id")
            for profile_id in ids:
                if request.method == "POST":
                    lst["profiles"].add(profile_id)
                else:
                    lst["profiles"].discard(profile_id)
        return Response(status_code=204)

    async def _profiles(self, request: Request) -> Response:
        expression = request.query_params.get("filter")
        with self.lock:
            rows = list(self.store.profiles.values())
            if expression is not None:
                selected = self.store.select(expression)
                if isinstance(selected, str):
                    return _invalid(selected, "/filter")
                rows = selected
            document = page(request, rows, _profile_resource, 20)
        return JSONResponse(document, media_type=MEDIA)

    async def _delete_profile(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        try:
            target = body["data"]["attributes"]["profile"]["data"]
        except (KeyError, TypeError):
            return _invalid("Name the profile in `data.attributes.profile.data`.")
        with self.lock:
            attributes = target.get("attributes") or {} if isinstance(target, dict) else {}
            found = self.store.find("id", target.get("id")) if isinstance(target, dict) else None
            for key in IDENTIFIERS:
                found = found or self.store.find(key, attributes.get(key))
            if found is not None:
                self.store.delete(found["id"])
        return Response(status_code=202)


def _profile_resource(profile: Profile) -> dict[str, Any]:
    return {
        "type": "profile",
        "id": profile["id"],
        "attributes": {k: v for k, v in profile.items() if k != "id"},
    }
