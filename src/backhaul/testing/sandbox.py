"""The sandbox: every vendor emulator served on loopback, for developing syncs offline.

Example::

    from backhaul.testing.sandbox import Sandbox

    with Sandbox(["hubspot"]) as sandbox:
        for entry in sandbox.entries:
            print(entry.url, entry.credentials)

Emulators are found as modules of :mod:`backhaul.testing.emulators` (``base`` and private
``_`` helper modules aside); each
module's :class:`~backhaul.testing.emulators.base.Emulator` subclass is built with its
defaults. A module that fails to import is left out and reported in
:attr:`Sandbox.unavailable`.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Self

from ruamel.yaml import YAML

from backhaul.config.yamledit import dump_text
from backhaul.errors import SandboxError
from backhaul.plugins import Registry
from backhaul.testing import emulators
from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import EmulatorServer
from backhaul.testing.server import StartStop

NOT_EMULATORS = frozenset({"base"})
CONTROL_API = (
    ("GET", "/_emulator/state", "records the emulator holds"),
    ("GET", "/_emulator/calls", "requests received (method, path, status, time)"),
    ("POST", "/_emulator/faults", 'inject faults, e.g. {"rate_limit_next": 1, "retry_after": 2}'),
    ("POST", "/_emulator/reset", "forget records, calls and faults"),
)


def emulator_names() -> list[str]:
    """Vendors with an emulator module, in name order (whether or not it imports)."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(emulators.__path__)
        if info.name not in NOT_EMULATORS and not info.name.startswith("_")
    )


def emulator_class(vendor: str) -> type[Emulator]:
    """The emulator class of ``vendor``.

    Raises:
        SandboxError: No emulator module of that name, or it defines no emulator.
        ImportError: The module exists but cannot be imported.
    """
    if vendor not in emulator_names():
        known = ", ".join(emulator_names()) or "none"
        raise SandboxError(f"no emulator named `{vendor}` (available: {known})")
    module = importlib.import_module(f"{emulators.__name__}.{vendor}")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Emulator)
        and value is not Emulator
        and value.__module__ == module.__name__
    ]
    if not found:
        raise SandboxError(f"the `{vendor}` emulator module defines no Emulator subclass")
    return found[0]


@dataclass
class SandboxEntry:
    """One running emulator."""

    vendor: str
    emulator: Emulator
    server: EmulatorServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def credentials(self) -> dict[str, str]:
        return self.emulator.credentials()

    @property
    def destination(self) -> dict[str, Any]:
        """A destination file's content pointing at this emulator."""
        return self.emulator.destination_config(self.url)

    @property
    def destination_file(self) -> dict[str, Any] | None:
        """:attr:`destination` when Backhaul has a destination of its type, else ``None``.

        An emulator can exist before its connector; a file naming a type that
        ``backhaul validate`` would refuse is not offered.
        """
        config = self.destination
        if not config or config.get("type") not in Registry.discover().destinations:
            return None
        return config


@dataclass
class Sandbox(StartStop):
    """Starts the named emulators (default: all available) on loopback ports.

    Args:
        vendors: Emulators to start; empty means every one that imports.
        port_base: First port; the n-th emulator gets ``port_base + n``. ``0``: free ports.
    """

    vendors: list[str] = field(default_factory=list)
    port_base: int = 0
    entries: list[SandboxEntry] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)

    def start(self) -> Self:
        """Start every emulator; stops the ones started if one fails."""
        named = bool(self.vendors)
        wanted = list(dict.fromkeys(self.vendors)) if named else emulator_names()
        classes: list[tuple[str, type[Emulator]]] = []
        for vendor in wanted:
            try:
                classes.append((vendor, emulator_class(vendor)))
            except ImportError as exc:
                if named:
                    raise SandboxError(f"the `{vendor}` emulator cannot be loaded: {exc}") from exc
                self.unavailable[vendor] = f"{type(exc).__name__}: {exc}"
        try:
            for n, (vendor, cls) in enumerate(classes):
                emulator = cls()
                port = self.port_base + n if self.port_base else 0
                server = EmulatorServer(emulator, port=port)
                try:
                    server.start()
                except OSError as exc:
                    raise SandboxError(
                        f"cannot serve the {vendor} emulator on port {port} ({exc.strerror}): "
                        "pick another --port-base"
                    ) from exc
                self.entries.append(SandboxEntry(vendor, emulator, server))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every emulator (safe to call twice)."""
        entries, self.entries = self.entries, []
        # Each server takes a few tenths of a second to wind down: stop them side by side.
        threads = [threading.Thread(target=e.server.stop) for e in entries]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def describe(entry: SandboxEntry) -> str:
    """What a user needs to point a project at one emulator, as plain text."""
    lines = [f"== {entry.vendor}: {entry.url}", "", "credentials (export before `backhaul run`):"]
    lines += [f"  export {name}={value}" for name, value in entry.credentials.items()]
    if not entry.credentials:
        lines.append("  (none)")
    config = entry.destination_file
    if config is None:
        lines += [
            "",
            f"destination file: none yet (Backhaul has no `{entry.vendor}` destination type);",
            "  call the API at the URL above with these credentials",
        ]
    else:
        lines += ["", f"destinations/{entry.vendor}.yml:"]
        lines += ["  " + line for line in to_yaml(config).splitlines()]
    lines += ["", "control API:"]
    lines += [f"  {method:<4} {entry.url}{path}  {what}" for method, path, what in CONTROL_API]
    return "\n".join(lines) + "\n"


def to_yaml(data: dict[str, Any]) -> str:
    """Block-style YAML of ``data``, as a user would write it in a project file."""
    yaml = YAML()  # round-trip mode keeps the keys in order (`type` first)
    yaml.default_flow_style = False
    return dump_text(yaml, data)


__all__ = [
    "CONTROL_API",
    "Sandbox",
    "SandboxEntry",
    "describe",
    "emulator_class",
    "emulator_names",
    "to_yaml",
]
