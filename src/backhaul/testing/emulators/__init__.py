"""Faithful local emulators of vendor APIs, served on loopback (the sandbox)."""

from backhaul.testing.emulators.base import (
    Emulator,
    EmulatorServer,
    Faults,
    FixedWindow,
    SlidingWindow,
)

__all__ = ["Emulator", "EmulatorServer", "Faults", "FixedWindow", "SlidingWindow"]
