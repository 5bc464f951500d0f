"""dbt exposures for Backhaul syncs, so dbt's lineage shows where its models are sent.

One exposure per enabled sync whose model reads dbt models: ``type: application``,
the owner from ``owner`` in backhaul.yml (or given), ``depends_on`` the ``ref(...)`` of each
dbt model the sync's model reads, and a description naming the destination and the mode.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

from backhaul.dbt.manifest import parse_ref
from backhaul.dbt.refs import model_refs
from backhaul.errors import ConfigError

if TYPE_CHECKING:
    from backhaul.config.project import Project

PREFIX = "backhaul_"


@dataclass(frozen=True)
class Exposures:
    """The exposures document and the syncs left out of it (with why)."""

    data: dict[str, Any]
    skipped: dict[str, str]

    def yaml(self) -> str:
        """The document as YAML, ready for a file in the dbt project's models folder."""
        from ruamel.yaml import YAML

        yaml = YAML()  # round-trip dumper: keys stay in the order written
        yaml.default_flow_style = False
        yaml.width = 4096  # one line per description
        yaml.indent(mapping=2, sequence=4, offset=2)
        out = io.StringIO()
        out.write("# Written by `backhaul dbt exposures`; regenerate it rather than edit it.\n")
        yaml.dump(self.data, out)
        return out.getvalue()


def parse_owner(text: str) -> dict[str, str]:
    """``Name <email>``, ``email`` or ``Name`` as a dbt exposure owner.

    Raises:
        ConfigError: The text is empty.
    """
    text = text.strip()
    match = re.fullmatch(r"(.*?)\s*<([^<>@\s]+@[^<>\s]+)>", text)
    if match:
        name, email = match.group(1).strip(), match.group(2)
        return {"name": name, "email": email} if name else {"email": email}
    if re.fullmatch(r"[^@\s]+@[^@\s]+", text):
        return {"email": text}
    if text:
        return {"name": text}
    raise ConfigError("the owner is empty: give a name, an email, or `Name <email>`")


def build_exposures(project: Project, *, owner: str | None = None) -> Exposures:
    """Exposures for the project's syncs.

    Args:
        project: The loaded project.
        owner: ``Name <email>``; default: ``owner`` in backhaul.yml.

    Raises:
        ConfigError: No owner is known.
    """
    text = owner if owner is not None else project.config.owner
    if text is None:
        raise ConfigError(
            "dbt exposures need an owner: set `owner: Name <email>` in backhaul.yml or pass "
            "--owner",
            file="backhaul.yml",
        )
    who = parse_owner(text)
    exposures: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for name, sync in sorted(project.syncs.items()):
        model = project.models.get(sync.config.model)
        refs = _refs(project, model) if model is not None else []
        if not sync.config.enabled:
            skipped[name] = "disabled"
            continue
        if not refs:
            skipped[name] = f"model `{sync.config.model}` reads no dbt model"
            continue
        dest = project.destinations.get(sync.config.destination)
        kind = f" ({dest.config.type})" if dest is not None else ""
        target = f", object `{sync.config.object}`" if sync.config.object else ""
        description = (
            f"Backhaul sync `{name}` sends model `{sync.config.model}` to destination "
            f"`{sync.config.destination}`{kind}{target} in {sync.config.mode.value} mode."
        )
        if sync.config.description:
            description += " " + sync.config.description
        exposures.append(
            {
                "name": PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", name),
                "label": f"Backhaul: {name}",
                "type": "application",
                "owner": dict(who),  # a copy each, so the YAML has no anchors
                "description": description,
                "depends_on": refs,
                "meta": {
                    "backhaul_project": project.config.name,
                    "backhaul_sync": name,
                    "destination": sync.config.destination,
                    "mode": sync.config.mode.value,
                },
            }
        )
    return Exposures({"version": 2, "exposures": exposures}, skipped)


def _refs(project: Project, model: Any) -> list[str]:
    out: list[str] = []
    for text in model_refs(project, model):
        package, name = parse_ref(text)
        ref = f"ref('{package}', '{name}')" if package else f"ref('{name}')"
        if ref not in out:
            out.append(ref)
    return out


__all__ = ["Exposures", "build_exposures", "parse_owner"]
