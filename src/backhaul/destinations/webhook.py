"""Webhook destination: send records as JSON (or a Liquid-templated body) to any URL.

Batch mode sends ``{"operation": ..., "records": [...]}`` per call; row mode sends one
record per call with its ``_operation``. A 2xx answer acknowledges the call's records,
except those it lists as failed (``results``/``errors``, see docs/destinations/webhook.md).
Bodies can be signed with HMAC-SHA256 so the receiver can trust them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import urlsplit

import pyarrow as pa
from liquid.exceptions import LiquidError
from pydantic import Field
from pydantic import field_validator

from backhaul.destinations.base import NO_REASON
from backhaul.destinations.base import Batch
from backhaul.destinations.base import BatchResults
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import RunFit
from backhaul.destinations.base import SyncProblem
from backhaul.destinations.base import SyncShape
from backhaul.destinations.http import RateLimit
from backhaul.destinations.http import RetryPolicy
from backhaul.destinations.http import dumps_json
from backhaul.destinations.http.connector import Http2
from backhaul.destinations.http.connector import client_for
from backhaul.destinations.http.connector import redactor_for
from backhaul.destinations.http.connector import run_bounded
from backhaul.destinations.http.connector import template_field_problems
from backhaul.destinations.http.ratelimit import default_concurrency
from backhaul.destinations.http.templates import ROW_VARIABLES
from backhaul.destinations.http.templates import liquid_problem
from backhaul.destinations.http.templates import row_variables
from backhaul.destinations.http.templates import template_environment
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.errors import first_line
from backhaul.floats import NonFiniteError

SIGNATURE_HEADER = "X-Backhaul-Signature"
TIMESTAMP_HEADER = "X-Backhaul-Timestamp"
# Header values that are never secret; every other configured header value is redacted.
PLAIN_HEADERS = frozenset({"content-type", "accept", "accept-language", "user-agent"})
ERROR_LIMIT = 500


class WebhookConfig(DestinationConfig):
    """``destinations/NAME.yml`` with ``type: webhook``."""

    type: Literal["webhook"]
    url: str = Field(description="Where records are sent (http or https).")
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers sent with every call (values are redacted)."
    )
    mode: Literal["row", "batch"] = Field(
        "batch", description="`batch`: many records per call; `row`: one record per call."
    )
    body_template: str | None = Field(
        None,
        description="Liquid template of the body. Row mode: the record's fields, `record`, "
        "`operation` and `key`; batch mode: `records`, `keys` and `operation`. The `json` "
        "filter writes a value as JSON.",
    )
    signing_secret: str | None = Field(
        None,
        description="Sign each body with HMAC-SHA256 (header X-Backhaul-Signature: sha256=<hex>).",
    )
    rate_limit: RateLimit | None = None
    concurrency: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Calls in flight at once (default: enough to reach `rate_limit`, "
        "16 without one; see docs/rate-limits.md).",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_seconds: float = Field(30.0, gt=0)
    http2: Http2 = True
    batch_size: int = Field(100, ge=1, le=10_000, description="Records per call in batch mode.")
    check_url: str | None = Field(
        None, description="Answered with 2xx to a GET when the receiver is healthy (for check)."
    )

    @field_validator("url", "check_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        # References (${env:...}) are resolved after validation; the connector checks again.
        if value is not None and "${" not in value:
            problem = url_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("body_template")
    @classmethod
    def _template_compiles(cls, value: str | None) -> str | None:
        problem = liquid_problem(value) if value is not None else None
        if problem:
            raise ValueError(f"body_template is {problem}")
        return value


CAPABILITIES = Capabilities(
    json_records=True,
    operations=frozenset(Operation),
    max_batch_size=10_000,
    default_batch_size=100,
    needs_match_fields=False,
)


class WebhookDestination:
    """Sends each batch to the configured URL; see :class:`WebhookConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = WebhookConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES

    @staticmethod
    def check_sync(config: WebhookConfig, shape: SyncShape) -> list[SyncProblem]:
        """The body template reads only what each body provides."""
        row = config.mode == "row"
        provided = ROW_VARIABLES if row else ("records", "keys", "operation")
        fields = shape.fields if row else ()
        return template_field_problems(
            "webhook", "body_template", config.body_template, provided, fields
        )

    @staticmethod
    def calls_in_flight(config: WebhookConfig) -> int:
        """The file's ``concurrency``, else enough calls to reach its ``rate_limit``."""
        return config.concurrency or default_concurrency(config.rate_limit)

    @classmethod
    def fit_run(cls, config: WebhookConfig) -> RunFit:
        """As many batches in flight as calls, unless the sync or ``defaults:`` says."""
        return RunFit(concurrency=cls.calls_in_flight(config))

    def __init__(self, config: WebhookConfig, context: DestinationContext) -> None:
        self.config = config
        self.redactor = redactor_for(context, config.signing_secret)
        for name, value in config.headers.items():
            if name.lower() not in PLAIN_HEADERS:
                self.redactor.add(value)
            if name.lower() in ("authorization", "proxy-authorization"):
                # "Bearer <token>": the token alone may show up elsewhere too.
                self.redactor.add(value.partition(" ")[2])
        for key, url in (("url", config.url), ("check_url", config.check_url)):
            problem = url and url_problem(url)
            if problem:
                raise DestinationError(
                    f"webhook `{key}` {self.redactor.text(problem)}: fix it in the destination file",
                    failure=FailureType.CONFIG,
                )
        self._env = template_environment()
        self._template = (
            self._env.from_string(config.body_template) if config.body_template else None
        )
        self._content_type = next(
            (v for k, v in config.headers.items() if k.lower() == "content-type"), None
        )
        calls = self.calls_in_flight(config)
        self._gate = asyncio.Semaphore(calls)
        self.client = client_for(
            "webhook",
            config,
            context,
            self.redactor,
            concurrency=calls,
            headers=config.headers,
        )

    async def check(self) -> None:
        """GET ``check_url`` when configured; otherwise make sure the host takes connections."""
        if self.config.check_url:
            try:
                result = await self.client.request("GET", self.config.check_url)
            finally:
                # A check is one-off and may run in another event loop than the writes.
                await self.client.aclose()
            if not result.ok:
                raise DestinationError(
                    f"webhook check_url answered {result.error}: check `check_url` "
                    "in the destination file",
                    failure=FailureType.CONFIG,
                    status=result.status,
                )
            return
        parts = urlsplit(self.config.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.config.timeout_seconds
            )
        except (OSError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
            raise DestinationError(
                f"webhook at {host}:{port} does not accept connections ({reason}): check "
                "`url` in the destination file and that the receiver is running",
                failure=FailureType.TRANSIENT,
            ) from None
        writer.close()
        await writer.wait_closed()

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Nothing to prepare: a webhook has no schema."""

    async def write(self, batch: Batch) -> Sequence[RecordResult]:
        """Send ``batch`` (in calls of ``batch_size``, or one per record) and map the answers."""
        records = list(batch.records())
        keys = list(batch.keys)
        size = 1 if self.config.mode == "row" else self.config.batch_size
        starts = range(0, len(records), size)
        if len(starts) == 1:  # one call (the engine's batch is one webhook batch): no fan-out
            return await self._send(batch.operation, records, keys)

        async def send(start: int) -> list[RecordResult]:
            end = start + size
            part = await self._send(batch.operation, records[start:end], keys[start:end])
            return [
                RecordResult(r.index + start, r.status, r.error, r.call_id, r.record_id)
                for r in part
            ]

        parts = await run_bounded(self._gate, starts, send)
        return [r for part in parts for r in part]

    async def close(self) -> None:
        await self.client.aclose()

    async def _send(
        self, operation: Operation, records: list[dict[str, Any]], keys: list[str]
    ) -> BatchResults:
        """One call; its results as columns, by position within the call."""
        n = len(records)
        try:
            body = self._body(operation, records, keys)
        except LiquidError as exc:
            error = f"body_template failed: {self.redactor.text(first_line(exc))}"
            return BatchResults(n, dict.fromkeys(range(n), error))
        except NonFiniteError as exc:
            # Never a bare NaN on the wire; the engine's `non_finite` policy normally keeps
            # such values from getting here.
            error = f"not sent: {exc}; set `non_finite` on the sync to send such values"
            return BatchResults(n, dict.fromkeys(range(n), error))
        headers = {"Content-Type": self._content_type or "application/json"}
        if self.config.signing_secret:
            headers[SIGNATURE_HEADER] = signature(self.config.signing_secret, body)
            headers[TIMESTAMP_HEADER] = str(int(time.time()))
        result = await self.client.request(
            self.config.method, self.config.url, content=body, headers=headers
        )
        if not result.ok:
            error = result.error or f"{result.status} {result.reason}"
            return BatchResults(n, dict.fromkeys(range(n), error), call_id=result.call_id)
        failed = {
            i: self.redactor.text(reason) or NO_REASON
            for i, reason in record_errors(result.json, n).items()
        }
        return BatchResults(n, failed, call_id=result.call_id)

    def _body(self, operation: Operation, records: list[dict[str, Any]], keys: list[str]) -> bytes:
        op = operation.value
        if self.config.mode == "row":
            record, key = records[0], keys[0]
            if self._template is None:
                return dumps_json({**record, "_operation": op})
            variables = row_variables(record, op, key)
        else:
            if self._template is None:
                return dumps_json({"operation": op, "records": records})
            variables = {"records": records, "keys": keys, "operation": op}
        return str(self._template.render(**variables)).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the exact body bytes with ``secret``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def record_errors(body: Any, size: int) -> dict[int, str]:
    """Per-record failures reported in a 2xx JSON answer, by index within the call.

    Understands ``{"results": [{"index": i, "ok": false, "error": "..."}]}`` and
    ``{"errors": [{"index": i, "error": "..."}]}``; entries with an index outside the call
    are ignored.
    """
    if not isinstance(body, dict):
        return {}
    found: dict[int, str] = {}
    for name in ("results", "errors"):
        entries = body.get(name)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            index = entry.get("index")
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
                continue
            if name == "results" and entry.get("ok") is not False:
                continue
            text = entry.get("error") or entry.get("message") or "refused by the webhook"
            found[index] = " ".join(str(text).split())[:ERROR_LIMIT]
    return found


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook URL, or ``None`` when it can."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "has no host"
    return None
