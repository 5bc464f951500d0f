"""Reading a request the way vendor edges do: credentials from headers, strict JSON, sizes."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from starlette.requests import Request

KB = 1024


def authorization(request: Request, scheme: str) -> str | None:
    """The value after ``scheme`` in the ``Authorization`` header (scheme case-insensitive).

    Example:
        ``Authorization: Klaviyo-API-Key pk_1`` with ``scheme="Klaviyo-API-Key"`` gives ``pk_1``.
    """
    given, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if given.lower() != scheme.lower() or not value.strip():
        return None
    return value.strip()


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """``(user, password)`` of an HTTP Basic header; ``None`` when absent or not decodable.

    A value without a colon is read as a user with an empty password.
    """
    value = authorization(request, "Basic")
    if value is None:
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user, password


def strict_json(body: bytes | str) -> Any:
    """Parse JSON as a strict receiver does: bare ``NaN``, ``Infinity`` and ``-Infinity``
    (which Python's parser accepts by default) are refused with :class:`ValueError`."""
    return json.loads(body, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON, the way vendors measure one item of a batch."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


__all__ = ["KB", "authorization", "basic_credentials", "json_size", "strict_json"]
