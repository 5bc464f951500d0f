"""An audience as an editor sees it: JSON in, the YAML file out.

The builder page edits the audience as JSON. JSON has no dates and does not tell ``1`` from
``1.0``, so dates travel tagged (``{"$date": "2024-06-01"}``, ``{"$ts": "2024-06-01
10:30:00"}``) and, on the way back, every value the editor did not change keeps the exact
YAML value it had in the file: an unchanged audience saves back byte for byte.

The builder edits the keys in :data:`EDITABLE`; ``schema``, ``tests`` and anything else in
the file are kept as written.
"""

from __future__ import annotations

from datetime import date
from datetime import datetime
from pathlib import Path
from typing import Any

from backhaul.audiences.audience import AudienceConfig
from backhaul.audiences.writer import audience_data
from backhaul.audiences.writer import dump_audience
from backhaul.audiences.writer import round_trip_yaml
from backhaul.config.project import Positions
from backhaul.errors import ConfigError

EDITABLE = ("description", "columns", "match", "conditions", "splits")
_DATE, _TS = "$date", "$ts"


def encode(value: Any) -> Any:
    """A YAML value as JSON: dates and timestamps tagged, the rest as they are."""
    if isinstance(value, datetime):
        return {_TS: value.isoformat(sep=" ")}
    if isinstance(value, date):
        return {_DATE: value.isoformat()}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    """JSON from an editor back to YAML values (tagged dates become dates)."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(next(iter(value.values())), str):
            tag, text = next(iter(value.items()))
            if tag == _DATE:
                return date.fromisoformat(text)
            if tag == _TS:
                return datetime.fromisoformat(text)
        return {str(k): decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def _alike(old: Any, new: Any) -> bool:
    """``new`` is ``old`` after a trip through JSON (``1.0`` came back as ``1``)."""
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is type(new) and old == new
    if isinstance(old, int | float) and isinstance(new, int | float):
        return old == new
    if isinstance(old, datetime) or isinstance(new, datetime):
        return isinstance(old, datetime) and isinstance(new, datetime) and old == new
    return type(old) is type(new) and old == new


def restore(new: Any, old: Any) -> Any:
    """``new`` with each value that only changed by the trip through JSON put back."""
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: restore(v, old[k]) if k in old else v for k, v in new.items()}
    if isinstance(new, list) and isinstance(old, list):
        return [restore(v, old[i]) if i < len(old) else v for i, v in enumerate(new)]
    if isinstance(new, dict | list) or isinstance(old, dict | list):
        return new
    return old if _alike(old, new) else new


def file_data(text: str | None) -> dict[str, Any]:
    """The plain data of an audience file's text (empty for no file or no mapping)."""
    if text is None:
        return {}
    loaded = round_trip_yaml().load(text)
    return dict(_plain(loaded)) if isinstance(loaded, dict) else {}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)  # ruamel's quoted-string types compare and encode as text
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    return value


def editor_view(config: AudienceConfig) -> dict[str, Any]:
    """What the builder edits, as JSON: only the keys written in the file."""
    data = audience_data(config)
    view: dict[str, Any] = encode({k: data[k] for k in ("schema", *EDITABLE) if k in data})
    return view


def edited_config(
    rel: str, schema: str, edited: dict[str, Any], original: str | None
) -> tuple[AudienceConfig | None, list[ConfigError]]:
    """The audience an editor sent, merged into the file it opened, and its problems.

    Args:
        rel: The file (``audiences/vip.yml``), for error messages.
        schema: The audience's schema (a new audience's; else the file's wins).
        edited: The builder's JSON (the keys of :data:`EDITABLE`; others are ignored).
        original: The file's text when it was opened (None: a new audience).
    """
    from backhaul.config.loader import validate

    old = file_data(original)
    data: dict[str, Any] = {"schema": old.get("schema", schema)}
    for key in ("schema", *EDITABLE, *old):
        if key == "schema":
            continue
        if key in EDITABLE:
            if key in edited and edited[key] is not None:
                data[key] = decode(edited[key])
        elif key in old:
            data[key] = old[key]
    data = {k: data[k] for k in _ordered(data, old)}
    data = restore(data, old)
    config, errors = validate(AudienceConfig, data, Positions(Path(rel)))
    return config, errors


def _ordered(data: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """The file's key order for keys it had, then the canonical order for new ones."""
    canonical = list(AudienceConfig.model_fields)
    canonical = ["schema" if k == "schema_" else k for k in canonical]
    kept = [k for k in old if k in data]
    rest = [k for k in canonical if k in data and k not in kept]
    rest += [k for k in data if k not in kept and k not in rest]
    return kept + rest


def audience_text(config: AudienceConfig, original: str | None) -> str:
    """The file text of ``config``: ``original`` changed in place, or a new file."""
    return dump_audience(config, original)


__all__ = [
    "EDITABLE",
    "audience_text",
    "decode",
    "edited_config",
    "editor_view",
    "encode",
    "file_data",
    "restore",
]
