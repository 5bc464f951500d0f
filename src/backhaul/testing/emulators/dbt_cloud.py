"""A dbt Cloud administrative API (v2) emulator: run artifacts, and the job webhooks.

What it keeps, as dbt Cloud does:

* ``GET /api/v2/accounts/{account}/runs/{run}/artifacts/{path}`` answers the artifact of the
  run's last step (``?step=N`` picks a step, from 1); an unknown run or artifact is 404
  with dbt Cloud's envelope ``{"status": {"code": 404, "is_success": false, ...}}``;
* authentication is ``Authorization: Token <token>`` or ``Bearer <token>``; a wrong or
  missing token is 401;
* :meth:`DbtCloudEmulator.webhook` builds a ``job.run.completed`` delivery as dbt Cloud
  sends it: the JSON body and an ``Authorization`` header holding the hex HMAC-SHA256 of
  that body keyed with the webhook's secret.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.dbt.cloud import COMPLETED
from backhaul.dbt.cloud import signature
from backhaul.testing.emulators.base import Emulator

DEFAULT_TOKEN = "dbtc_emulator_token"
SUCCESS = 10  # dbt Cloud's run status code for a successful run


class DbtCloudEmulator(Emulator):
    """dbt Cloud's run artifacts in memory.

    Args:
        token: The API token requests must carry.
        seed: Seed of the fault switches.
    """

    vendor = "dbt_cloud"

    def __init__(self, *, token: str = DEFAULT_TOKEN, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.token = token
        # (account, run) -> one dict of artifacts (path -> parsed JSON) per step
        self.runs: dict[tuple[int, int], list[dict[str, Any]]] = {}

    def add_run(self, account_id: int, run_id: int, *steps: dict[str, Any]) -> None:
        """Record a finished run whose steps produced these artifacts (path -> JSON)."""
        with self.lock:
            self.runs[(account_id, run_id)] = [dict(s) for s in steps]

    def webhook(
        self,
        secret: str,
        *,
        account_id: int,
        job_id: int,
        run_id: int,
        run_status: str = "Success",
        event_type: str = COMPLETED,
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one webhook delivery, signed with ``secret``."""
        now = datetime.now(UTC).isoformat()
        body = json.dumps(
            {
                "accountId": account_id,
                "webhooksID": "wsu_emulator",
                "eventId": f"wev_{uuid.uuid4().hex[:24]}",
                "timestamp": now,
                "eventType": event_type,
                "webhookName": "backhaul",
                "data": {
                    "jobId": str(job_id),
                    "jobName": "Nightly build",
                    "runId": str(run_id),
                    "environmentId": "1",
                    "environmentName": "Production",
                    "dbtVersion": "1.11.0",
                    "projectName": "shop",
                    "projectId": "1",
                    "runStatus": run_status,
                    "runStatusCode": SUCCESS if run_status == "Success" else 20,
                    "runStatusMessage": "None",
                    "runReason": "Kicked off by the emulator",
                    "runStartedAt": now,
                    "runFinishedAt": now,
                },
            }
        ).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "Authorization": signature(secret, body),
            "X-Webhook-Payload-Version": "v1",
        }
        return body, headers

    # -- vendor hooks -----------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route(
                "/api/v2/accounts/{account:int}/runs/{run:int}/artifacts/{path:path}",
                self._artifact,
                methods=["GET"],
            )
        ]

    def vendor_error(self, status: int, message: str) -> Response:
        return JSONResponse(
            {
                "status": {
                    "code": status,
                    "is_success": False,
                    "user_message": message,
                    "developer_message": "",
                },
                "data": None,
            },
            status_code=status,
        )

    async def before_request(self, request: Request) -> Response | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or token != self.token:
            return self.vendor_error(401, "Invalid token.")
        return None

    def vendor_state(self) -> dict[str, Any]:
        return {f"{a}/{r}": [sorted(s) for s in steps] for (a, r), steps in self.runs.items()}

    def vendor_reset(self) -> None:
        self.runs.clear()

    async def _artifact(self, request: Request) -> Response:
        account = int(request.path_params["account"])
        run = int(request.path_params["run"])
        path = str(request.path_params["path"])
        with self.lock:
            steps = self.runs.get((account, run))
        if not steps:
            return self.vendor_error(404, f"Run {run} was not found.")
        step_text = request.query_params.get("step")
        try:
            step = steps[int(step_text) - 1] if step_text else steps[-1]
        except (ValueError, IndexError):
            return self.vendor_error(404, f"Run {run} has no step {step_text}.")
        if path not in step:
            return self.vendor_error(404, f"Artifact {path} was not found for run {run}.")
        return JSONResponse(step[path])


__all__ = ["DEFAULT_TOKEN", "DbtCloudEmulator"]
