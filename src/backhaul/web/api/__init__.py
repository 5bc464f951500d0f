"""The REST API under ``/api/v1``: read the project and its runs, trigger and cancel runs,
manage users and tokens. Every route needs a signed-in user or an API token.

One module per resource, each with its own router, response models and handlers; this
module mounts them under ``/api/v1`` behind the viewer check, in the order the OpenAPI
document lists them. ``base`` holds what they share.
"""

from __future__ import annotations

from backhaul.web.api import audit
from backhaul.web.api import destinations
from backhaul.web.api import me
from backhaul.web.api import models
from backhaul.web.api import runs
from backhaul.web.api import sources
from backhaul.web.api import syncs
from backhaul.web.api import tokens
from backhaul.web.api import users
from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import SafeJSONResponse
from backhaul.web.api.base import json_router
from backhaul.web.api.docs import router as docs_router

router = json_router("/api/v1")
for _resource in (me, sources, models, destinations, syncs, runs, users, tokens, audit):
    router.include_router(_resource.router)

__all__ = ["ERRORS", "SafeJSONResponse", "docs_router", "router"]
