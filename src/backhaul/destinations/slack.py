"""Slack destination: post records as messages through an incoming webhook or ``chat.postMessage``.

``mode: row`` posts one message per record; ``mode: digest`` posts one message per batch
that sums the batch up (``12 leads became PQLs`` and a list of the first few);
``mode: run_digest`` posts one message per run (``slack_digest``): the engine hands the
whole run over as one batch, so the rows are acknowledged only once that message is in. Text and
Block Kit blocks are Liquid templates. Slack has no record identity: every message is an
append, so removals and clears are not supported, and a resend posts again.

Slack answers in two shapes: a webhook returns plain text ``ok`` or an error string with a
4xx status; the Web API returns HTTP 200 with ``{"ok": false, "error": ...}``. Both map to
the same outcomes here: a message Slack refuses rejects its records with Slack's error; a
refusal that no message can get past (bad token, unknown channel or webhook) fails the run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import urlsplit

import pyarrow as pa
from liquid import BoundTemplate
from liquid.exceptions import LiquidError
from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

from backhaul.destinations.base import Batch
from backhaul.destinations.base import Capabilities
from backhaul.destinations.base import DestinationConfig
from backhaul.destinations.base import DestinationContext
from backhaul.destinations.base import Operation
from backhaul.destinations.base import RecordResult
from backhaul.destinations.base import RunFit
from backhaul.destinations.base import SyncProblem
from backhaul.destinations.base import SyncShape
from backhaul.destinations.http import HttpResult
from backhaul.destinations.http import RateLimit
from backhaul.destinations.http import RateLimiter
from backhaul.destinations.http import RetryPolicy
from backhaul.destinations.http.connector import Http2
from backhaul.destinations.http.connector import client_for
from backhaul.destinations.http.connector import redactor_for
from backhaul.destinations.http.connector import template_field_problems
from backhaul.destinations.http.templates import ROW_VARIABLES
from backhaul.destinations.http.templates import liquid_problem
from backhaul.destinations.http.templates import row_variables
from backhaul.destinations.http.templates import template_environment
from backhaul.destinations.slack_digest import DigestRow
from backhaul.destinations.slack_digest import SlackLimits
from backhaul.destinations.slack_digest import change_counts
from backhaul.destinations.slack_digest import default_title
from backhaul.destinations.slack_digest import lay_out
from backhaul.errors import DestinationError
from backhaul.errors import FailureType
from backhaul.errors import first_line

MAX_BLOCKS = 50  # Slack's limit of blocks in one message
DEFAULT_API = "https://slack.com/api"
# Errors no message can get past: the run stops and says what to fix.
CONFIG_ERRORS = {
    "not_authed": "set `token` to a bot token (xoxb-...)",
    "invalid_auth": "set `token` to a valid bot token (xoxb-...)",
    "account_inactive": "the token's user or app was deactivated; set a new `token`",
    "token_revoked": "the token was revoked; set a new `token`",
    "token_expired": "the token expired; set a new `token`",
    "missing_scope": "give the Slack app the chat:write scope and reinstall it",
    "invalid_token": "the webhook was revoked; create a new one and set `webhook_url`",
    "no_service": "the webhook URL is unknown or was removed; set `webhook_url` to a live one",
    "no_service_id": "the webhook URL is incomplete; copy it again into `webhook_url`",
    "no_team": "the webhook's workspace is gone; set `webhook_url` to a live webhook",
    "team_disabled": "the workspace is disabled; use another workspace",
    "no_active_hooks": "the webhook is disabled; enable it or set another `webhook_url`",
    "action_prohibited": "an admin restricted posting; ask them or use another channel",
    "restricted_action": "an admin restricted posting; ask them or use another channel",
    "channel_not_found": "check `channel` and invite the app to it",
    "not_in_channel": "invite the app to the channel (/invite @app) or set another `channel`",
    "is_archived": "the channel is archived; unarchive it or set another `channel`",
    "channel_is_archived": "the channel is archived; unarchive it or use another webhook",
    "posting_to_general_channel_denied": "only admins may post to #general; pick another channel",
}
# Slack's own failures: worth another try later.
TRANSIENT_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "ratelimited", "rate_limited"}
)
WRITABLE = frozenset({Operation.UPSERT, Operation.INSERT, Operation.UPDATE})


class SlackConfig(DestinationConfig):
    """``destinations/NAME.yml`` with ``type: slack``."""

    type: Literal["slack"]
    webhook_url: str | None = Field(
        None, description="Incoming webhook URL (a secret: use ${env:NAME}). Or set `token`."
    )
    token: str | None = Field(
        None, description="Bot token (xoxb-...) with chat:write, for chat.postMessage."
    )
    channel: str | None = Field(None, description="Channel id or #name to post to (with `token`).")
    base_url: str = Field(DEFAULT_API, description="Slack Web API base URL.")
    mode: Literal["row", "digest", "run_digest"] = Field(
        "run_digest",
        description="`row`: one message per record; `digest`: one message per batch; "
        "`run_digest`: one message per run (counts, the first rows, `…and K more`).",
    )
    text: str | None = Field(
        None,
        description="Liquid template of the message text. Row mode: the record's fields, "
        "`record`, `operation`, `key`; digest mode: `records` (the first "
        "`max_records_in_digest`, each with `_key`), `count`, `more`, `operation`.",
    )
    blocks: str | None = Field(
        None,
        description="Liquid template rendering a JSON list of Block Kit blocks (at most 50); "
        "the `json` filter writes a value as JSON.",
    )
    max_records_in_digest: int = Field(
        10, ge=0, le=500, description="Records listed in a digest message."
    )
    title: str | None = Field(
        None,
        description="run_digest: Liquid template of the first line; `count`, `added`, "
        "`changed`, `retried`, `removed`, `sync`, `operation`.",
    )
    run_digest_max_rows: int = Field(
        100_000,
        ge=1,
        le=1_000_000,
        description="run_digest: most rows one message covers; a bigger run posts one "
        "digest per this many rows.",
    )
    limits: SlackLimits = Field(
        default_factory=SlackLimits,
        description="Message limits a run digest is laid out within (text, blocks, section).",
    )
    rate_limit: RateLimit = Field(
        default_factory=lambda: RateLimit(requests=1, per_seconds=1.0),
        description="Messages per channel; Slack allows about one a second.",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_seconds: float = Field(30.0, gt=0)
    http2: Http2 = True
    unfurl_links: bool = Field(False, description="Let Slack expand links into previews.")

    @field_validator("webhook_url")
    @classmethod
    def _webhook_shape(cls, value: str | None) -> str | None:
        return checked_webhook_url(value)

    @field_validator("text", "blocks")
    @classmethod
    def _template_compiles(cls, value: str | None) -> str | None:
        problem = liquid_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackConfig:
        check_one_way_in(self.webhook_url, self.token, self.channel)
        if self.webhook_url is not None and self.channel:
            raise ValueError("a webhook posts to its own channel: remove `channel`")
        return self


CAPABILITIES = Capabilities(
    json_records=True,
    operations=WRITABLE,
    max_batch_size=1000,
    default_batch_size=50,
    default_concurrency=1,  # one channel, one message at a time: order kept, rate respected
    needs_match_fields=False,
)


class SlackDestination:
    """Posts each batch as messages; see :class:`SlackConfig`."""

    config_model: ClassVar[type[DestinationConfig]] = SlackConfig
    capabilities: ClassVar[Capabilities] = CAPABILITIES

    @staticmethod
    def check_sync(config: SlackConfig, shape: SyncShape) -> list[SyncProblem]:
        """The text and blocks templates read only what each message provides."""
        problems: list[SyncProblem] = []
        row = config.mode in ("row", "run_digest")  # a run digest renders rows as row mode does
        provided = ROW_VARIABLES if row else ("records", "count", "more", "operation")
        for key, source in (("text", config.text), ("blocks", config.blocks)):
            problems += template_field_problems(
                "slack", key, source, provided, shape.fields if row else ()
            )
        if config.mode == "run_digest":
            title_vars = ("count", "added", "changed", "retried", "removed", "sync", "operation")
            problems += template_field_problems("slack", "title", config.title, title_vars, ())
        return problems

    @classmethod
    def fit_run(cls, config: SlackConfig) -> RunFit:
        """A run digest takes the whole run (up to ``run_digest_max_rows``) as one batch."""
        return RunFit(whole_run=config.run_digest_max_rows if config.mode == "run_digest" else None)

    def __init__(self, config: SlackConfig, context: DestinationContext) -> None:
        self.config = config
        self.redactor = redactor_for(context, config.token)
        headers: dict[str, str] = {}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        if config.webhook_url:
            # The whole URL is the secret; its last segment alone is enough to post.
            self.redactor.add(config.webhook_url)
            path = urlsplit(config.webhook_url).path
            self.redactor.add(path)
            self.redactor.add(path.rstrip("/").rpartition("/")[2])
        env = template_environment()
        self._text = env.from_string(config.text) if config.text else None
        self._blocks = env.from_string(config.blocks) if config.blocks else None
        self._title = env.from_string(config.title) if config.title else None
        self._sync = context.sync_name
        limit = config.rate_limit
        # Slack counts messages as they arrive, and the time between taking a token and
        # arriving varies (the first call of a run also opens the connection). So the pace
        # is kept by pausing the limiter for one interval after each answer: two posts can
        # then never arrive closer than the interval, and a Retry-After pauses it the same way.
        self._interval = limit.per_seconds / limit.requests
        self._turn = asyncio.Lock()  # one post at a time keeps the channel's order and pace
        self.client = client_for(
            "slack",
            config,
            context,
            self.redactor,
            concurrency=1,
            headers=headers,
            limiter=RateLimiter(None),
        )

    async def check(self) -> None:
        """Webhook: check the URL's shape only (a test post would show up in the channel).

        Web API: call ``auth.test``; a refused token is a configuration error.
        """
        if self.config.webhook_url is not None:
            problem = webhook_url_problem(self.config.webhook_url)
            if problem:
                raise DestinationError(
                    f"slack `webhook_url` {problem}: copy the webhook URL from Slack into the "
                    "destination file",
                    failure=FailureType.CONFIG,
                )
            return
        try:
            result = await self.client.request("POST", self._api("auth.test"), json={})
        finally:
            await self.client.aclose()  # a check may run in another event loop than writes
        error = _api_error(result)
        if error is not None:
            raise self._config_error(error[0], result.status)

    async def prepare(
        self, fields: Mapping[str, pa.DataType], match_fields: Sequence[str], object: str | None
    ) -> None:
        """Nothing to prepare: a channel has no schema."""

    async def write(self, batch: Batch) -> list[RecordResult]:
        """Post ``batch`` as one digest message or one message per record, in order."""
        if batch.operation not in WRITABLE:
            raise DestinationError(
                f"slack cannot {batch.operation.value} messages: set `on_remove: nothing` in "
                "the sync (and use mode upsert, insert or update, not mirror)",
                failure=FailureType.CONFIG,
            )
        if self.config.mode == "run_digest":
            return await self._write_run_digest(batch)
        records = list(batch.records())
        flat = list(batch.flat_records())
        keys = [str(k) for k in batch.keys]
        if self.config.mode == "digest":
            return await self._write_digest(batch.operation, records, flat, keys)
        results: list[RecordResult] = []
        posted = 0
        for i, record in enumerate(records):
            try:
                message = self._row_message(batch.operation, record, flat[i], keys[i])
            except _Unsendable as bad:
                results.append(RecordResult.rejected(i, bad.reason))
                continue
            try:
                error, call_id = await self._post(message)
            except DestinationError as exc:
                if exc.failure is not FailureType.TRANSIENT or posted == 0:
                    raise  # nothing posted yet: the whole batch may be sent again
                # Posting again would duplicate what is already in the channel: keep the
                # rest pending for the next run instead.
                reason = f"not sent ({exc.message}); it is sent again on the next run"
                results.extend(RecordResult.rejected(j, reason) for j in range(i, len(records)))
                break
            if error is None:
                posted += 1
                results.append(RecordResult.ok(i, call_id))
            else:
                results.append(RecordResult.rejected(i, error, call_id))
        return results

    async def close(self) -> None:
        await self.client.aclose()

    # -- messages ---------------------------------------------------------------------------

    def _row_message(
        self, operation: Operation, record: dict[str, Any], flat: dict[str, Any], key: str
    ) -> dict[str, Any]:
        variables = row_variables(record, operation.value, key)
        text = (
            self._render(self._text, variables, "text")
            if self._text
            else f"{operation.value} {key}: {describe(flat)}"
        )
        return self._message(text, variables)

    async def _write_digest(
        self,
        operation: Operation,
        records: list[dict[str, Any]],
        flat: list[dict[str, Any]],
        keys: list[str],
    ) -> list[RecordResult]:
        shown = self.config.max_records_in_digest
        listed = [{**r, "_key": k} for r, k in zip(records[:shown], keys, strict=False)]
        count, more = len(records), max(0, len(records) - shown)
        variables = {
            "records": listed,
            "count": count,
            "more": more,
            "operation": operation.value,
        }
        try:
            if self._text:
                text = self._render(self._text, variables, "text")
            else:
                lines = [f"{count} record{'s' if count != 1 else ''} ({operation.value})"]
                lines += [f"• {k}: {describe(f)}" for f, k in zip(flat[:shown], keys, strict=False)]
                if more:
                    lines.append(f"…and {more} more")
                text = "\n".join(lines)
            message = self._message(text, variables)
        except _Unsendable as bad:
            return [RecordResult.rejected(i, bad.reason) for i in range(count)]
        error, call_id = await self._post(message)
        if error is None:
            return [RecordResult.ok(i, call_id) for i in range(count)]
        return [RecordResult.rejected(i, error, call_id) for i in range(count)]

    async def _write_run_digest(self, batch: Batch) -> list[RecordResult]:
        """One message for every row of ``batch`` (the run): all rows are acknowledged
        when Slack takes it, none when it does not."""
        total = len(batch)
        counts = change_counts(batch.changes, total)
        operation = batch.operation.value
        try:
            title = (
                self._render(
                    self._title, {**counts, "sync": self._sync, "operation": operation}, "title"
                )
                if self._title
                else default_title(self._sync, counts, operation)
            )
        except _Unsendable as bad:
            return [RecordResult.rejected(i, bad.reason) for i in range(total)]
        # Only the rows that may be listed become Python objects; a row whose templates
        # fail is refused alone (and sent again next run) and the next one is listed.
        wanted = self.config.max_records_in_digest
        refused: dict[int, str] = {}
        rows: list[DigestRow] = []
        # Listed in key order, so the same run always reads the same (the outbox's order
        # is whatever the planner's query produced).
        order = sorted(range(total), key=lambda i: _key_order(batch.keys[i]))
        start = 0
        while len(rows) < wanted and start < total:
            chunk = order[start : start + wanted]
            keys = [batch.keys[i] for i in chunk]
            part = replace(batch, table=batch.table.take(pa.array(chunk)), keys=keys)
            pairs = zip(part.records(), part.flat_records(), strict=True)
            for j, (record, flat) in enumerate(pairs):
                if len(rows) >= wanted:
                    break
                try:
                    rows.append(self._digest_row(batch.operation, record, flat, str(keys[j])))
                except _Unsendable as bad:
                    refused[chunk[j]] = bad.reason
            start += wanted
        if len(refused) == total:  # nothing left to sum up
            return [RecordResult.rejected(i, refused[i]) for i in range(total)]
        digest = lay_out(title, rows, total - len(refused), self.config.limits)
        message = self._message(digest.text, {}, blocks=digest.blocks)
        error, call_id = await self._post(message)
        results: list[RecordResult] = []
        for i in range(total):
            if i in refused:
                results.append(RecordResult.rejected(i, refused[i]))
            elif error is None:
                results.append(RecordResult.ok(i, call_id))
            else:
                results.append(RecordResult.rejected(i, error, call_id))
        return results

    def _digest_row(
        self, operation: Operation, record: dict[str, Any], flat: dict[str, Any], key: str
    ) -> DigestRow:
        variables = row_variables(record, operation.value, key)
        text = (
            self._render(self._text, variables, "text")
            if self._text
            else f"{key}: {describe(flat)}"
        )
        blocks = None
        if self._blocks:
            blocks = parse_blocks(self._render(self._blocks, variables, "blocks"))
        return DigestRow(text, blocks)

    def _message(
        self, text: str, variables: dict[str, Any], *, blocks: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"text": text}
        if blocks is not None:
            message["blocks"] = blocks
        elif self._blocks:
            message["blocks"] = parse_blocks(self._render(self._blocks, variables, "blocks"))
        if self.config.token:
            message["channel"] = self.config.channel
            message["unfurl_links"] = self.config.unfurl_links
        elif self.config.unfurl_links:
            message["unfurl_links"] = True
        return message

    def _render(self, template: BoundTemplate, variables: dict[str, Any], name: str) -> str:
        try:
            return str(template.render(**variables))
        except LiquidError as exc:
            raise _Unsendable(
                f"`{name}` template failed: {self.redactor.text(first_line(exc))}"
            ) from None

    # -- calls ------------------------------------------------------------------------------

    async def _post(self, message: dict[str, Any]) -> tuple[str | None, str | None]:
        """Post one message: ``(None, call_id)`` when Slack took it, else ``(error, call_id)``.

        Raises:
            DestinationError: Slack refuses every message (config), or keeps failing
                (transient).
        """
        async with self._turn:
            try:
                return await self._send(message)
            finally:
                self.client.limiter.penalize(self._interval)

    async def _send(self, message: dict[str, Any]) -> tuple[str | None, str | None]:
        if self.config.webhook_url is not None:
            try:
                result = await self.client.request("POST", self.config.webhook_url, json=message)
            except DestinationError as exc:
                # 403/404 from a webhook carry Slack's reason; say what it means.
                code = _code(exc.detail)
                if exc.failure is FailureType.CONFIG and code in CONFIG_ERRORS:
                    raise self._config_error(code, exc.status) from None
                raise
            if result.ok:
                return None, result.call_id
            body = result.json
            if isinstance(body, dict) and body.get("error"):
                code = str(body["error"])  # a proxy or gateway answering in JSON
            else:
                code = " ".join(result.text.split())[:200] or str(result.status)
            detail: str | None = None
        else:
            result = await self.client.request("POST", self._api("chat.postMessage"), json=message)
            found = _api_error(result)
            if found is None:
                return None, result.call_id
            code, detail = found
        if code in CONFIG_ERRORS:
            raise self._config_error(code, result.status)
        if code in TRANSIENT_ERRORS:
            raise DestinationError(
                f"slack answered {code}: Slack is failing; retry later",
                failure=FailureType.TRANSIENT,
                status=result.status,
            )
        text = f"{code}: {detail}" if detail else code
        return self.redactor.text(text) or code, result.call_id

    def _api(self, method: str) -> str:
        return f"{self.config.base_url.rstrip('/')}/{method}"

    def _config_error(self, code: str, status: int | None) -> DestinationError:
        where = "webhook" if self.config.webhook_url is not None else "token"
        what = CONFIG_ERRORS.get(code, f"check `{where}` in the destination file")
        return DestinationError(
            f"slack refused the {where} ({code}): {what}",
            failure=FailureType.CONFIG,
            status=status,
        )


class _Unsendable(Exception):
    """A record whose message cannot be built (template error, bad blocks)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_blocks(rendered: str) -> list[dict[str, Any]]:
    """The blocks a ``blocks`` template rendered, checked the way Slack checks them.

    Raises:
        _Unsendable: Not JSON, not a list of objects with a ``type``, or more than 50.
    """
    try:
        value = json.loads(rendered)
    except ValueError as exc:
        raise _Unsendable(f"`blocks` template did not render JSON ({exc})") from None
    if isinstance(value, dict) and isinstance(value.get("blocks"), list):
        value = value["blocks"]
    if not isinstance(value, list):
        raise _Unsendable("invalid_blocks: the `blocks` template must render a JSON list")
    if len(value) > MAX_BLOCKS:
        raise _Unsendable(
            f"invalid_blocks: {len(value)} blocks; Slack takes at most {MAX_BLOCKS} per message"
        )
    for i, block in enumerate(value):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _Unsendable(f"invalid_blocks: block {i} is not an object with a `type`")
    return value


