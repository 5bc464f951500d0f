"""Salesforce emulator: OAuth, describe, sObject Collections, SOQL lookups, Bulk API 2.0 ingest.

Enforces what the real org enforces for a sync: Bearer sessions issued by the token endpoint
(401 ``INVALID_SESSION_ID`` otherwise), the 200-record collection cap, external-id fields
that must exist and be marked external, required fields per record, the org's daily API
request allocation (403 ``REQUEST_LIMIT_EXCEEDED``) with ``Sforce-Limit-Info`` on every
answer, and Bulk API 2.0 jobs that move through their states on later polls and report rows
in successful / failed / unprocessed result CSVs (in no particular order).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import secrets
from dataclasses import InitVar
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import PlainTextResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import SlidingWindow

DATA = "/services/data/{version}"
MIN_COLLECTIONS_UPSERT = 46.0
NULL_MARK = "#N/A"  # Bulk API CSV: set the field to null (an empty cell leaves it alone)
DAY = 86_400.0


@dataclass(frozen=True)
class SField:
    """One field of an sObject as ``describe`` reports it."""

    name: str
    type: str = "string"  # string | email | double | boolean | id | date | datetime
    required: bool = False  # not nillable and no default: must be set on create
    external_id: bool = False
    updateable: bool = True
    defaulted: bool = False  # Salesforce sets it on create (Id, a checkbox's default)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.name.removesuffix("__c").replace("_", " "),
            "type": self.type,
            "nillable": not (self.required or self.defaulted),
            "createable": self.updateable,
            "updateable": self.updateable,
            "defaultedOnCreate": self.defaulted,
            "externalId": self.external_id,
            "idLookup": self.external_id or self.name in ("Id", "Email"),
            "unique": self.external_id,
        }


def default_objects() -> dict[str, list[SField]]:
    """Contact and Account as a fresh org has them, plus one custom external id each."""
    common = [
        SField("Id", "id", updateable=False, defaulted=True),
        SField("External_Id__c", external_id=True),
        SField("CreatedDate", "datetime", updateable=False),
    ]
    return {
        "Contact": [
            *common,
            SField("LastName", required=True),
            SField("FirstName"),
            SField("Email", "email"),
            SField("Lead_Score__c", "double"),
            SField("HasOptedOutOfEmail", "boolean", defaulted=True),
        ],
        "Account": [*common, SField("Name", required=True), SField("Website")],
    }


@dataclass
class Job:
    """A Bulk API 2.0 ingest job."""

    id: str
    object: str
    operation: str
    external_id: str | None
    line_ending: str
    state: str = "Open"
    polls: int = 0
    csv_text: str | None = None
    succeeded: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    unprocessed: list[dict[str, str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    error_message: str | None = None

    def info(self, version: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "state": self.state,
            "externalIdFieldName": self.external_id,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(version.lstrip("v")),
            "contentUrl": f"services/data/{version}/jobs/ingest/{self.id}/batches",
            "lineEnding": self.line_ending,
            "columnDelimiter": "COMMA",
            "jobType": "V2Ingest",
            "numberRecordsProcessed": len(self.succeeded) + len(self.failed),
            "numberRecordsFailed": len(self.failed),
            "retries": 0,
        }
        if self.error_message:
            body["errorMessage"] = self.error_message
        return body


def sf_error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    """A REST error in Salesforce's shape: a JSON array of ``{message, errorCode}``."""
    return JSONResponse([{"message": message, "errorCode": code}], status, headers=headers)


def item_error(code: str, message: str, fields: list[str] | None = None) -> dict[str, Any]:
    return {"statusCode": code, "message": message, "fields": fields or []}


