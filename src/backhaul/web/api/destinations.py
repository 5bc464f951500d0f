"""``/api/v1/destinations``: each destination's config as written, secret values masked."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic import Field

from backhaul.config.project import DestinationDef
from backhaul.errors import BackhaulError
from backhaul.observe.redact import Redactor
from backhaul.web.api.base import ERRORS
from backhaul.web.api.base import MASK
from backhaul.web.api.base import resource_router
from backhaul.web.deps import ProjectDep

# Config keys whose values are secret even when written in the file as plain text.
SECRET_KEY = re.compile(r"(token|secret|password|passwd|api_?key|auth|credential|private)", re.I)
PLAIN_HEADERS = frozenset({"content-type", "accept", "accept-language", "user-agent"})
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*):([^@\s]+)@")
_ENV_ONLY = re.compile(r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$")

router = resource_router()


class DestinationOut(BaseModel):
    name: str
    type: str
    config: dict[str, Any] = Field(description="As written, with secret values masked.")


def _mask(value: Any, key: str, redactor: Redactor) -> Any:
    if isinstance(value, dict):
        in_headers = key.lower() == "headers"
        return {
            k: (
                _mask_text(v, True, redactor)
                if in_headers and isinstance(v, str) and k.lower() not in PLAIN_HEADERS
                else _mask(v, str(k), redactor)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask(v, key, redactor) for v in value]
    if isinstance(value, str):
        return _mask_text(value, bool(SECRET_KEY.search(key)), redactor)
    return value


def _mask_text(text: str, secret: bool, redactor: Redactor) -> str:
    if secret and not _ENV_ONLY.match(text):
        return MASK  # a literal secret, or a reference with a default value
    return redactor.text(_URL_PASSWORD.sub(rf"\1:{MASK}@", text)) or ""


def masked_config(dest: DestinationDef) -> dict[str, Any]:
    """A destination's raw config with secret values masked (never resolved values)."""
    from backhaul.config.secrets import resolve

    try:
        _, values = resolve(dest.config, positions=dest.positions)
    except BackhaulError:
        values = []
    # Also mask any resolved value that appears elsewhere in the file, however it got there.
    masked = _mask(dest.raw, "", Redactor(values))
    return masked if isinstance(masked, dict) else {}


@router.get("/destinations", response_model=list[DestinationOut], responses=ERRORS)
def list_destinations(project: ProjectDep) -> list[DestinationOut]:
    """Every destination with its config as written, secret values masked."""
    return [
        DestinationOut(name=d.name, type=str(d.config.type), config=masked_config(d))
        for _, d in sorted(project.destinations.items())
    ]


__all__ = ["DestinationOut", "masked_config", "router"]
