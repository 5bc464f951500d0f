"""The pieces vendor emulators share: rate windows, job lifecycles, request helpers."""

from __future__ import annotations

import base64

import pytest
from starlette.requests import Request

from backhaul.testing.emulators import FixedWindow
from backhaul.testing.emulators import SlidingWindow
from backhaul.testing.emulators._audience import AudienceInspection
from backhaul.testing.emulators._audience import Membership
from backhaul.testing.emulators._http import authorization
from backhaul.testing.emulators._http import basic_credentials
from backhaul.testing.emulators._http import json_size
from backhaul.testing.emulators._jobs import Job
from backhaul.testing.emulators.base import DestinationFile
from backhaul.testing.emulators.base import Emulator


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_fixed_window_empties_at_its_boundary_not_a_window_after_each_hit() -> None:
    clock = Clock()
    window = FixedWindow(2, 10.0, clock)

    assert window.hit() == (True, 1, 10.0)
    clock.now = 109.0
    assert window.hit()[:2] == (True, 0)
    allowed, remaining, wait = window.hit()
    assert (allowed, remaining, wait) == (False, 0, pytest.approx(1.0))
    clock.now = 110.0  # the window that began at 100 is over: a fresh one
    assert window.hit() == (True, 1, 10.0)
    clock.now = 135.0  # two windows later, still aligned to the first one
    assert window.hit() == (True, 1, pytest.approx(5.0))
    assert window.refused == 1


def test_sliding_window_reset_in_is_when_the_oldest_hit_leaves() -> None:
    clock = Clock()
    window = SlidingWindow(2, 10.0, clock)
    assert window.reset_in() == 10.0
    window.hit()
    clock.now = 104.0
    window.hit()
    assert window.reset_in() == pytest.approx(6.0)


def test_job_moves_on_when_polled_and_runs_its_work_once_at_the_end() -> None:
    ran: list[int] = []

    def work() -> list[int]:
        ran.append(1)
        return [7]

    job = Job(1, work, ("queued", "processing", "complete"), polls_to_finish=3)
    assert job.status == "queued" and not job.done
    job.poll()
    assert job.status == "processing" and job.started_at is not None
    job.poll()
    assert job.status == "processing" and ran == []
    job.poll()
    job.poll()
    assert (job.status, job.result, ran) == ("complete", [7], [1])


def test_held_job_waits_until_released_and_a_stopped_job_never_runs() -> None:
    job = Job(1, lambda: "done", ("queued", "working", "completed"), polls_to_finish=1)
    job.held = True
    for _ in range(5):
        job.poll()
    assert job.status == "working"
    job.held = False
    job.poll()
    assert job.result == "done"

    other = Job(1, lambda: "never", ("queued", "working", "completed"))
    other.stop("cancelled")
    other.poll()
    other.finish()
    assert (other.status, other.result, other.done) == ("cancelled", None, True)


def request_with(authorization_header: str) -> Request:
    headers = [(b"authorization", authorization_header.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def test_credentials_from_headers() -> None:
    basic = base64.b64encode(b"site:key:with:colons").decode()
    assert basic_credentials(request_with(f"Basic {basic}")) == ("site", "key:with:colons")
    no_colon = base64.b64encode(b"writekey").decode()
    assert basic_credentials(request_with(f"Basic {no_colon}")) == ("writekey", "")
    assert basic_credentials(request_with("Basic !!!")) is None
    assert basic_credentials(request_with("Bearer x")) is None
    assert authorization(request_with("klaviyo-api-key pk_1"), "Klaviyo-API-Key") == "pk_1"
    assert authorization(request_with("Bearer "), "Bearer") is None


def test_json_size_is_compact_utf8() -> None:
    assert json_size({"a": 1, "b": [1, 2]}) == len('{"a":1,"b":[1,2]}')
    assert json_size({"n": "é"}) == len('{"n":"é"}'.encode())


def test_destination_file_writes_secrets_as_env_references_and_credentials_give_them() -> None:
    class Vendor(Emulator):
        vendor = "acme"
        destination_file = DestinationFile(
            {"site": "ACME_SITE", "key": "ACME_KEY"}, settings={"poll_interval_seconds": 0.5}
        )

        def __init__(self) -> None:
            super().__init__()
            self.site, self.key = "s-1", "k-1"

    emulator = Vendor()

    assert list(emulator.destination_config("http://127.0.0.1:9").items()) == [
        ("type", "acme"),
        ("base_url", "http://127.0.0.1:9"),
        ("site", "${env:ACME_SITE}"),
        ("key", "${env:ACME_KEY}"),
        ("poll_interval_seconds", 0.5),
    ]
    assert emulator.credentials() == {"ACME_SITE": "s-1", "ACME_KEY": "k-1"}
    assert Emulator().destination_config("http://127.0.0.1:9") == {}
    assert Emulator().credentials() == {}


def test_audience_inspection_reads_members_with_the_platform_email_key_by_default() -> None:
    class Audience:
        def __init__(self) -> None:
            self.members = Membership()

    class Platform(AudienceInspection, Emulator):
        email_key = "EMAIL"

        def __init__(self) -> None:
            super().__init__()
            self.audiences = {"a-1": Audience()}

        def audiences_by_id(self) -> dict[str, Audience]:
            return self.audiences

    platform = Platform()
    platform.audiences["a-1"].members.add([("EMAIL", "e1"), ("PHONE", "p1")])
    platform.audiences["a-1"].members.add([("EMAIL", "e2")])

    assert platform.values("a-1") == {"e1", "e2"}
    assert platform.values("a-1", "PHONE") == {"p1"}
    assert platform.size("a-1") == 2
