"""The worked example of docs/connectors.md is a working connector.

The Python block of that page is written to a package of its own and loaded through a
registry, as a third-party connector would be, then the conformance suite runs against it
and a small Acme CRM emulator.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route

from backhaul.destinations.base import Operation
from backhaul.plugins import BUILTIN_DESTINATIONS
from backhaul.plugins import Registry
from backhaul.testing.conformance import CHECKS
from backhaul.testing.conformance import Target
from backhaul.testing.emulators import EmulatorServer
from backhaul.testing.emulators.base import Emulator

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "connectors.md"
TOKEN = "acme-doc-token-7f3e"
MODULE = "acme_doc_backhaul"


class AcmeEmulator(Emulator):
    """Acme CRM people: found by e-mail or external id (any case), written by id."""

    vendor = "acme"

    def __init__(self) -> None:
        super().__init__()
        self.people: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/me", self.me, methods=["GET"]),
            Route("/v1/people", self.people_route, methods=["GET", "POST"]),
            Route("/v1/people/{id}", self.person, methods=["PATCH", "DELETE"]),
        ]

    async def before_request(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return self.vendor_error(401, "unknown token")
        return None

    def vendor_state(self) -> dict[str, Any]:
        return {"people": list(self.people.values())}

    def by_email(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {str(p.get("email")): dict(p) for p in self.people.values()}

    async def me(self, request: Request) -> Response:
        return JSONResponse({"name": "Acme"})

    def _refused(self, body: dict[str, Any]) -> Response | None:
        reason = self.faults.rejects.get(str(body.get("email")))
        return None if reason is None else self.vendor_error(400, reason)

    async def people_route(self, request: Request) -> Response:
        with self.lock:
            if request.method == "GET":
                (field, value), *_ = request.query_params.items()
                found = [
                    p
                    for p in self.people.values()
                    if str(p.get(field, "")).lower() == value.lower()
                ]
                return JSONResponse({"data": found})
            body = await request.json()
            refused = self._refused(body)
            if refused is not None:
                return refused
            person = {**body, "id": f"p{next(self._ids)}"}
            self.people[person["id"]] = person
            return JSONResponse(person)

    async def person(self, request: Request) -> Response:
        with self.lock:
            person = self.people.get(request.path_params["id"])
            if person is None:
                return self.vendor_error(404, "no such person")
            if request.method == "DELETE":
                del self.people[person["id"]]
                return Response(status_code=204)
            body = await request.json()
            refused = self._refused(body)
            if refused is not None:
                return refused
            person.update(body)
            return JSONResponse(person)


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    [connector] = [b for b in blocks if "class AcmeDestination" in b]
    return connector


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    package = tmp_path_factory.mktemp("acme")
    (package / f"{MODULE}.py").write_text(_example(), encoding="utf-8")
    sys.path.insert(0, str(package))
    emulator = AcmeEmulator()
    registry = Registry(destinations={**BUILTIN_DESTINATIONS, "acme": f"{MODULE}:AcmeDestination"})

    def destination(url: str, token: str) -> dict[str, Any]:
        return {
            "type": "acme",
            "base_url": url,
            "token": token,
            "rate_limit": {"requests": 1000, "per_seconds": 1.0},
            "retry": {"base_delay": 0.01, "max_delay": 0.05},
        }

    try:
        with EmulatorServer(emulator) as server:
            yield Target(
                destination=destination(server.url, "${env:CONF_ACME_TOKEN}"),
                env={"CONF_ACME_TOKEN": TOKEN},
                match_field="email",
                read=emulator.by_email,
                operations=frozenset(Operation),
                object="people",
                faults=emulator.faults,
                calls=lambda: list(emulator.calls),
                bad_destination=destination(server.url, "acme-wrong-token"),
                secrets=[TOKEN],
                registry=registry,
            )
    finally:
        sys.path.remove(str(package))
        sys.modules.pop(MODULE, None)


def test_the_example_is_about_a_hundred_lines() -> None:
    code = [line for line in _example().splitlines() if line.strip()]
    assert len(code) <= 130, len(code)


@pytest.mark.parametrize("name", list(CHECKS))
def test_the_example_passes(name: str, target: Target, tmp_path: Path) -> None:
    CHECKS[name](target, tmp_path)
    assert list(tmp_path.iterdir()), "the check built no project"
