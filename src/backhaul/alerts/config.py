"""Channel files (``channels/NAME.yml``): read, validate, check references, open.

Channels are read by the alerts package rather than by the project loader, so a broken
channel file never stops a run (``backhaul validate`` reports it with file and line).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backhaul.alerts.channels import CHANNEL_TYPES
from backhaul.alerts.channels import Channel
from backhaul.config.loader import read_yaml
from backhaul.config.loader import validate
from backhaul.config.models import NAME_PATTERN
from backhaul.config.project import Positions
from backhaul.config.project import Project
from backhaul.config.secrets import check_references
from backhaul.config.secrets import resolve
from backhaul.errors import ConfigError
from backhaul.observe.redact import Redactor

FOLDER = "channels"
_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class ChannelDef:
    """A channel file as written (``${env:NAME}`` unresolved)."""

    name: str
    config: Any  # one of the channel config models
    positions: Positions


def load_channels(project: Project) -> tuple[dict[str, ChannelDef], list[ConfigError]]:
    """Every valid channel file, and the problems of the others."""
    root = project.root
    base = root / FOLDER
    found: dict[str, ChannelDef] = {}
    errors: list[ConfigError] = []
    if not base.is_dir():
        return found, errors
    files = sorted(p for p in base.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    for path in files:
        rel = path.relative_to(root).as_posix()
        name = path.stem
        if any(part.startswith(".") for part in path.relative_to(base).parts):
            continue
        if name in found:
            errors.append(ConfigError(f"duplicate channel name `{name}`: rename one", file=rel))
            continue
        if not _NAME.match(name):
            errors.append(
                ConfigError(
                    f"invalid channel name `{name}`: file names must start with a letter or `_` "
                    "and hold only letters, digits, `_` and `-`",
                    file=rel,
                )
            )
            continue
        try:
            data, positions = read_yaml(path, root)
        except ConfigError as exc:
            errors.append(exc)
            continue
        config, problems = _validate(data or {}, positions)
        problems += check_references(data or {}, positions=positions, syntax_only=True)
        if config is not None and not problems:
            found[name] = ChannelDef(name, config, positions)
        errors += problems
    return found, errors


def _validate(data: Any, positions: Positions) -> tuple[Any, list[ConfigError]]:
    file = positions.file.as_posix()
    if not isinstance(data, dict):
        return None, [ConfigError("must be a mapping of `key: value` lines", file=file, line=1)]
    known = ", ".join(sorted(CHANNEL_TYPES))
    kind = data.get("type")
    if kind is None:
        return None, [ConfigError(f"missing required key `type` ({known})", file=file, key="type")]
    if kind not in CHANNEL_TYPES:
        close = difflib.get_close_matches(str(kind), sorted(CHANNEL_TYPES), n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        return None, [
            ConfigError(
                f"unknown channel type `{kind}` ({hint}known: {known})",
                file=file,
                line=positions.line("type"),
                key="type",
            )
        ]
    config, errors = validate(CHANNEL_TYPES[str(kind)][0], data, positions)
    return config, errors


def reference_errors(project: Project, channels: dict[str, ChannelDef]) -> list[ConfigError]:
    """Channel names in ``alerts:`` blocks that name no channel file."""
    errors: list[ConfigError] = []

    def check(names: list[str] | None, positions: Positions | None, prefix: str) -> None:
        for i, name in enumerate(names or []):
            if name in channels:
                continue
            close = difflib.get_close_matches(name, sorted(channels), n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            known = ", ".join(sorted(channels)) or f"none: add {FOLDER}/{name}.yml"
            key = f"{prefix}.{i}"
            errors.append(
                ConfigError(
                    f"unknown channel `{name}` ({hint}known: {known})",
                    file=positions.file.as_posix() if positions else "backhaul.yml",
                    line=positions.line(key) if positions else None,
                    key=key,
                )
            )

    check(project.config.alerts.channels, project.positions, "alerts.channels")
    for sync in sorted(project.syncs.values(), key=lambda s: s.name):
        check(sync.config.alerts.channels, sync.positions, "alerts.channels")
    return errors


def env_errors(channels: dict[str, ChannelDef]) -> list[ConfigError]:
    """Unset environment variables that channel files refer to."""
    errors: list[ConfigError] = []
    for channel in channels.values():
        errors += check_references(channel.config, positions=channel.positions)
    return errors


def open_channel(channel: ChannelDef, redactor: Redactor) -> Channel:
    """The channel with its secrets resolved; every secret value is added to ``redactor``.

    Raises:
        ConfigError: An environment variable it refers to is not set.
    """
    config, secrets = resolve(channel.config, positions=channel.positions)
    for secret in secrets:
        redactor.add(secret)
    cls = CHANNEL_TYPES[config.type][1]
    opened: Channel = cls(channel.name, config, redactor)
    return opened


def channels_folder(project: Project) -> Path:
    return project.root / FOLDER


__all__ = [
    "FOLDER",
    "ChannelDef",
    "env_errors",
    "load_channels",
    "open_channel",
    "reference_errors",
]
