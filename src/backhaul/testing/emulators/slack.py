"""A Slack emulator: incoming webhooks, ``chat.postMessage`` and ``auth.test``.

Slack's two ways of posting answer differently, and the emulator keeps both quirks:

* an incoming webhook (``POST /services/T…/B…/secret``; the URL path is the secret) answers
  ``200`` with the plain-text body ``ok``, or a plain-text error string with a status
  (``400 invalid_payload``, ``404 no_service``, ``410 channel_is_archived``);
* the Web API (``POST /api/<method>`` with ``Authorization: Bearer xoxb-…``) always answers
  ``200`` with JSON ``{"ok": true|false, "error": …}``, except a rate limit, which is
  ``429`` with ``Retry-After``.

Messages are kept per channel. Each channel has its own rolling rate window (about one
message a second by default), and every refusal of the window is remembered in
``throttled`` so tests can check that a client waited as told.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import PlainTextResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import SlidingWindow

DEFAULT_TOKEN = "xoxb-emulator-0000-backhaul"
DEFAULT_CHANNELS = {"C0000GENERAL": "general", "C00000ALERTS": "alerts"}
# A webhook installed from the start (posting to the first channel), for the sandbox.
DEFAULT_WEBHOOK = "T0EMULATOR/B0EMULATOR/sandbox-webhook-0000"
# Plain-text webhook errors and their statuses, as Slack answers them.
WEBHOOK_STATUS = {
    "invalid_payload": 400,
    "no_text": 400,
    "too_many_attachments": 400,
    "posting_to_general_channel_denied": 400,
    "invalid_blocks": 400,
    "msg_too_long": 400,
    "action_prohibited": 403,
    "invalid_token": 403,
    "channel_not_found": 404,
    "no_service": 404,
    "channel_is_archived": 410,
}
# Block types Slack accepts at the top level of a message.
BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "rich_text",
        "section",
        "video",
        "markdown",
    }
)


@dataclass(frozen=True)
class Message:
    """One posted message."""

    channel: str
    text: str | None
    blocks: list[Any] | None
    ts: str
    thread_ts: str | None
    via: str  # "webhook" or "api"
    at: float  # server receipt time (time.time())


@dataclass(frozen=True)
class Throttle:
    """One request refused by a channel's rate window."""

    channel: str
    at: float
    retry_after: int


