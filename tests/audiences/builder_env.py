"""A project for the audience builder's tests: generated people in DuckDB, in a Git
repository, served on loopback with a user of every role."""

from __future__ import annotations

import os
import random
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
from fastapi import FastAPI
from tests.audiences.projects import _files
from tests.audiences.projects import audience_file
from tests.audiences.world import TABLES

from backhaul.testing.server import LoopbackServer
from backhaul.web.app import close_app
from backhaul.web.app import create_app
from backhaul.web.auth import Role

PEOPLE = 600
COUNTRIES = ["FR", "DE", "ES", "IT", "US", "GB"]
PLANS = ["free", "pro", "enterprise"]
PAGES = ["/pricing", "/pricing/teams", "/docs", "/blog", "/signup"]
FIRST = ["Ann", "Bob", "Chloé", "Dan", "Eve", "Fatima", "Gus", "Hana", "Ivo", "Jo"]
PASSWORDS = {role: f"{role.value}-password-1234" for role in Role}

# Written by hand: comments, a quoted date, a float written 1.0, a flow list.
HAND_WRITTEN = """\
# Loyal French and German people: hand-written, then opened in the builder.
schema: people
description: Loyal people in France and Germany
columns: [name, country, age]
conditions:
  - {column: country, op: in, value: [FR, DE]}   # the two launch markets
  - {column: score, op: gte, value: 1.0}
  - {column: born, op: before, value: "2000-01-01"}
tests:
  - name: a French high scorer is in
    rows:
      people:
        - {id: 1, country: FR, score: 2.5, born: 1990-01-01}
        - {id: 2, country: US, score: 9.0, born: 1990-01-01}
    expect_in: [1]
    expect_out: [2]
"""


def generate(now: datetime) -> dict[str, list[dict[str, Any]]]:
    """People, accounts, orders and page visits; visits are placed relative to ``now``."""
    rnd = random.Random(7)
    accounts = [{"id": i, "plan": PLANS[i % 3], "seats": rnd.randint(1, 200)} for i in range(1, 61)]
    people, orders, visits = [], [], []
    for i in range(1, PEOPLE + 1):
        people.append(
            {
                "id": i,
                "name": f"{rnd.choice(FIRST)} {i}",
                "country": rnd.choice(COUNTRIES),
                "age": rnd.randint(18, 80),
                "score": round(rnd.uniform(0, 5), 2),
                "vip": rnd.random() < 0.2,
                "born": date(1950, 1, 1) + timedelta(days=rnd.randint(0, 20000)),
                "seen": now.replace(tzinfo=None) - timedelta(days=rnd.randint(0, 400), hours=6),
                "account_id": rnd.randint(1, 60) if rnd.random() < 0.9 else None,
            }
        )
        for _ in range(rnd.randint(0, 3)):
            orders.append(
                {
                    "person_id": i,
                    "amount": round(rnd.uniform(5, 500), 2),
                    "status": rnd.choice(["paid", "refunded"]),
                }
            )
        for _ in range(rnd.randint(0, 6)):
            days = rnd.randint(0, 90)
            visits.append(
                {
                    "person_id": i,
                    "at": now.replace(tzinfo=None) - timedelta(days=days, hours=6, minutes=i % 50),
                    "page": rnd.choice(PAGES),
                }
            )
    return {"people": people, "accounts": accounts, "orders": orders, "visits": visits}


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "data team", "GIT_AUTHOR_EMAIL": "data@example.com"}
    env |= {"GIT_COMMITTER_NAME": "data team", "GIT_COMMITTER_EMAIL": "data@example.com"}
    done = subprocess.run(
        ["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


@dataclass
class BuilderEnv:
    root: Path
    url: str
    app: FastAPI

    @staticmethod
    def username(role: Role) -> str:
        return f"{role.value}_user"

    def client(self, role: Role) -> httpx.Client:
        """An httpx client signed in as ``role``, sending the CSRF header."""
        client = httpx.Client(base_url=self.url, timeout=60)
        page = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        answer = client.post(
            "/login",
            data={
                "username": self.username(role),
                "password": PASSWORDS[role],
                "csrf_token": token.group(1),
            },
        )
        assert answer.status_code == 303, answer.text
        client.headers["X-CSRF-Token"] = client.get("/api/v1/me").json()["csrf_token"]
        return client

    def log(self) -> list[str]:
        """Commits, newest first, as ``author name <email>|subject``."""
        return git(self.root, "log", "--format=%an <%ae>|%s").splitlines()


def load_warehouse(path: Path, data: dict[str, list[dict[str, Any]]]) -> None:
    """The tables of the test world in a DuckDB file, loaded in bulk through Arrow."""
    with duckdb.connect(str(path)) as con:
        for table, columns in TABLES.items():
            defs = ", ".join(f'"{c}" {t}' for c, t in columns.items())
            con.execute(f'CREATE TABLE "{table}" ({defs})')
            rows = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in data[table]])
            con.register("incoming", rows)
            con.execute(f'INSERT INTO "{table}" SELECT * FROM incoming')
            con.unregister("incoming")


def people_project(folder: Path) -> Path:
    """``folder/project``: the generated people in ``wh.duckdb``, the source, models and
    schema over them and the hand-written ``loyal`` audience, not yet in Git."""
    root = folder / "project"
    root.mkdir(parents=True)
    load_warehouse(root / "wh.duckdb", generate(datetime.now(UTC)))
    _files(root, "type: duckdb\npath: wh.duckdb\n", "")
    audience_file(root, "loyal", HAND_WRITTEN)
    return root


@contextmanager
def served(root: Path) -> Iterator[BuilderEnv]:
    """``root`` committed to a new Git repository as the data team wrote it, then served on
    loopback with a user of every role."""
    (root / ".gitignore").write_text(".backhaul/\n*.duckdb*\n*.sqlite\n", encoding="utf-8")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-qm", "The project as the data team wrote it")
    app = create_app(root)
    for role in Role:
        app.state.users.add(BuilderEnv.username(role), PASSWORDS[role], role)
    server = LoopbackServer(app).start()
    try:
        yield BuilderEnv(root, server.url, app)
    finally:
        server.stop()
        close_app(app)


@contextmanager
def builder_env(folder: Path) -> Iterator[BuilderEnv]:
    root = people_project(folder)
    audience_file(
        root,
        "pricing_viewers",
        "schema: people\nconditions:\n"
        "  - {event: visits, at_least: 1, where: [{column: page, op: starts_with, value: /pricing}]}\n",
    )
    with served(root) as env:
        yield env