@dataclass(eq=False, repr=False, kw_only=True)
class SalesforceEmulator(Emulator):
    """An in-memory Salesforce org.

    Args:
        client_id: The connected app's consumer key.
        client_secret: Its consumer secret.
        refresh_token: A refresh token the token endpoint accepts.
        objects: sObject name -> fields (default: :func:`default_objects`).
        daily_api_limit: Org API requests per rolling 24 hours.
        collection_limit: Most records per sObject Collections call.
        query_page_size: Rows per SOQL answer page.
        bulk_upload_limit: Largest Bulk API CSV upload, in bytes.
        bulk_polls_per_state: Job polls before a job moves on to its next state.
        bulk_fail_after: When set, jobs process this many rows, then fail (the rest stay
            unprocessed), as a job hitting an org limit does.
        seed: Seed of the fault switches.
    """

    vendor = "salesforce"

    client_id: str = "3MVG9-emulator-client"
    client_secret: str = "emulator-client-secret"
    refresh_token: str = "5Aep-emulator-refresh-token"
    objects: InitVar[dict[str, list[SField]] | None] = None
    daily_api_limit: InitVar[int] = 100_000
    collection_limit: int = 200
    query_page_size: int = 2000
    bulk_upload_limit: int = 150 * 1024 * 1024
    bulk_polls_per_state: int = 1
    bulk_fail_after: int | None = None
    seed: InitVar[int] = 0

    def __post_init__(
        self, objects: dict[str, list[SField]] | None, daily_api_limit: int, seed: int
    ) -> None:
        super().__init__(seed=seed)
        self.schema = {
            name: {f.name: f for f in fields}
            for name, fields in (objects or default_objects()).items()
        }
        self.quota = SlidingWindow(daily_api_limit, DAY)
        self._remaining = daily_api_limit
        self._index: dict[tuple[str, str], dict[str, str]] = {}
        self.tokens: set[str] = set()
        self.issued: list[str] = []  # every access token ever issued (for secret-leak checks)
        self.records: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in self.schema}
        self.deleted: set[str] = set()
        self.jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._cursors: dict[str, list[dict[str, Any]]] = {}

    # -- emulator hooks ---------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        ingest = f"{DATA}/jobs/ingest"
        return [
            Route("/services/oauth2/token", self.token, methods=["POST"]),
            Route(f"{DATA}/limits", self.limits, methods=["GET"]),
            Route(f"{DATA}/sobjects/{{obj}}/describe", self.describe, methods=["GET"]),
            Route(f"{DATA}/composite/sobjects/{{obj}}/{{ext}}", self.upsert, methods=["PATCH"]),
            Route(f"{DATA}/composite/sobjects", self.delete, methods=["DELETE"]),
            Route(f"{DATA}/query", self.query, methods=["GET"]),
            Route(f"{DATA}/query/{{cursor}}", self.query_more, methods=["GET"]),
            Route(ingest, self.create_job, methods=["POST"]),
            Route(f"{ingest}/{{job}}", self.job, methods=["GET", "PATCH", "DELETE"]),
            Route(f"{ingest}/{{job}}/batches", self.upload, methods=["PUT"]),
            Route(f"{ingest}/{{job}}/{{kind}}", self.results, methods=["GET"]),
            Route(f"{ingest}/{{job}}/{{kind}}/", self.results, methods=["GET"]),
        ]

    def vendor_error(self, status: int, message: str) -> Response:
        code = "SERVER_UNAVAILABLE" if status >= 500 else "BAD_REQUEST"
        return sf_error(status, code, message)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        # Salesforce throttles concurrent long-running requests with a 403, not a 429.
        return sf_error(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentPerOrgLongTxn Limit exceeded.",
            **{"Retry-After": f"{max(1, round(retry_after))}"},
        )

    def vendor_state(self) -> dict[str, Any]:
        return {name: dict(rows) for name, rows in self.records.items()}

    def vendor_reset(self) -> None:
        self.records = {n: {} for n in self.schema}
        self.deleted.clear()
        self._index.clear()
        self.jobs.clear()
        self._cursors.clear()

    def credentials(self) -> dict[str, str]:
        return {
            "SALESFORCE_CLIENT_ID": self.client_id,
            "SALESFORCE_CLIENT_SECRET": self.client_secret,
        }

    def destination_config(self, base_url: str) -> dict[str, Any]:
        return {
            "type": "salesforce",
            "login_url": base_url,
            "auth": {
                "type": "client_credentials",
                "client_id": "${env:SALESFORCE_CLIENT_ID}",
                "client_secret": "${env:SALESFORCE_CLIENT_SECRET}",
            },
            "object": "Contact",
            "external_id_field": "External_Id__c",
        }

    # -- inspection and switches -------------------------------------------------------------

    def by_field(self, obj: str, name: str) -> dict[str, dict[str, Any]]:
        """Records of ``obj`` keyed by the text of field ``name`` (records without it skipped)."""
        with self.lock:
            return {
                str(r[name]): dict(r) for r in self.records[obj].values() if r.get(name) is not None
            }

    def use_up_api_quota(self) -> None:
        """Spend what is left of the org's daily API requests."""
        while self.quota.hit()[0]:
            pass
        self._remaining = 0

    def expire_sessions(self) -> None:
        """End every issued session, as an org's session timeout does."""
        with self.lock:
            self.tokens.clear()

    # -- OAuth ----------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8")).items()}
        grant = form.get("grant_type")
        if grant not in ("client_credentials", "refresh_token"):
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        if form.get("client_id") != self.client_id:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if form.get("client_secret") != self.client_secret:
            return _oauth_error("invalid_client", "invalid client credentials")
        if grant == "refresh_token" and form.get("refresh_token") != self.refresh_token:
            return _oauth_error("invalid_grant", "expired access/refresh token")
        access = f"00DEMU000000001!{secrets.token_urlsafe(24)}"
        with self.lock:
            self.tokens.add(access)
            self.issued.append(access)
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "access_token": access,
                "instance_url": base,
                "id": f"{base}/id/00DEMU000000001/005EMU000000001",
                "token_type": "Bearer",
                "issued_at": "1700000000000",
                "signature": secrets.token_urlsafe(16),
                "scope": "api",
            }
        )

    async def before_request(self, request: Request) -> Response | None:
        """Auth and the daily quota, checked before any data call (not the token endpoint)."""
        if not _is_data(request):
            return None
        version = request.path_params.get("version", "")
        if not re.fullmatch(r"v\d+\.\d", version):
            return sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        with self.lock:
            known = scheme.lower() == "bearer" and token in self.tokens
        if not known:
            return sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        allowed, remaining, _ = self.quota.hit()
        self._remaining = remaining
        if not allowed:
            return sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        return None

    def response_headers(self, request: Request) -> dict[str, str]:
        """``Sforce-Limit-Info`` on every answer of a data call."""
        if not _is_data(request):
            return {}
        used = self.quota.limit - self._remaining
        return {"Sforce-Limit-Info": f"api-usage={used}/{self.quota.limit}"}

    # -- REST ----------------------------------------------------------------------------

    async def limits(self, request: Request) -> Response:
        left = self._remaining
        return JSONResponse({"DailyApiRequests": {"Max": self.quota.limit, "Remaining": left}})

    async def describe(self, request: Request) -> Response:
        fields = self.schema.get(request.path_params["obj"])
        if fields is None:
            return sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        return JSONResponse(
            {
                "name": request.path_params["obj"],
                "createable": True,
                "updateable": True,
                "fields": [f.describe() for f in fields.values()],
            }
        )

    async def upsert(self, request: Request) -> Response:
        obj, ext = request.path_params["obj"], request.path_params["ext"]
        version = float(request.path_params["version"].lstrip("v"))
        fields = self.schema.get(obj)
        if fields is None or version < MIN_COLLECTIONS_UPSERT:
            return sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        problem = self._ext_problem(obj, ext)
        if problem is not None:
            return sf_error(*problem)
        try:
            body = await request.json()
        except ValueError:
            return sf_error(400, "JSON_PARSER_ERROR", "Unexpected character in request body")
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            return sf_error(400, "JSON_PARSER_ERROR", "Expected a `records` array")
        if len(records) > self.collection_limit:
            return self._over_limit()
        for rec in records:
            kind = rec.get("attributes", {}).get("type") if isinstance(rec, dict) else None
            if not kind:
                return sf_error(400, "INVALID_TYPE", "Must send a concrete entity type.")
            for name in rec:
                if name != "attributes" and name not in fields:
                    return sf_error(
                        400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj}"
                    )
        all_or_none = bool(body.get("allOrNone", False))
        with self.lock:
            saved = (dict(self.records[obj]), {k: dict(v) for k, v in self._index.items()})
            results = [self._upsert_one(obj, ext, rec) for rec in records]
            if all_or_none and any(not r["success"] for r in results):
                self.records[obj], self._index = saved  # roll the whole call back
                results = [
                    r
                    if not r["success"]
                    else {
                        "id": None,
                        "success": False,
                        "errors": [
                            item_error(
                                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                "Record rolled back because not all records were valid and the "
                                "request was using AllOrNone header",
                            )
                        ],
                    }
                    for r in results
                ]
        return JSONResponse(results)

    def _over_limit(self) -> Response:
        """A collection call with more records than ``collection_limit``."""
        return sf_error(
            400,
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {self.collection_limit} "
            "records into this call",
        )

    def _ext_problem(self, obj: str, ext: str) -> tuple[int, str, str] | None:
        spec = self.schema[obj].get(ext)
        if spec is None:
            return (
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {ext}",
            )
        if not (spec.external_id or spec.name == "Id"):
            return (400, "INVALID_FIELD", f"Field {ext} is not an External ID field for {obj}")
        return None

    def _upsert_one(self, obj: str, ext: str, rec: dict[str, Any]) -> dict[str, Any]:
        """Create or update one record by its external id (the lock is held)."""
        values = {k: v for k, v in rec.items() if k != "attributes"}
        return self._apply(obj, ext, values)

    def _find(self, obj: str, name: str, key: str) -> dict[str, Any] | None:
        """The record of ``obj`` whose field ``name`` holds ``key`` (the lock is held)."""
        if name == "Id":
            return self.records[obj].get(key)
        found = self._index.get((obj, name), {}).get(key)
        return None if found is None else self.records[obj].get(found)

    def _store(self, obj: str, record: dict[str, Any]) -> None:
        old = self.records[obj].get(record["Id"], {})
        for spec in self.schema[obj].values():
            if not spec.external_id:
                continue
            index = self._index.setdefault((obj, spec.name), {})
            if old.get(spec.name) is not None:
                index.pop(str(old[spec.name]), None)
            if record.get(spec.name) is not None:
                index[str(record[spec.name])] = record["Id"]
        self.records[obj][record["Id"]] = record

    def _drop(self, obj: str, record_id: str) -> None:
        old = self.records[obj].pop(record_id)
        for (name, field_name), index in self._index.items():
            if name == obj and old.get(field_name) is not None:
                index.pop(str(old[field_name]), None)
        self.deleted.add(record_id)

    def _apply(
        self, obj: str, ext: str | None, values: dict[str, Any], *, create: bool = True
    ) -> dict[str, Any]:
        """Write one record: by ``ext`` when given (upsert), else create (the lock is held)."""
        fields = self.schema[obj]

        def failed(code: str, message: str, names: list[str] | None = None) -> dict[str, Any]:
            return {"id": None, "success": False, "errors": [item_error(code, message, names)]}

        key = None if ext is None else values.get(ext)
        if ext is not None and (key is None or key == ""):
            return failed("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{ext}]", [ext])
        ident = values.get("External_Id__c", key)
        if ident is not None and str(ident) in self.faults.rejects:
            return failed("FIELD_CUSTOM_VALIDATION_EXCEPTION", self.faults.rejects[str(ident)])
        locked = [n for n in values if n not in (ext, "Id") and not fields[n].updateable]
        if locked:
            return failed(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(locked)}. Please check the security "
                "settings of this field and verify that it is read/write for your profile.",
                locked,
            )
        for name, value in values.items():
            problem = _type_problem(fields[name], value)
            if problem:
                return failed(*problem, [name])
        existing = None if ext is None else self._find(obj, ext, str(key))
        if existing is None and (not create or ext == "Id"):
            return failed("NOT_FOUND", "entity not found", [ext or "Id"])
        typed = {k: _coerce(fields[k], v) for k, v in values.items() if k != "Id"}
        merged = {**(existing or {}), **typed}
        missing = [
            f.name for f in fields.values() if f.required and merged.get(f.name) in (None, "")
        ]
        if missing:
            return failed(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        if existing is None:
            merged["Id"] = self._new_id(obj)
            merged["CreatedDate"] = "2024-01-01T00:00:00.000+0000"
        self._store(obj, merged)
        return {"id": merged["Id"], "success": True, "errors": [], "created": existing is None}

    def _new_id(self, obj: str) -> str:
        prefix = {"Contact": "003", "Account": "001"}.get(obj, "a00")
        return f"{prefix}EMU{next(self._ids):012d}"[:18]

    async def delete(self, request: Request) -> Response:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if not ids:
            return sf_error(400, "MISSING_ARGUMENT", "ids parameter is required")
        if len(ids) > self.collection_limit:
            return self._over_limit()
        with self.lock:
            return JSONResponse([self._delete_one(i) for i in ids])

    def _delete_one(self, record_id: str) -> dict[str, Any]:
        for obj, rows in self.records.items():
            if record_id in rows:
                ext = rows[record_id].get("External_Id__c")
                if ext is not None and str(ext) in self.faults.rejects:
                    return {
                        "id": record_id,
                        "success": False,
                        "errors": [item_error("DELETE_FAILED", self.faults.rejects[str(ext)])],
                    }
                self._drop(obj, record_id)
                return {"id": record_id, "success": True, "errors": []}
        if record_id in self.deleted:
            return {
                "id": record_id,
                "success": False,
                "errors": [item_error("ENTITY_IS_DELETED", "entity is deleted")],
            }
        return {
            "id": record_id,
            "success": False,
            "errors": [item_error("MALFORMED_ID", f"malformed id {record_id}")],
        }

    async def query(self, request: Request) -> Response:
        parsed = _parse_soql(request.query_params.get("q", ""))
        if parsed is None:
            return sf_error(400, "MALFORMED_QUERY", "unexpected token in query")
        names, obj, where_field, values = parsed
        fields = self.schema.get(obj)
        if fields is None:
            return sf_error(400, "INVALID_TYPE", f"sObject type '{obj}' is not supported.")
        for name in [*names, *([where_field] if where_field else [])]:
            if name not in fields:
                return sf_error(400, "INVALID_FIELD", f"No such column '{name}' on entity '{obj}'")
        with self.lock:
            rows = [
                {"attributes": {"type": obj}, **{n: r.get(n) for n in names}}
                for r in self.records[obj].values()
                if where_field is None or str(r.get(where_field)) in values
            ]
        return self._page(request.path_params["version"], rows)

    async def query_more(self, request: Request) -> Response:
        with self.lock:
            rows = self._cursors.pop(request.path_params["cursor"], None)
        if rows is None:
            return sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(request.path_params["version"], rows)

    def _page(self, version: str, rows: list[dict[str, Any]]) -> Response:
        page, rest = rows[: self.query_page_size], rows[self.query_page_size :]
        body: dict[str, Any] = {"totalSize": len(rows), "done": not rest, "records": page}
        if rest:
            cursor = f"01gEMU{secrets.token_hex(6)}-{self.query_page_size}"
            with self.lock:
                self._cursors[cursor] = rest
            body["nextRecordsUrl"] = f"/services/data/{version}/query/{cursor}"
        return JSONResponse(body)

    # -- Bulk API 2.0 ---------------------------------------------------------------------

    async def create_job(self, request: Request) -> Response:
        try:
            spec = await request.json()
        except ValueError:
            return sf_error(400, "JSON_PARSER_ERROR", "Unexpected character in request body")
        obj = spec.get("object")
        operation = spec.get("operation")
        ext = spec.get("externalIdFieldName")
        if obj not in self.schema:
            return sf_error(400, "INVALIDJOB", f"Unable to find object: {obj}")
        if operation not in ("insert", "update", "upsert", "delete", "hardDelete"):
            return sf_error(400, "INVALIDJOB", f"Invalid operation: {operation}")
        if spec.get("contentType", "CSV") != "CSV":
            return sf_error(400, "INVALIDJOB", "contentType must be CSV")
        if operation == "upsert":
            if not ext:
                return sf_error(
                    400,
                    "INVALIDJOB",
                    f"External ID was blank for {obj}. An External ID must be specified for upsert.",
                )
            problem = self._ext_problem(obj, ext)
            if problem is not None:
                return sf_error(400, "INVALIDJOB", problem[2])
        job = Job(
            id=f"750EMU{secrets.token_hex(6).upper()}",
            object=obj,
            operation=operation,
            external_id=ext if operation == "upsert" else None,
            line_ending=spec.get("lineEnding", "LF"),
        )
        with self.lock:
            self.jobs[job.id] = job
        return JSONResponse(job.info(request.path_params["version"]))

    async def upload(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job"])
        if job is None:
            return sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        if not request.headers.get("content-type", "").startswith("text/csv"):
            return sf_error(400, "INVALIDCONTENTTYPE", "Content-Type must be text/csv")
        raw = await request.body()
        if len(raw) > self.bulk_upload_limit:
            return sf_error(400, "INVALIDBATCH", "Exceeded max file size")
        if job.state != "Open" or job.csv_text is not None:
            return sf_error(
                409, "INVALIDJOBSTATE", "Found multiple contents for job or job is not Open"
            )
        job.csv_text = raw.decode("utf-8")
        return Response(status_code=201)

    async def job(self, request: Request) -> Response:
        version = request.path_params["version"]
        wanted = (await request.json()).get("state") if request.method == "PATCH" else None
        with self.lock:
            job = self.jobs.get(request.path_params["job"])
            if job is None:
                return sf_error(404, "NOT_FOUND", "The requested resource does not exist")
            if request.method == "DELETE":
                if job.state not in ("JobComplete", "Failed", "Aborted"):
                    return sf_error(400, "INVALIDJOBSTATE", "Job is not in a terminal state")
                del self.jobs[job.id]
                return Response(status_code=204)
            if request.method == "PATCH":
                return self._change_state(job, wanted, version)
            self._advance(job)
            return JSONResponse(job.info(version))

    def _change_state(self, job: Job, wanted: Any, version: str) -> Response:
        if wanted == "UploadComplete" and job.state == "Open":
            if job.csv_text is None:
                job.state, job.error_message = "Failed", "InvalidBatch : No batches were found"
            else:
                job.state = "UploadComplete"
        elif wanted == "Aborted" and job.state in ("Open", "UploadComplete", "InProgress"):
            job.state = "Aborted"
            job.columns, rows = _read_csv(job.csv_text or "")
            job.unprocessed = rows
        else:
            return sf_error(
                400, "INVALIDJOBSTATE", f"Cannot change the job state from {job.state} to {wanted}"
            )
        return JSONResponse(job.info(version))

    def _advance(self, job: Job) -> None:
        """Jobs move on one state every ``bulk_polls_per_state`` polls (the lock is held)."""
        if job.state not in ("UploadComplete", "InProgress"):
            return
        job.polls += 1
        if job.polls < self.bulk_polls_per_state:
            return
        job.polls = 0
        if job.state == "UploadComplete":
            job.state = "InProgress"
            return
        self._process(job)

    def _process(self, job: Job) -> None:
        job.columns, rows = _read_csv(job.csv_text or "")
        fields = self.schema[job.object]
        unknown = [c for c in job.columns if c not in fields]
        if unknown:
            job.state = "Failed"
            job.error_message = f"InvalidBatch : Field name not found : {unknown[0]}"
            job.unprocessed = rows
            return
        limit = len(rows) if self.bulk_fail_after is None else self.bulk_fail_after
        for row in rows[:limit]:
            if job.operation in ("delete", "hardDelete"):
                outcome = self._delete_one(row.get("Id", ""))
            else:
                values = {k: (None if v == NULL_MARK else v) for k, v in row.items() if v != ""}
                outcome = self._bulk_write(job, values)
            if outcome["success"]:
                created = "true" if outcome.get("created") else "false"
                job.succeeded.append({"sf__Id": outcome["id"], "sf__Created": created, **row})
            else:
                err = outcome["errors"][0]
                text = f"{err['statusCode']}:{err['message']}:{','.join(err['fields'])} --"
                job.failed.append({"sf__Id": "", "sf__Error": text, **row})
        job.unprocessed = rows[limit:]
        if job.unprocessed:
            job.state = "Failed"
            job.error_message = "Max retries exceeded while processing the job"
        else:
            job.state = "JobComplete"

    def _bulk_write(self, job: Job, values: dict[str, Any]) -> dict[str, Any]:
        if job.operation == "upsert":
            return self._apply(job.object, job.external_id, values)
        if job.operation == "update":
            return self._apply(job.object, "Id", values, create=False)
        return self._apply(job.object, None, values)

    async def results(self, request: Request) -> Response:
        kind = request.path_params["kind"].lower()
        job = self.jobs.get(request.path_params["job"])
        if job is None or kind not in ("successfulresults", "failedresults", "unprocessedrecords"):
            return sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        if job.state not in ("JobComplete", "Failed", "Aborted"):
            return sf_error(400, "INVALIDJOBSTATE", "Job is not in a terminal state")
        if kind == "successfulresults":
            header, rows = ["sf__Id", "sf__Created", *job.columns], job.succeeded
        elif kind == "failedresults":
            header, rows = ["sf__Id", "sf__Error", *job.columns], job.failed
        else:
            header, rows = list(job.columns), job.unprocessed
        out = io.StringIO()
        writer = csv.DictWriter(out, header, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writeheader()
        # Results come back in no particular order: clients must correlate by key.
        writer.writerows(reversed(rows))
        return PlainTextResponse(out.getvalue(), media_type="text/csv")


def _is_data(request: Request) -> bool:
    return request.url.path.startswith("/services/data/")


def _oauth_error(code: str, description: str) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=400)


def _read_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def _type_problem(spec: SField, value: Any) -> tuple[str, str] | None:
    if value is None or value == "":
        return None
    if spec.type == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", str(value)):
        return "INVALID_EMAIL_ADDRESS", f"{spec.name}: invalid email address: {value}"
    if spec.type == "double":
        try:
            float(value)
        except (TypeError, ValueError):
            return (
                "INVALID_TYPE_ON_FIELD_IN_RECORD",
                f"{spec.name}: value not of required type: {value}",
            )
    return None


def _coerce(spec: SField, value: Any) -> Any:
    """Store values typed as the field is (CSV cells arrive as text)."""
    if value is None or not isinstance(value, str):
        return value
    if spec.type == "double":
        number = float(value)
        return int(number) if number.is_integer() and "." not in value else number
    if spec.type == "boolean":
        return value.lower() == "true"
    return value


_SOQL = re.compile(
    r"^\s*SELECT\s+(?P<fields>[\w\s,]+?)\s+FROM\s+(?P<obj>\w+)"
    r"(?:\s+WHERE\s+(?P<where>\w+)\s+(?:IN\s*\((?P<values>.*)\)|=\s*(?P<one>'(?:[^'\\]|\\.)*')))?"
    r"\s*$",
    re.IGNORECASE | re.DOTALL,
)
_LITERAL = re.compile(r"'((?:[^'\\]|\\.)*)'")


def _parse_soql(query: str) -> tuple[list[str], str, str | None, set[str]] | None:
    """The subset of SOQL a sync needs: ``SELECT f, g FROM Obj [WHERE f IN ('a', 'b')]``."""
    match = _SOQL.match(query)
    if match is None:
        return None
    names = [n.strip() for n in match["fields"].split(",") if n.strip()]
    listed = match["values"] if match["values"] is not None else match["one"] or ""
    values = {re.sub(r"\\(.)", r"\1", v) for v in _LITERAL.findall(listed)}
    return names, match["obj"], match["where"], values
