"""dbt Cloud job webhooks: check an event's signature, read it, fetch what the run built.

dbt Cloud signs each webhook delivery: the ``Authorization`` header holds the hex
HMAC-SHA256 of the raw request body, keyed with the webhook's secret. A
``job.run.completed`` event names the account, job and run but not the models the run
built, so Backhaul fetches the run's ``run_results.json`` artifact from the dbt Cloud API
(``GET /api/v2/accounts/{account}/runs/{run}/artifacts/run_results.json``; the artifacts of
the run's last step) and chooses syncs with the same rule as ``backhaul run --after-dbt``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from backhaul.dbt.run_results import RunResults
from backhaul.dbt.run_results import parse_run_results
from backhaul.errors import BackhaulError
from backhaul.errors import BadEvent
from backhaul.errors import CloudApiError

COMPLETED = "job.run.completed"
TIMEOUT_S = 8.0  # dbt Cloud gives a webhook 10 s to answer


def signature(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` keyed with ``secret``, as dbt Cloud sends it."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` (the ``Authorization`` value) signs ``body`` with ``secret``."""
    if not header:
        return False
    return hmac.compare_digest(signature(secret, body), header.strip().lower())


@dataclass(frozen=True)
class JobRunEvent:
    """The fields of a dbt Cloud job webhook that Backhaul uses."""

    event_id: str
    event_type: str
    account_id: int
    job_id: int
    run_id: int
    run_status: str

    @property
    def completed(self) -> bool:
        return self.event_type == COMPLETED


def parse_event(body: bytes) -> JobRunEvent:
    """Read a webhook body.

    Raises:
        BadEvent: Not JSON, or a field Backhaul needs is missing or not a number.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadEvent(f"the event body is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        raise BadEvent("the event has no `data` object; is this a dbt Cloud job webhook?")
    run = data["data"]
    try:
        return JobRunEvent(
            event_id=str(data.get("eventId") or ""),
            event_type=str(data.get("eventType") or ""),
            account_id=int(data["accountId"]),
            job_id=int(run["jobId"]),
            run_id=int(run["runId"]),
            run_status=str(run.get("runStatus") or ""),
        )
    except KeyError as exc:
        raise BadEvent(f"the event lacks `{exc.args[0]}`") from None
    except (TypeError, ValueError) as exc:
        raise BadEvent(f"the event has a non-numeric id: {exc}") from None


class DbtCloudClient:
    """Reads run artifacts from the dbt Cloud administrative API (v2).

    Args:
        base_url: The account's access URL, e.g. ``https://cloud.getdbt.com``.
        token: An API token allowed to read the account's runs.
        client: An httpx client to use (default: a new one per call).
    """

    def __init__(self, base_url: str, token: str, *, client: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.client = client

    def artifact(self, account_id: int, run_id: int, path: str) -> Any:
        """The parsed JSON of one artifact of the run's last step.

        Raises:
            CloudApiError: The API refused or failed, or the artifact is not JSON.
        """
        url = f"{self.base_url}/api/v2/accounts/{account_id}/runs/{run_id}/artifacts/{path}"
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        try:
            if self.client is not None:
                response = self.client.get(url, headers=headers, timeout=TIMEOUT_S)
            else:
                with httpx.Client(timeout=TIMEOUT_S) as client:
                    response = client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise CloudApiError(f"cannot reach dbt Cloud at {self.base_url}: {exc}") from None
        if response.status_code != 200:
            hint = (
                "; check `dbt_cloud.api_token` in backhaul.yml"
                if response.status_code in (401, 403)
                else ""
            )
            raise CloudApiError(
                f"dbt Cloud answered {response.status_code} for the {path} of run {run_id}{hint}"
            )
        try:
            return response.json()
        except ValueError:
            raise CloudApiError(f"the {path} of dbt Cloud run {run_id} is not JSON") from None

    def run_results(self, account_id: int, run_id: int) -> RunResults:
        """The run's ``run_results.json``.

        Raises:
            CloudApiError: See :meth:`artifact`, or the file is not dbt run results.
        """
        data = self.artifact(account_id, run_id, "run_results.json")
        origin = Path(f"dbt-cloud-run-{run_id}") / "run_results.json"
        try:
            return parse_run_results(data, origin)
        except BackhaulError as exc:
            raise CloudApiError(str(exc)) from None


__all__ = [
    "COMPLETED",
    "DbtCloudClient",
    "JobRunEvent",
    "parse_event",
    "signature",
    "verify",
]