def describe(record: Mapping[str, Any]) -> str:
    """``field: value, ...`` for a flat record, as default message text."""
    return ", ".join(f"{name}: {'' if value is None else value}" for name, value in record.items())


def checked_webhook_url(value: str | None) -> str | None:
    """``value`` when it can be an incoming webhook URL; a ``ValueError`` saying why not.

    A reference (``${env:...}``) passes: it is resolved after validation, and ``check()``
    looks again.
    """
    if value is not None and "${" not in value:
        problem = webhook_url_problem(value)
        if problem:
            raise ValueError(f"webhook_url {problem}")
    return value


def check_one_way_in(webhook_url: str | None, token: str | None, channel: str | None) -> None:
    """Refuse (``ValueError``) a Slack file that sets both ways in, or neither, or a token
    without a channel."""
    if (webhook_url is None) == (token is None):
        raise ValueError("set either `webhook_url` or `token` (with `channel`), not both")
    if token is not None and not channel:
        raise ValueError("`channel` is required with `token`")


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an incoming webhook URL, or ``None`` when it can."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must start with https://"
    if not parts.hostname:
        return "has no host"
    if parts.path.strip("/") == "":
        return "has no path (a webhook URL looks like https://hooks.slack.com/services/T…/B…/…)"
    return None


def _api_error(result: HttpResult) -> tuple[str, str | None] | None:
    """Slack's ``error`` (and its detail messages) from a Web API answer; ``None`` when ok."""
    body = result.json
    if isinstance(body, dict) and body.get("ok") is True:
        return None
    if not isinstance(body, dict):
        return (result.error or f"{result.status} {result.reason}", None)
    code = str(body.get("error") or "unknown_error")
    meta = body.get("response_metadata")
    notes = meta.get("messages") if isinstance(meta, dict) else None
    detail = "; ".join(str(n) for n in notes[:5]) if isinstance(notes, list) and notes else None
    return code, detail


def _code(detail: str | None) -> str:
    """Slack's error code from the toolkit's ``"404 Not Found: no_service"`` detail."""
    return (detail or "").rpartition(": ")[2].strip()


def _key_order(key: str) -> tuple[int, int, str]:
    """Whole-number keys in numeric order (2 before 10), then the others as text."""
    text = str(key)
    if text.lstrip("-").isdigit():
        return (0, int(text), "")
    return (1, 0, text)