class Refusal(Exception):
    """A message Slack would not post: ``error`` is Slack's code."""

    def __init__(self, error: str, messages: list[str] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.messages = messages or []


class SlackEmulator(Emulator):
    """Slack's message-posting APIs in memory.

    Args:
        token: The bot token ``chat.postMessage`` and ``auth.test`` accept.
        channels: Channel id → name. Messages may name either (``#name`` too).
        messages_per_second: Per-channel rate; faster posts get ``429`` + ``Retry-After``.
        burst: Messages a channel takes at once before the rate applies.
        max_blocks: Most blocks in one message (Slack: 50).
        max_text_length: Longest top-level ``text`` (Slack: about 40,000 characters).
        max_section_text: Longest text of a section block (Slack: 3,000).
        max_header_text: Longest text of a header block (Slack: 150).
        max_attachments: Most legacy attachments in one message (Slack: 100).
        reject_field: The message field ``faults.rejects`` is keyed by (default ``text``).
        seed: Seed of the fault switches.
    """

    vendor = "slack"

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        channels: Mapping[str, str] | None = None,
        messages_per_second: float = 1.0,
        burst: int = 1,
        max_blocks: int = 50,
        max_text_length: int = 40_000,
        max_section_text: int = 3000,
        max_header_text: int = 150,
        max_attachments: int = 100,
        reject_field: str = "text",
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        if messages_per_second <= 0 or burst < 1:
            raise ValueError("messages_per_second must be positive and burst at least 1")
        self.token = token
        self.channels = dict(channels if channels is not None else DEFAULT_CHANNELS)
        self.archived: set[str] = set()
        self.messages_per_second = messages_per_second
        self.burst = burst
        self.max_blocks = max_blocks
        self.max_text_length = max_text_length
        self.max_section_text = max_section_text
        self.max_header_text = max_header_text
        self.max_attachments = max_attachments
        self.reject_field = reject_field
        # Secret path after /services/ → channel id.
        self.webhooks: dict[str, str] = {DEFAULT_WEBHOOK: next(iter(self.channels), "")}
        self.messages: dict[str, list[Message]] = {}
        self.throttled: list[Throttle] = []
        self._windows: dict[str, SlidingWindow] = {}
        self._last_ts = 0.0
        self._post_lock = threading.Lock()

    # -- set-up helpers -------------------------------------------------------------------

    def create_webhook(self, channel: str) -> str:
        """Install an incoming webhook posting to ``channel``; return its secret path.

        The full URL is ``<server url>/services/<path>``.
        """
        channel_id = self.channel_id(channel)
        if channel_id is None:
            raise ValueError(f"unknown channel {channel!r}")
        path = f"T0EMULATOR/B{secrets.token_hex(4).upper()}/{secrets.token_urlsafe(18)}"
        with self.lock:
            self.webhooks[path] = channel_id
        return path

    def webhook_url(self, channel: str) -> str:
        """A new webhook's full URL on the running server."""
        if self.server is None:
            raise RuntimeError("serve the emulator first (EmulatorServer)")
        return f"{self.server.url}/services/{self.create_webhook(channel)}"

    def archive(self, channel: str) -> None:
        """Archive ``channel``: posts to it are refused from now on."""
        channel_id = self.channel_id(channel)
        if channel_id is None:
            raise ValueError(f"unknown channel {channel!r}")
        self.archived.add(channel_id)

    def channel_id(self, channel: str) -> str | None:
        """The id of a channel given by id, name or ``#name``; ``None`` if unknown."""
        if channel in self.channels:
            return channel
        name = channel.removeprefix("#")
        return next((cid for cid, cname in self.channels.items() if cname == name), None)

    def posted(self, channel: str) -> list[Message]:
        """Messages posted to ``channel`` (id or name), oldest first."""
        channel_id = self.channel_id(channel) or channel
        with self.lock:
            return list(self.messages.get(channel_id, []))

    # -- Emulator hooks ---------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route("/api/chat.postMessage", self._post_message, methods=["POST"]),
            Route("/api/auth.test", self._auth_test, methods=["POST", "GET"]),
            Route("/services/{path:path}", self._webhook, methods=["POST"]),
        ]

    def vendor_error(self, status: int, message: str) -> Response:
        code = "service_unavailable" if status in (502, 503, 504) else "internal_error"
        return JSONResponse({"ok": False, "error": code, "detail": message}, status_code=status)

    def vendor_rate_limited(self, retry_after: float) -> Response:
        return JSONResponse(
            {"ok": False, "error": "ratelimited"},
            status_code=429,
            headers={"Retry-After": str(max(1, round(retry_after)))},
        )

    def vendor_state(self) -> dict[str, Any]:
        return {
            "channels": {
                cid: {
                    "name": name,
                    "archived": cid in self.archived,
                    "messages": [asdict(m) for m in self.messages.get(cid, [])],
                }
                for cid, name in self.channels.items()
            },
            "throttled": [asdict(t) for t in self.throttled],
        }

    def vendor_reset(self) -> None:
        self.messages.clear()
        self.throttled.clear()
        self._windows.clear()
        self.archived.clear()

    def credentials(self) -> dict[str, str]:
        return {"SLACK_BOT_TOKEN": self.token}

    def destination_config(self, base_url: str) -> dict[str, Any]:
        return {
            "type": "slack",
            "token": "${env:SLACK_BOT_TOKEN}",
            "channel": f"#{next(iter(self.channels.values()), 'general')}",
            "base_url": f"{base_url.rstrip('/')}/api",
            "mode": "run_digest",  # one message per run: what a new sync should start with
        }

    # -- Web API ------------------------------------------------------------------------------

    async def before_request(self, request: Request) -> Response | None:
        """Web API calls need the bot token (a webhook's secret is its path)."""
        if not request.url.path.startswith("/api/"):
            return None
        problem = self._auth_problem(request, await _arguments(request))
        return None if problem is None else JSONResponse({"ok": False, "error": problem})

    async def _auth_test(self, request: Request) -> Response:
        return JSONResponse(
            {
                "ok": True,
                "url": "https://emulator.slack.com/",
                "team": "Backhaul Emulator",
                "user": "backhaul",
                "team_id": "T0EMULATOR",
                "user_id": "U0BACKHAUL",
                "bot_id": "B0BACKHAUL",
            }
        )

    async def _post_message(self, request: Request) -> Response:
        args = await _arguments(request)
        if args.get("_invalid"):
            return JSONResponse({"ok": False, "error": "invalid_json"})
        channel = args.get("channel")
        channel_id = self.channel_id(channel) if isinstance(channel, str) else None
        if channel_id is None:
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        wait = self._throttle(channel_id)
        if wait is not None:
            return self.vendor_rate_limited(wait)
        try:
            message = self._post(channel_id, args, via="api")
        except Refusal as refused:
            body: dict[str, Any] = {"ok": False, "error": refused.error}
            if refused.messages:
                body["response_metadata"] = {"messages": refused.messages}
            return JSONResponse(body)
        return JSONResponse(
            {
                "ok": True,
                "channel": channel_id,
                "ts": message.ts,
                "message": {
                    "type": "message",
                    "text": message.text or "",
                    "blocks": message.blocks or [],
                    "ts": message.ts,
                    "bot_id": "B0BACKHAUL",
                },
            }
        )

    def _auth_problem(self, request: Request, args: Mapping[str, Any]) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            token = str(args.get("token") or "")  # Slack also takes the token as an argument
        elif scheme.lower() != "bearer":
            return "invalid_auth"
        if not token:
            return "not_authed"
        return None if secrets.compare_digest(token, self.token) else "invalid_auth"

    # -- incoming webhook -----------------------------------------------------------------

    async def _webhook(self, request: Request) -> Response:
        path = request.path_params["path"]
        with self.lock:
            channel_id = self.webhooks.get(path)
        if channel_id is None:
            return _webhook_error("no_service")
        try:
            args = json.loads(await request.body())
        except ValueError:
            return _webhook_error("invalid_payload")
        if not isinstance(args, dict):
            return _webhook_error("invalid_payload")
        # A webhook posts to its own channel; a `channel` in the body is ignored.
        args.pop("channel", None)
        wait = self._throttle(channel_id)
        if wait is not None:
            return PlainTextResponse(
                "rate_limited", status_code=429, headers={"Retry-After": str(wait)}
            )
        try:
            self._post(channel_id, args, via="webhook")
        except Refusal as refused:
            return _webhook_error(refused.error)
        return PlainTextResponse("ok")

    # -- shared posting rules -----------------------------------------------------------

    def _throttle(self, channel_id: str) -> int | None:
        """Count a post to ``channel_id``; the whole seconds to wait when over the rate."""
        with self.lock:
            window = self._windows.get(channel_id)
            if window is None:
                window = SlidingWindow(self.burst, self.burst / self.messages_per_second)
                self._windows[channel_id] = window
            allowed, _, wait = window.hit()
            if allowed:
                return None
            # Slack sends whole seconds; round up so waiting as told always clears the window.
            retry_after = max(1, int(-(-wait // 1)))
            self.throttled.append(Throttle(channel_id, time.time(), retry_after))
            return retry_after

    def _post(self, channel_id: str, args: Mapping[str, Any], *, via: str) -> Message:
        text = args.get("text")
        blocks = args.get("blocks")
        if isinstance(blocks, str):  # form-encoded posts carry blocks as a JSON string
            try:
                blocks = json.loads(blocks)
            except ValueError:
                raise Refusal("invalid_blocks", ["[ERROR] blocks is not valid JSON"]) from None
        if text is not None and not isinstance(text, str):
            raise Refusal("invalid_arguments" if via == "api" else "invalid_payload")
        if not text and not blocks:
            raise Refusal("no_text")
        if text and len(text) > self.max_text_length:
            raise Refusal("msg_too_long")
        if blocks is not None:
            problems = self._block_problems(blocks)
            if problems:
                raise Refusal("invalid_blocks", problems)
        attachments = args.get("attachments")
        if isinstance(attachments, list) and len(attachments) > self.max_attachments:
            raise Refusal("too_many_attachments")
        if channel_id in self.archived:
            raise Refusal("is_archived" if via == "api" else "channel_is_archived")
        reject_value = args.get(self.reject_field)
        error = self.faults.rejects.get(str(reject_value)) if reject_value is not None else None
        if error is not None:
            raise Refusal(error)
        thread_ts = args.get("thread_ts")
        with self._post_lock:
            now = time.time()
            # ts is unique per workspace and grows, as Slack's message ids do.
            stamp = max(now, self._last_ts + 0.000001)
            self._last_ts = stamp
        message = Message(
            channel=channel_id,
            text=text if isinstance(text, str) else None,
            blocks=blocks if isinstance(blocks, list) else None,
            ts=f"{stamp:.6f}",
            thread_ts=str(thread_ts) if thread_ts is not None else None,
            via=via,
            at=now,
        )
        with self.lock:
            self.messages.setdefault(channel_id, []).append(message)
        return message

    def _block_problems(self, blocks: Any) -> list[str]:
        """Slack's ``response_metadata.messages`` for a bad ``blocks`` value (empty if fine)."""
        if not isinstance(blocks, list):
            return ["[ERROR] must be an array [json-pointer:/blocks]"]
        problems: list[str] = []
        if len(blocks) > self.max_blocks:
            problems.append(
                f"[ERROR] no more than {self.max_blocks} items allowed [json-pointer:/blocks]"
            )
        for i, block in enumerate(blocks):
            where = f"[json-pointer:/blocks/{i}"
            if not isinstance(block, dict):
                problems.append(f"[ERROR] must be an object {where}]")
                continue
            kind = block.get("type")
            if not isinstance(kind, str):
                problems.append(f"[ERROR] missing required field: type {where}]")
            elif kind not in BLOCK_TYPES:
                problems.append(f"[ERROR] unsupported type: {kind} {where}/type]")
            limit = {"section": self.max_section_text, "header": self.max_header_text}.get(
                str(kind)
            )
            body = block.get("text")
            if limit is not None and isinstance(body, dict):
                value = body.get("text")
                if isinstance(value, str) and len(value) > limit:
                    problems.append(
                        f"[ERROR] must be less than {limit + 1} characters {where}/text/text]"
                    )
        return problems


async def _arguments(request: Request) -> dict[str, Any]:
    """A Web API call's arguments: a JSON body, a form body or the query string."""
    raw = await request.body()
    args: dict[str, Any] = dict(request.query_params)
    if not raw:
        return args
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {**args, "_invalid": True}
        if isinstance(parsed, dict):
            args.update(parsed)
        return args
    args.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return args


def _webhook_error(error: str) -> Response:
    return PlainTextResponse(error, status_code=WEBHOOK_STATUS.get(error, 400))
